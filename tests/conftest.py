"""Shared fixtures: real speech made by espeak-ng, and the real shipped models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from tests.helpers import SENTENCES, espeak


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A folder of short espeak-ng utterances (16 kHz WAV), one per SENTENCES key."""
    folder = tmp_path_factory.mktemp("speech")
    for name, text in SENTENCES.items():
        espeak(text, folder / f"{name}.wav")
    return folder


@pytest.fixture(scope="session")
def speech_wav(speech_dir) -> Path:
    return speech_dir / "hello.wav"


@pytest.fixture(scope="session")
def long_speech(speech_dir, tmp_path_factory) -> Path:
    """About 20 s: the three sentences twice with a second of silence between them."""
    parts = []
    for _ in range(2):
        for name in SENTENCES:
            parts += [load_audio(speech_dir / f"{name}.wav"), np.zeros(SAMPLE_RATE, dtype=np.float32)]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(stream_model):
    """A real server on a free loopback port, running the shipped stream model."""
    from server.app import ServerThread
    from server.settings import ServerSettings

    with ServerThread(ServerSettings(port=0), stream_model, "stream") as running:
        yield running


def _shipped(name: str):
    from asr.checkpoint import MODELS_DIR, load_model

    if not (MODELS_DIR / f"{name}.pt").exists():
        pytest.fail(f"shipped model {name!r} missing from {MODELS_DIR}: run training/recipe.sh")
    return load_model(name)


@pytest.fixture(scope="session")
def stream_model():
    return _shipped("stream")


@pytest.fixture(scope="session")
def offline_model():
    return _shipped("offline")
