"""The streaming recognizer: one per stream, no I/O. `asr transcribe --model stream` and the server both use it, so
a file and a stream of the same audio give the same text.

A stream carries, from one chunk to the next: the resampler's filter state, the samples not yet framed, the feature
frames of no model step yet (or read ahead by the next steps: `ModelDims.lookahead`), every LSTM layer's `(h, c)`
and running feature mean, and the decoder's hypothesis (greedy, or beam search over words with an LM or a phrase
list: `asr.lm_decoding.Decoding`). Many streams share one model step through `decode_streams` (their states are
stacked on the batch dimension and split back afterwards).
A stream ends in one place: `accept_audio(..., last=True)` marks the recognizer finished, and the next
`decode_streams` decodes what is left and returns its last utterance with the others.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from asr.audio import SAMPLE_RATE, StreamResampler
from asr.decoding import SPACE, Transcript
from asr.features import N_MELS, StreamingFeatures, take_new_frames
from asr.lm_decoding import GREEDY, Decoding
from asr.model import AcousticModel, stack_states, unstack_states
from asr.second_pass import PendingFinal, SecondPass
from asr.tokenizer import BLANK


@dataclass(frozen=True)
class Endpointing:
    """When an utterance is final: after `silence` seconds of frames whose CTC blank posterior is at least
    `blank_threshold`, once some speech was heard; or when it reaches `max_utterance` seconds."""

    blank_threshold: float = 0.9
    silence: float = 0.8
    max_utterance: float = 20.0

    def __post_init__(self):
        if not 0.0 < self.blank_threshold <= 1.0:
            raise ValueError(f"blank_threshold {self.blank_threshold} is outside (0, 1]")
        if self.silence <= 0 or self.max_utterance <= 0:
            raise ValueError("endpoint silence and max_utterance must be positive seconds")


class StreamingRecognizer:
    """Recognizes one stream of audio with a unidirectional model. Not thread-safe: one caller at a time.

    decoding: greedy (the default here) or beam search with an LM; phrases: restrict the output to sequences of
    these phrases (a grammar, as Vosk's phrase_list); max_alternatives: finals carry that many n-best alternatives;
    second_pass: finals from a bidirectional model over each whole utterance (asr.second_pass): the recognizer keeps
    the current utterance's log-mel frames (at most `max_utterance` seconds and one message) and `decode_streams`
    returns its final as a PendingFinal; `accept_waveform` and `finish` run the second pass themselves.
    """

    def __init__(self, model: AcousticModel, sample_rate: int = SAMPLE_RATE, endpointing: Endpointing = Endpointing(),
                 decoding: Decoding = GREEDY, phrases: list[str] | None = None, max_alternatives: int = 0,
                 second_pass: SecondPass | None = None):
        if not model.streaming:
            raise ValueError("streaming recognition needs a unidirectional model (e.g. --model stream)")
        self.model = model
        self.sample_rate = sample_rate
        self.endpointing = endpointing
        self.frame_shift = model.dims.frame_shift
        self._silence_needed = max(1, round(endpointing.silence / self.frame_shift))  # output frames
        self._max_utterance_frames = max(1, round(endpointing.max_utterance / self.frame_shift))
        self._resampler = StreamResampler(sample_rate)
        self._features = StreamingFeatures()
        self._frames = torch.zeros(0, N_MELS)  # feature frames of no model step yet, or a lookahead
        self.state = model.init_state(1)
        self.decoder = decoding.decoder(self.frame_shift, phrases)
        self.phrases = tuple(phrases) if phrases else None
        self.max_alternatives = max_alternatives
        self.second_pass = second_pass
        # the second pass's frames: written by the model step, cut at each utterance's end by the search step
        self._kept: list[torch.Tensor] = []  # log-mel frames from absolute frame `_kept_start` on
        self._kept_start = 0
        self._kept_lock = threading.Lock()
        self._steps_searched = 0  # model steps whose outputs the search has taken (absolute)
        self._utterance_start = 0  # model step where the current utterance starts
        self._silence_frames = 0
        self._utterance_frames = 0
        self._heard_speech = False
        self.audio_seconds = 0.0
        self.finished = False  # no more audio comes (accept_audio(..., last=True))
        self.closed = False  # finished, and its last utterance has been returned

    # --- audio in -------------------------------------------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray, last: bool = False) -> None:
        """samples: (n,) float32 at the stream's sample rate. `last` says the stream ends here: it flushes the
        resampler, and the next `decode_streams` returns the stream's last utterance."""
        if self.finished:
            raise ValueError("this stream has ended (accept_audio(..., last=True)); start a new recognizer")
        self.finished = last
        audio = self._resampler(np.asarray(samples, dtype=np.float32), last=last)
        self.audio_seconds += len(audio) / SAMPLE_RATE
        self._features.push(audio)  # framed by the next decode_streams, with every other stream's audio

    def take_frames(self, new_frames: torch.Tensor) -> torch.Tensor | None:
        """Adds `new_frames` (frames, n_mels) to the buffered ones; returns them all, (frames, n_mels), if they make
        a model step (`AcousticModel.steps`), or None if not yet. `used_steps` drops the frames the model used."""
        if len(new_frames):
            self._frames = torch.cat([self._frames, new_frames])
            if self.second_pass is not None:
                with self._kept_lock:
                    self._kept.append(new_frames)
        if self.model.steps(len(self._frames), self.finished) == 0:
            return None
        return self._frames

    def used_steps(self, steps: int) -> None:
        """The model ran `steps` steps on the frames `take_frames` gave: theirs are done, their lookahead is not."""
        self._frames = self._frames[steps * self.model.dims.stack :]

    # --- model out ------------------------------------------------------------------------------------------------
    def accept_log_probs(self, log_probs: torch.Tensor) -> list[Transcript]:
        """log_probs: (steps, vocab) for this stream's next model steps. Returns the utterances they finalise."""
        threshold = self.endpointing.blank_threshold
        labels = log_probs.argmax(dim=-1).tolist()
        blank_probs = log_probs[:, BLANK].exp().tolist()
        finals, start, searched = [], 0, self._steps_searched
        for t, (label, blank_prob) in enumerate(zip(labels, blank_probs)):
            self._heard_speech |= label not in (BLANK, SPACE)
            self._silence_frames = self._silence_frames + 1 if blank_prob >= threshold else 0
            self._utterance_frames += 1
            if (self._heard_speech and self._silence_frames >= self._silence_needed
                    or self._utterance_frames >= self._max_utterance_frames):
                self.decoder.feed(log_probs[start : t + 1])
                start = t + 1
                self._steps_searched = searched + start
                final = self.finish_utterance()
                if final.text:
                    finals.append(final)
        self.decoder.feed(log_probs[start:])
        self._steps_searched = searched + len(labels)
        return finals

    @property
    def partial(self) -> str:
        return self.decoder.text

    def finish_utterance(self) -> Transcript:
        """End the current utterance (endpoint, reset or end of stream) and return it; the acoustic state goes on.
        With a second pass, a PendingFinal: the first pass's transcript, the utterance's frames and its start."""
        if self.max_alternatives:
            alternatives = self.decoder.nbest(self.max_alternatives)
            result = Transcript(alternatives[0].text, alternatives[0].words, alternatives)
        else:
            result = self.decoder.result()
        self.decoder.clear()
        self._silence_frames = self._utterance_frames = 0
        self._heard_speech = False
        if self.second_pass is not None:
            result = self._pending(result)
        return result

    def _pending(self, first: Transcript) -> PendingFinal:
        """The frames of the model steps from the utterance's start to the last one searched, cut out of the kept
        frames (the later ones, which the model may already have stepped through, stay for the next utterance)."""
        stack = self.model.dims.stack
        start, end = self._utterance_start * stack, self._steps_searched * stack
        with self._kept_lock:
            kept = torch.cat(self._kept) if self._kept else torch.zeros(0, N_MELS)
            self._kept = [kept[end - self._kept_start :]]
            features = kept[start - self._kept_start : end - self._kept_start]
            self._kept_start = end
        self._utterance_start = self._steps_searched
        return PendingFinal(first.text, first.words, first.alternatives, features=features,
                            offset=start * self.model.dims.frame_shift / stack, phrases=self.phrases,
                            max_alternatives=self.max_alternatives)

    # --- single-stream convenience ----------------------------------------------------------------------------------
    def accept_waveform(self, samples: np.ndarray, last: bool = False) -> list[Transcript]:
        """Feed audio and run the model on what is ready. Returns utterances finalised by endpoints (and, with
        `last`, the stream's last utterance, possibly with empty text)."""
        self.accept_audio(samples, last=last)
        finals = decode_streams(self.model, [self])[0]
        return self.second_pass.resolve(finals) if self.second_pass is not None else finals

    def finish(self) -> list[Transcript]:
        """End of stream: `accept_waveform` of no more audio, `last`. Returns the remaining utterances (the last
        one possibly with empty text)."""
        return self.accept_waveform(np.zeros(0, dtype=np.float32), last=True)


@dataclass
class StepOutput:
    """What one model step gave a stream, for its search: log_probs (steps, vocab) or None (no frames ready), and
    whether the stream had ended (`accept_audio(..., last=True)`) when the step ran."""

    log_probs: torch.Tensor | None
    ended: bool


@torch.inference_mode()
def model_step(model: AcousticModel, recognizers: list[StreamingRecognizer]) -> list[StepOutput]:
    """The acoustic half of `decode_streams`: every stream's new feature frames from one batched log-mel
    (`take_new_frames`), the states of the ready streams stacked on the batch dimension, one model call, the states
    split back (`stack_states`). Touches each recognizer's audio, frames and LSTM state, never its decoder, so the
    next model step of a stream may run before `search_step` has taken this one's output."""
    new_frames = take_new_frames([r._features for r in recognizers])
    outputs = [StepOutput(None, r.finished) for r in recognizers]
    ready = [(i, f) for i, (r, new) in enumerate(zip(recognizers, new_frames)) if (f := r.take_frames(new)) is not None]
    if ready:
        indices, frames = zip(*ready)
        streams = [recognizers[i] for i in indices]
        lengths = torch.tensor([len(f) for f in frames])
        state = stack_states([r.state for r in streams])
        final = torch.tensor([r.finished for r in streams])
        log_probs, out_lengths, state = model(pad_sequence(frames, batch_first=True), lengths, state, final=final)
        for b, (i, recognizer, stream_state) in enumerate(zip(indices, streams, unstack_states(state))):
            recognizer.state = stream_state
            recognizer.used_steps(int(out_lengths[b]))
            outputs[i].log_probs = log_probs[b, : out_lengths[b]]
    return outputs


def search_step(recognizers: list[StreamingRecognizer], outputs: list[StepOutput]) -> list[list[Transcript]]:
    """The decoding half of `decode_streams`: each stream's endpointing and search over its step output, in the
    order the model steps ran. Returns each recognizer's new finals; a stream that had ended also gets its last
    utterance, once, and is then closed."""
    results = []
    for recognizer, output in zip(recognizers, outputs):
        finals = recognizer.accept_log_probs(output.log_probs) if output.log_probs is not None else []
        if output.ended and not recognizer.closed:
            recognizer.closed = True
            finals.append(recognizer.finish_utterance())
        results.append(finals)
    return results


def decode_streams(model: AcousticModel, recognizers: list[StreamingRecognizer]) -> list[list[Transcript]]:
    """One batched model step over every recognizer with ready frames, then each one's search (`model_step`, then
    `search_step`). Returns each recognizer's new finals; a finished recognizer (`accept_audio(..., last=True)`)
    also gets its last utterance, once, and is then closed."""
    return search_step(recognizers, model_step(model, recognizers))
