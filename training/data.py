"""Training batches: log-mel features per utterance, length-bucketed batches under a frames budget, SpecAugment,
onset trimming."""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from asr.audio import load_audio
from asr.decoding import SPACE
from asr.features import FRAME_RATE, SAMPLE_RATE, log_mel, mel_centres, num_frames
from asr.tokenizer import Tokenizer
from training.feature_store import FeatureStore
from training.librispeech import Utterance

log = logging.getLogger(__name__)


def ctc_frames_needed(labels: list[int]) -> int:
    """Fewest output frames CTC needs for `labels`: one per label plus a blank between repeated labels."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


@dataclass
class Batch:
    features: torch.Tensor  # (batch, frames, n_mels)
    feature_lengths: torch.Tensor  # (batch,)
    labels: torch.Tensor  # (batch, max_label_length), padded with 0
    label_lengths: torch.Tensor  # (batch,)
    texts: list[str]
    ids: list[str]
    indices: list[int]  # the utterances' positions in their dataset

    @property
    def audio_seconds(self) -> float:
        return float(self.feature_lengths.sum()) / FRAME_RATE


class UtteranceDataset:
    """Features and labels per training example: one utterance, or with `join` up to that many utterances of one
    speaker (and subset) end to end, as a long recording is heard (1 to `join` per example, at most `max_seconds`;
    grouped once, by `seed`). Utterances too long in labels for their output frames are skipped and counted in
    `skipped`. With `cache`, features are computed once per utterance and kept in memory as float16; with `store`,
    kept on disk instead (training.feature_store: shared by runs, kept across restarts), the same float16 values."""

    def __init__(self, utterances: list[Utterance], stack: int, max_seconds: float = 30.0, cache: bool = True,
                 join: int = 1, seed: int = 0, store: FeatureStore | None = None):
        self.tokenizer = Tokenizer()
        self.store = store
        self.cache = {} if cache and store is None else None
        self.utterances, self.labels = [], []  # per utterance
        self.skipped = {"too_long_audio": 0, "too_many_labels": 0, "empty": 0}
        for utt in utterances:
            labels = self.tokenizer.encode(utt.text)
            if not labels:
                self.skipped["empty"] += 1
            elif utt.duration > max_seconds:
                self.skipped["too_long_audio"] += 1
            elif num_frames(int(utt.duration * 16000)) // stack < ctc_frames_needed(labels):
                self.skipped["too_many_labels"] += 1
            else:
                self.utterances.append(utt)
                self.labels.append(labels)
        if any(self.skipped.values()):
            log.info("skipped utterances: %s", self.skipped)
        self.examples = join_by_speaker(self.utterances, join, max_seconds, seed)
        self.durations = [sum(self.utterances[i].duration for i in example) for example in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def utterance_features(self, index: int) -> torch.Tensor:
        """(frames, n_mels) log-mel of utterance `index`."""
        if self.store is not None:
            return self.store.features(self.utterances[index].path).float()
        if self.cache is None:
            return log_mel(load_audio(self.utterances[index].path))
        if index not in self.cache:  # always served from the float16 copy, so a resumed run sees the same values
            self.cache[index] = log_mel(load_audio(self.utterances[index].path)).half()
        return self.cache[index].float()

    def features(self, index: int) -> torch.Tensor:
        """(frames, n_mels) log-mel of example `index`."""
        return torch.cat([self.utterance_features(i) for i in self.examples[index]])

    def text(self, index: int) -> str:
        return " ".join(self.utterances[i].text for i in self.examples[index])

    def batch(self, indices: list[int]) -> Batch:
        """The examples `indices`, padded."""
        feats = [self.features(i) for i in indices]
        texts = [self.text(i) for i in indices]
        labels = [torch.tensor([label for u in self.examples[i] for label in [SPACE, *self.labels[u]]][1:])
                  for i in indices]
        ids = ["+".join(self.utterances[u].id for u in self.examples[i]) for i in indices]
        return Batch(pad_sequence(feats, batch_first=True), torch.tensor([len(f) for f in feats]),
                     pad_sequence(labels, batch_first=True), torch.tensor([len(l) for l in labels]),
                     texts, ids, list(indices))


def join_by_speaker(utterances: list[Utterance], join: int, max_seconds: float, seed: int) -> list[tuple[int, ...]]:
    """Utterance indices grouped into examples: with `join` 1 each alone, in order; else per speaker and subset
    folder, in a shuffled order, runs of 1 to `join` (uniformly drawn) that stay within `max_seconds`."""
    if join < 1:
        raise ValueError(f"join {join}: at least 1 utterance per example")
    if join == 1:
        return [(i,) for i in range(len(utterances))]
    rng = random.Random(seed)
    by_speaker: dict[tuple[str, Path], list[int]] = {}
    for i, utt in enumerate(utterances):  # a speaker's augmented copy is another subset: another recording chain
        by_speaker.setdefault((utt.speaker, Path(utt.path).parent.parent.parent), []).append(i)
    examples = []
    for key in sorted(by_speaker):
        indices = by_speaker[key]
        rng.shuffle(indices)
        start = 0
        while start < len(indices):
            size, end, seconds = rng.randint(1, join), start + 1, utterances[indices[start]].duration
            while end < min(start + size, len(indices)) and seconds + utterances[indices[end]].duration <= max_seconds:
                seconds += utterances[indices[end]].duration
                end += 1
            examples.append(tuple(indices[start:end]))
            start = end
    return examples


def bucket_batches(durations: list[float], max_batch_seconds: float, seed: int, epoch: int,
                   rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size (longest * count) stays under
    `max_batch_seconds` of audio; batch order shuffled per epoch (same order on every rank), split across ranks."""
    rng = random.Random(seed * 1000003 + epoch)
    order = sorted(range(len(durations)), key=lambda i: (durations[i], rng.random()))
    batches, current = [], []
    for i in order:
        if current and durations[i] * (len(current) + 1) > max_batch_seconds:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


