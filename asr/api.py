"""The Python API, in the shape whisper users know:

    import asr
    model = asr.load_model("stream")                 # or "offline", or a checkpoint path
    result = model.transcribe("talk.mp3")            # Transcript: .text, .words (word, start, end, conf)
    print(result.text, result.words[0].start)

    stream = model.stream(sample_rate=8000)          # one live stream (unidirectional models)
    for chunk in chunks:                             # float32 samples at 8 kHz, any chunk size
        for utterance in stream.accept_waveform(chunk):
            print("final:", utterance.text)
        print("partial:", stream.partial)
    last = stream.finish()                           # the utterances still open at the end of the audio

`asr transcribe` runs `Model.transcribe`; the server runs the same `StreamingRecognizer` that `Model.stream` returns.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from asr.audio import SAMPLE_RATE
from asr.checkpoint import DEFAULT_MODEL, load_model as load_acoustic_model
from asr.decoding import Transcript
from asr.model import AcousticModel
from asr.recognizer import Endpointing, StreamingRecognizer
from asr.transcribe import transcribe_audio, transcribe_file


class Model:
    """A loaded recognizer: the acoustic model and how to decode it."""

    def __init__(self, acoustic: AcousticModel, name: str = ""):
        self.acoustic = acoustic
        self.name = name

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
            return transcribe_file(self.acoustic, audio, endpointing, progress=progress)
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio samples must be one channel, shape (samples,), not {samples.shape}")
        return transcribe_audio(self.acoustic, samples, sample_rate, endpointing)

    def stream(self, sample_rate: int = SAMPLE_RATE, endpointing: Endpointing = Endpointing()) -> StreamingRecognizer:
        """A recognizer for one live stream at `sample_rate` (unidirectional models only)."""
        return StreamingRecognizer(self.acoustic, sample_rate, endpointing)


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str = "cpu") -> Model:
    """A shipped model by name ("stream", "offline") or a checkpoint path, ready to transcribe.
    Raises asr.checkpoint.CheckpointError for a missing or damaged checkpoint."""
    return Model(load_acoustic_model(name_or_path, device), str(name_or_path))
