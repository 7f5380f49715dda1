"""Greedy CTC decoding with per-word start/end times and confidences, usable on a whole utterance or chunk by chunk."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from asr.tokenizer import BLANK, VOCAB

SPACE = VOCAB.index(" ")


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the stream or file
    end: float
    conf: float  # geometric mean of the posteriors of the word's characters, 0..1

    def to_dict(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3), "conf": round(self.conf, 3)}


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    alternatives: list["Alternative"] = field(default_factory=list)  # n best, when asked for; [0] is this one

    def to_dict(self) -> dict:
        return {"text": self.text, "words": [w.to_dict() for w in self.words]}

    @staticmethod
    def join(parts: list["Transcript"]) -> "Transcript":
        """Concatenate consecutive utterances into one transcript. Alternatives are per utterance: a join of
        several keeps only the best path (one alternative, the product of their confidences)."""
        parts = [p for p in parts if p.text] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        joined = Transcript(" ".join(p.text for p in parts), [w for p in parts for w in p.words])
        if any(p.alternatives for p in parts):
            confidence = math.prod(p.alternatives[0].confidence if p.alternatives else 1.0 for p in parts)
            joined.alternatives = [Alternative(joined.text, joined.words, confidence=confidence)]
        return joined


@dataclass
class Alternative(Transcript):
    """One of the n best hypotheses; `confidence` is its share of the probability of the final beam (0..1)."""

    confidence: float = 0.0

    def to_dict(self) -> dict:  # Vosk's "alternatives" entries
        return {"confidence": round(self.confidence, 4), **super().to_dict()}


@dataclass
class _Char:
    label: int
    frame: int  # absolute output frame
    log_prob: float


class GreedyCTCDecoder:
    """Greedy CTC over output frames fed in any chunking: collapses repeats across chunk boundaries too.

    Frames are counted from the start of the stream, so word times are absolute.
    """

    def __init__(self, frame_shift: float):
        self.frame_shift = frame_shift
        self.frames = 0  # output frames seen so far
        self._previous = BLANK
        self._chars: list[_Char] = []

    def feed(self, log_probs: torch.Tensor) -> None:
        """log_probs: (frames, vocab) for the next frames of the stream."""
        best_log_prob, best = log_probs.max(dim=-1)
        for offset, (label, log_prob) in enumerate(zip(best.tolist(), best_log_prob.tolist())):
            if label != BLANK and label != self._previous:
                self._chars.append(_Char(label, self.frames + offset, log_prob))
            self._previous = label
        self.frames += len(best)

    @property
    def text(self) -> str:
        return " ".join("".join(VOCAB[c.label] for c in self._chars).split())

    @property
    def last_emission(self) -> int | None:
        """Output frame of the last non-blank, non-space emission, or None before any."""
        for char in reversed(self._chars):
            if char.label != SPACE:
                return char.frame
        return None

    def result(self) -> Transcript:
        """The hypothesis so far as text and timed words."""
        words, current = [], []
        for char in self._chars + [_Char(SPACE, self.frames, 0.0)]:
            if char.label == SPACE:
                if current:
                    words.append(self._word(current))
                current = []
            else:
                current.append(char)
        return Transcript(" ".join(w.word for w in words), words)

    def nbest(self, n: int) -> list[Alternative]:
        """Greedy decoding has one hypothesis: it, with confidence 1."""
        best = self.result()
        return [Alternative(best.text, best.words, confidence=1.0)][:n]

    def clear(self) -> None:
        """Forget the hypothesis (after an endpoint); the frame count and repeat context go on."""
        self._chars = []
        self._previous = BLANK

    def _word(self, chars: list[_Char]) -> Word:
        start = chars[0].frame * self.frame_shift
        end = (chars[-1].frame + 1) * self.frame_shift
        conf = math.exp(sum(c.log_prob for c in chars) / len(chars))
        return Word("".join(VOCAB[c.label] for c in chars), start, end, conf)


def ctc_greedy(log_probs: torch.Tensor, frame_shift: float) -> Transcript:
    """log_probs: (frames, vocab) of one utterance -> transcript with timed words."""
    decoder = GreedyCTCDecoder(frame_shift)
    decoder.feed(log_probs)
    return decoder.result()