SPEECH_WITHIN_DB = 30.0   # frames whose power is within this of the example's loudest frame count as speech
ONSET_KEEP_FRAMES = 10    # trim_onsets keeps 0..this many frames (0..100 ms) of the silence before speech


def trim_onsets(features: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, label_lengths: torch.Tensor,
                stack: int, generator: torch.Generator, probability: float) -> torch.Tensor:
    """Cut the silence before the first speech frame from each example with `probability`, keeping 0..100 ms of it,
    in place: most recordings start with silence, but trimmed prompts and cut clips start on the first word. An
    example whose labels would no longer fit its output frames is left whole.

    features: (batch, frames, n_mels) log-mel; lengths: (batch,) valid frames; labels: (batch, max_labels) padded;
    label_lengths: (batch,). Returns the new lengths (batch,); frames past them are zeroed."""
    lengths = lengths.clone()
    for b in range(features.shape[0]):
        if float(torch.rand((), generator=generator)) >= probability:
            continue
        length = int(lengths[b])
        power = torch.logsumexp(features[b, :length], dim=-1)  # (frames,) log of the frame's mel power
        onset = int(torch.argmax((power > power.max() - SPEECH_WITHIN_DB * math.log(10) / 10).int()))
        start = max(0, onset - int(torch.randint(0, ONSET_KEEP_FRAMES + 1, (1,), generator=generator)))
        needed = ctc_frames_needed(labels[b, : int(label_lengths[b])].tolist())
        if start == 0 or (length - start) // stack < needed:
            continue
        features[b, : length - start] = features[b, start:length].clone()
        features[b, length - start :] = 0.0
        lengths[b] = length - start
    return lengths


def warp_frequencies(features: torch.Tensor, generator: torch.Generator, max_warp: float,
                     boundary: float = 0.8) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton 2013) on log-mel features: each item's frequencies scaled
    by its own factor from 1 +- max_warp, as a speaker with a shorter or longer vocal tract would sound.
    features: (batch, frames, n_mels) -> a new tensor of that shape.

    The warp is piecewise linear in Hz: f -> alpha * f up to `boundary` of the band, then a line to the band's top,
    so the band's ends stay where they are; each output bin takes the log-mel value of its source frequency,
    interpolated between the two nearest bins."""
    batch, frames, n_mels = features.shape
    centres = mel_centres()
    top = SAMPLE_RATE / 2
    alphas = (1 + (torch.rand(batch, generator=generator) * 2 - 1) * max_warp)[:, None]   # (batch, 1)
    knees = boundary * top * alphas.clamp(max=1.0)  # output frequency where the line to the top begins
    source = torch.where(centres <= knees, centres / alphas,
                         knees / alphas + (centres - knees) * (top - knees / alphas) / (top - knees))  # (batch, n_mels)
    # each source frequency between its two nearest centres (the band's ends beyond them)
    low = (torch.searchsorted(centres, source) - 1).clamp(0, n_mels - 2)
    weight = ((source - centres[low]) / (centres[low + 1] - centres[low])).clamp(0, 1)[:, None]
    low = low[:, None].expand(batch, frames, n_mels)
    return features.gather(2, low) * (1 - weight) + features.gather(2, low + 1) * weight


def spec_augment(features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
                 freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2, time_ratio: float = 0.05) -> torch.Tensor:
    """SpecAugment (frequency and time masking) in place. features: (batch, frames, n_mels). Masked bins take the
    utterance's own mean, so that they normalise to about zero under either normalisation."""
    batch, _, n_mels = features.shape
    for b in range(batch):
        length = int(lengths[b])
        fill = features[b, :length].mean(dim=0)
        for _ in range(freq_masks):
            width = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, n_mels - width + 1, (1,), generator=generator))
            features[b, :length, start : start + width] = fill[start : start + width]
        max_width = max(1, int(length * time_ratio))
        for _ in range(time_masks):
            width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width + 1), (1,), generator=generator))
            features[b, start : start + width] = fill
    return features
