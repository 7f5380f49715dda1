"""Distillation: a trained model's per-frame output distributions as a second training target (`asr train --teacher`),
typically an offline (bidirectional) model teaching the stream model.

A unidirectional CTC model puts its spikes later than a bidirectional one, which has heard the rest of the word: the
student's frame t + shift is taught the teacher's frame t. The default shift of 3 steps (90 ms) is where the phase-5
stream model's outputs were closest to the offline model's; to measure it for other models:

    python -m training.distill --teacher runs/offline/best.pt --student runs/stream/best.pt --data DIR [DIR ...]

(mean KL over 200 real dev utterances: 2.84 unshifted, 1.79 at 2, 0.78 at 3, 1.17 at 4).
"""
from __future__ import annotations

import argparse
import random

import torch

from asr.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from asr.model import AcousticModel
from training.data import UtteranceDataset
from training.librispeech import load_manifests


class Teacher:
    """A frozen model's log-probabilities for each training utterance, computed once per utterance (alone, in eval
    mode, from the unaugmented features: the same values in a resumed run) and kept as float16."""

    def __init__(self, path: str, student: AcousticModel, dataset: UtteranceDataset, shift: int):
        try:
            self.model = model_from_checkpoint(load_checkpoint(path)).eval().to(student.feature_mean.device)
        except CheckpointError as error:
            raise CheckpointError(f"--teacher: {error}") from None
        dims, own = self.model.dims, student.dims
        if (dims.stack, dims.vocab) != (own.stack, own.vocab):
            raise SystemExit(f"--teacher {path}: its outputs (stack {dims.stack}, vocab {dims.vocab}) do not match "
                             f"the model's (stack {own.stack}, vocab {own.vocab})")
        if shift < 0:
            raise SystemExit(f"--distill-shift {shift}: must be 0 or more")
        self.dataset, self.shift, self.cache = dataset, shift, {}

    @torch.inference_mode()
    def log_probs(self, index: int) -> torch.Tensor:
        """(steps, vocab) the teacher's log-probabilities for training example `index`, delayed by `shift` steps
        (the first `shift` steps repeat its first one)."""
        if index not in self.cache:
            features = self.dataset.features(index)[None].to(self.model.feature_mean.device)
            out = self.model(features, torch.tensor([features.shape[1]]))[0][0].cpu()
            delayed = torch.cat([out[:1].expand(min(self.shift, len(out)), -1), out[: max(0, len(out) - self.shift)]])
            self.cache[index] = delayed.half()
        return self.cache[index].float()

    def batch(self, indices: list[int], steps: int) -> torch.Tensor:
        """(batch, steps, vocab) log-probabilities for a batch of utterances, padded with zeros to `steps`."""
        targets = torch.zeros(len(indices), steps, self.model.dims.vocab)
        for b, index in enumerate(indices):
            log_probs = self.log_probs(index)[:steps]
            targets[b, : len(log_probs)] = log_probs
        return targets


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per frame, averaged over the valid frames of the batch.
    student, teacher: (batch, steps, vocab) log-probabilities; lengths: (batch,) valid steps."""
    valid = torch.arange(student.shape[1], device=student.device)[None, :] < lengths.to(student.device)[:, None]
    kl = (teacher.exp() * (teacher - student)).sum(dim=-1)
    return (kl * valid).sum() / valid.sum().clamp_min(1)


@torch.inference_mode()
def shift_divergence(teacher: AcousticModel, student: AcousticModel, dataset: UtteranceDataset,
                     shifts: range) -> dict[int, float]:
    """Mean per-frame KL(teacher delayed by s || student) over the dataset's utterances, for each shift s."""
    totals = dict.fromkeys(shifts, 0.0)
    for index in range(len(dataset)):
        features = dataset.features(index)[None]
        lengths = torch.tensor([features.shape[1]])
        taught, own = teacher(features, lengths)[0][0], student(features, lengths)[0][0]
        for s in shifts:
            steps = len(own) - s
            totals[s] += float(distillation_loss(own[None, s:], taught[None, :steps], torch.tensor([steps])))
    return {s: total / len(dataset) for s, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training.distill",
                                     description="How far a student model's outputs lag a teacher's: mean KL per shift.")
    parser.add_argument("--teacher", required=True, help="checkpoint, e.g. the offline model")
    parser.add_argument("--student", required=True, help="checkpoint, e.g. the stream model")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="LibriSpeech-format dirs (dev data)")
    parser.add_argument("--utterances", type=int, default=200, help="a random sample of this many (default 200)")
    parser.add_argument("--max-shift", type=int, default=7)
    args = parser.parse_args()
    try:
        teacher, student = (model_from_checkpoint(load_checkpoint(p)).eval() for p in (args.teacher, args.student))
    except CheckpointError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    utterances = load_manifests(args.data)
    random.Random(0).shuffle(utterances)
    dataset = UtteranceDataset(utterances[: args.utterances], student.dims.stack)
    for shift, kl in shift_divergence(teacher, student, dataset, range(args.max_shift + 1)).items():
        print(f"shift {shift}: KL {kl:.3f}")


if __name__ == "__main__":
    main()
