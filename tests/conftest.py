"""Shared fixtures: real speech made by espeak-ng, and the real shipped models."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio

SENTENCES = {
    "hello": "hello world this is a test",
    "weather": "the weather is nice today and the sun is shining",
    "numbers": "she sells sea shells by the sea shore",
}


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Speak `text` into a 16 kHz mono WAV at `path` with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: apt-get install espeak-ng (the tests make their speech with it)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    sf.write(path, load_audio(raw), SAMPLE_RATE, subtype="PCM_16")
    raw.unlink()
    return path


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


def stream_transcript(model, pcm: bytes, sample_rate: int = SAMPLE_RATE, endpointing=None) -> str:
    """What `asr transcribe --model stream` gives for a whole PCM16 recording at `sample_rate`."""
    from asr.audio import pcm16_to_float
    from asr.decoding import Transcript
    from asr.recognizer import Endpointing, StreamingRecognizer

    recognizer = StreamingRecognizer(model, sample_rate, endpointing or Endpointing())
    return Transcript.join(recognizer.accept_waveform(pcm16_to_float(pcm)) + recognizer.finish()).text


@pytest.fixture(scope="module")
def server(stream_model):
    """A real server on a free loopback port, running the shipped stream model."""
    from server.app import ServerSettings, ServerThread

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
