"""Two-pass recognition: the stream model's partials live, and each finished utterance's final from a second model.

A production streaming recognizer answers with two passes: a causal model for the partials (it hears no future, so
it can answer every chunk), and, once an endpoint ends an utterance, a bidirectional model over the whole utterance
for the final (it hears every word's right context). `StreamingRecognizer(..., second_pass=SecondPass(offline))`
keeps each utterance's log-mel frames and returns its final as a `PendingFinal` (the first pass's transcript, its
frames and where it starts); `SecondPass.finals` turns any number of them, from any streams, into the finals:

    second = SecondPass(load_model("offline"), Decoding())
    recognizer = StreamingRecognizer(load_model("stream"), second_pass=second)
    recognizer.accept_waveform(samples)        # finals already through the second pass (one stream, synchronous)

The server instead collects the pending finals of every stream of a step and runs them as one batch, in a thread of
its own (server.batcher). Each utterance is decoded alone (its running normalisation starts at its first frame, a
fresh decoder with the stream's decoding, phrase list and n-best count), so a batch gives each item what it would
give alone, and a file transcribed with the same settings gives the server's finals.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from asr.decoding import Transcript
from asr.features import FRAME_RATE
from asr.lm_decoding import Decoding
from asr.model import AcousticModel

@dataclass
class PendingFinal(Transcript):
    """A finished utterance waiting for the second pass: the first pass's transcript (text, words), its log-mel
    frames (frames, n_mels) and the seconds from the stream's start to its first frame."""

    features: torch.Tensor = field(default_factory=lambda: torch.zeros(0), repr=False)
    offset: float = 0.0
    phrases: tuple[str, ...] | None = None
    max_alternatives: int = 0


class SecondPass:
    """A bidirectional model and the decoding its finals use (the stream's: the same LM and search options)."""

    def __init__(self, model: AcousticModel, decoding: Decoding, name: str = ""):
        if model.streaming:
            raise ValueError("the second pass needs a bidirectional model (e.g. offline)")
        self.model, self.decoding, self.name = model, decoding, name

    @torch.inference_mode()
    def finals(self, pending: list[PendingFinal]) -> list[Transcript]:
        """The second pass's finals of `pending`, in order: utterances of at most WINDOW_SECONDS in one batched
        model call (packed: each item's outputs are its own), longer ones window by window."""
        from asr.transcribe import WINDOW_SECONDS, decode_windows  # (asr.transcribe imports this module)

        stack = self.model.dims.stack
        results: list[Transcript | None] = [None] * len(pending)
        short = [i for i, p in enumerate(pending) if stack <= len(p.features) <= WINDOW_SECONDS * FRAME_RATE]
        if short:
            features = torch.nn.utils.rnn.pad_sequence([pending[i].features for i in short], batch_first=True)
            lengths = torch.tensor([len(pending[i].features) for i in short])
            log_probs, out_lengths, _ = self.model(features, lengths)
            for b, i in enumerate(short):
                decoder = self._decoder(pending[i])
                decoder.feed(log_probs[b, : out_lengths[b]])
                results[i] = self._result(decoder, pending[i])
        for i, item in enumerate(pending):
            if results[i] is None:
                decoder = self._decoder(item)
                if len(item.features) >= stack:
                    decode_windows(self.model, [item.features], decoder)
                results[i] = self._result(decoder, item)
        return results

    def resolve(self, finals: list[Transcript]) -> list[Transcript]:
        """`finals` with every PendingFinal through the second pass (one batch), the others as they are."""
        pending = [f for f in finals if isinstance(f, PendingFinal)]
        if not pending:
            return finals
        done = iter(self.finals(pending))
        return [next(done) if isinstance(f, PendingFinal) else f for f in finals]

    def _decoder(self, item: PendingFinal):
        return self.decoding.decoder(self.model.dims.frame_shift, item.phrases)

    @staticmethod
    def _result(decoder, item: PendingFinal) -> Transcript:
        """The decoder's best path (and n best), word times moved from the utterance's start to the stream's."""
        def shifted(words):
            return [replace(w, start=w.start + item.offset, end=w.end + item.offset) for w in words]

        if item.max_alternatives:
            alternatives = [replace(a, words=shifted(a.words)) for a in decoder.nbest(item.max_alternatives)]
            return Transcript(alternatives[0].text, alternatives[0].words, alternatives)
        best = decoder.result()
        return Transcript(best.text, shifted(best.words))
