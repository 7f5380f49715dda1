"""The Python API, in the shape whisper users know:

    import asr
    model = asr.load_model("stream")                 # or "offline", or a checkpoint path; lm=None for greedy
    result = model.transcribe("talk.mp3")            # Transcript: .text, .words (word, start, end, conf)
    print(result.text, result.words[0].start)

    stream = model.stream(sample_rate=8000)          # one live stream (unidirectional models)
    for chunk in chunks:                             # float32 samples at 8 kHz, any chunk size
        for utterance in stream.accept_waveform(chunk):
            print("final:", utterance.text)
        print("partial:", stream.partial)
    last = stream.finish()                           # the utterances still open at the end of the audio

Words come from a beam search over the shipped English LM by default (`asr.lm_decoding.Decoding`);
`load_model(name, lm=None)` decodes greedily, `lm="path/to/lm_dir"` uses your own (`asr lm build`).
`load_model("stream", final_model="offline")` gives two-pass finals: the stream model's endpoints cut the utterances
and its partials stay live, the bidirectional model transcribes each finished utterance (asr.second_pass).
`asr transcribe` runs `Model.transcribe`; the server runs the same `StreamingRecognizer` that `Model.stream` returns.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from asr.audio import SAMPLE_RATE
from asr.checkpoint import DEFAULT_MODEL, load_model as load_acoustic_model
from asr.decoding import Transcript
from asr.lm import load_language_model
from asr.lm_decoding import BeamSearchOptions, Decoding
from asr.model import AcousticModel
from asr.recognizer import Endpointing, StreamingRecognizer
from asr.second_pass import SecondPass
from asr.transcribe import transcribe_audio, transcribe_file


class Model:
    """A loaded recognizer: the acoustic model and how to decode it."""

    def __init__(self, acoustic: AcousticModel, name: str = "", decoding: Decoding = Decoding(),
                 second_pass: SecondPass | None = None):
        if second_pass is not None and not acoustic.streaming:
            raise ValueError("a second pass (final_model) goes with a unidirectional model (e.g. stream)")
        self.acoustic = acoustic
        self.name = name
        self.decoding = decoding
        self.second_pass = second_pass

    @property
    def streaming(self) -> bool:
        """True for unidirectional models, which `stream` can run live."""
        return self.acoustic.streaming

    def transcribe(self, audio: str | os.PathLike | np.ndarray, sample_rate: int = SAMPLE_RATE,
                   endpointing: Endpointing = Endpointing(),
                   progress: Callable[[float], None] | None = None) -> Transcript:
        """A file (any format, rate and channel count; read in bounded memory) or mono float32 samples (samples,)
        at `sample_rate`. Raises asr.audio.AudioError naming a file that cannot be read."""
        if isinstance(audio, (str, os.PathLike)):
            return transcribe_file(self.acoustic, audio, endpointing, progress, self.decoding, self.second_pass)
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio samples must be one channel, shape (samples,), not {samples.shape}")
        return transcribe_audio(self.acoustic, samples, sample_rate, endpointing, self.decoding, self.second_pass)

    def stream(self, sample_rate: int = SAMPLE_RATE, endpointing: Endpointing = Endpointing(),
               phrases: list[str] | None = None, max_alternatives: int = 0) -> StreamingRecognizer:
        """A recognizer for one live stream at `sample_rate` (unidirectional models only); `phrases` restricts
        it to those phrases, `max_alternatives` adds n-best lists to its finals."""
        return StreamingRecognizer(self.acoustic, sample_rate, endpointing, self.decoding, phrases, max_alternatives,
                                   self.second_pass)


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str = "cpu", lm: str | None = "default",
               options: BeamSearchOptions = BeamSearchOptions(),
               final_model: str | os.PathLike | None = None, precision: str = "float32") -> Model:
    """A shipped model by name ("stream", "offline") or a checkpoint path, ready to transcribe, decoding with the
    LM directory `lm` ("default": the shipped English LM; None: greedy); `final_model` (a bidirectional model's
    name or path) transcribes each utterance again for its final; precision "int8" quantises the acoustic models'
    weights (faster on a CPU, slightly different words: `asr.model.quantized`). Raises
    asr.checkpoint.CheckpointError for a missing or damaged checkpoint, asr.lm.LanguageModelError for a missing or
    damaged LM."""
    if lm is not None:
        load_language_model(lm)  # fail here, naming the LM, rather than at the first transcription
    decoding = Decoding(lm, options)
    second_pass = None
    if final_model is not None:
        second_pass = SecondPass(load_acoustic_model(final_model, device, precision), decoding, str(final_model))
    return Model(load_acoustic_model(name_or_path, device, precision), str(name_or_path), decoding, second_pass)
