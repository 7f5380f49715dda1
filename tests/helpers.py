"""Helpers the tests import (fixtures stay in conftest.py): speech made by espeak-ng, and the transcript a stream of
some audio must end with, and real-time websocket clients that time their replies."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from websockets.sync.client import connect

from asr.audio import SAMPLE_RATE, load_audio, pcm16_to_float
from asr.lm_decoding import Decoding
from asr.recognizer import Endpointing, StreamingRecognizer
from asr.transcribe import transcribe_audio
from server.settings import ServerSettings
from training.librispeech import Utterance, write_subset

CHUNK = SAMPLE_RATE // 5 * 2  # 200 ms of PCM16
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


def write_part(folder: Path, speech_dir: Path, names: list[str]) -> Path:
    """A dev-suite part at `folder`: the espeak-ng utterances `names` of `speech_dir` (the `speech_dir` fixture), one
    speaker, transcripts from SENTENCES."""
    write_subset(folder, [Utterance(f"7-1-{i:04d}", str(speech_dir / f"{name}.wav"), 0.0, SENTENCES[name].upper(), "7")
                          for i, name in enumerate(names)])
    return folder


def suite_wers(table: str) -> dict[str, float]:
    """The first model's WER (in %) by row of a `python -m training.dev_suite` table."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0]: float(row[3].split("%")[0]) for row in rows}


def new_recognizer(model):
    """A Session's NewRecognizer over `model`: default endpointing, greedy decoding, no second pass."""
    return lambda rate, phrases, alternatives: StreamingRecognizer(model, rate, phrases=phrases,
                                                                   max_alternatives=alternatives)


def stream_transcript(model, pcm: bytes, sample_rate: int = SAMPLE_RATE,
                      endpointing: Endpointing = Endpointing(), decoding: Decoding = ServerSettings().decoding) -> str:
    """What `asr transcribe --model stream` (and a server with the same settings: by default, beam search with the
    shipped LM) gives for a whole PCM16 recording at `sample_rate`."""
    return transcribe_audio(model, pcm16_to_float(pcm), sample_rate, endpointing, decoding).text


def realtime_latencies(url: str, pcm: bytes, streams: int, seconds: float) -> list[float]:
    """`streams` clients, each sending 200 ms chunks in real time and timing each reply."""
    latencies, errors = [], []

    def client(i):
        try:
            with connect(url) as ws:
                start = time.monotonic() + 0.2 * i / streams
                for n in range(int(seconds * 5)):
                    time.sleep(max(0.0, start + 0.2 * n - time.monotonic()))
                    offset = (n * CHUNK + i * 7 * CHUNK) % (len(pcm) - CHUNK)
                    sent = time.perf_counter()
                    ws.send(pcm[offset : offset + CHUNK])
                    assert "error" not in json.loads(ws.recv(timeout=60))
                    latencies.append(time.perf_counter() - sent)
                ws.send('{"eof": 1}')
                ws.recv(timeout=60)
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    assert not errors, errors
    return latencies
