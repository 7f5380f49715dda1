"""`asr stream`: a file streamed to a real server prints the offline transcript; the microphone client, tested with a
fake input stream because this machine has no microphone, and its clear failure when there is no input device."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from asr.audio import float_to_pcm16, load_audio, resample
from server.cli import main
from server.client import stream_microphone
from tests.helpers import stream_transcript


def test_stream_a_file_prints_the_final_text(server, stream_model, speech_wav, capsys):
    assert main(["stream", str(speech_wav), "--url", server.url, "--chunk-ms", "150"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out  # partials are drawn on a terminal only; here each final is a line
    assert " ".join(out.splitlines()) == stream_transcript(stream_model, float_to_pcm16(load_audio(speech_wav)))


def test_stream_json_prints_every_reply(server, speech_wav, capsys):
    assert main(["stream", str(speech_wav), "--url", server.url, "--json", "--chunk-ms", "500"]) == 0
    replies = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("partial" in r or "text" in r for r in replies) and "result" in replies[-1]
    assert len(replies) == -(-len(load_audio(speech_wav)) // 8000) + 1  # one per 500 ms chunk, one for eof


def test_stream_realtime_is_paced_by_the_clock(server, speech_wav, capsys):
    duration = len(load_audio(speech_wav)) / 16000
    started = time.monotonic()
    assert main(["stream", str(speech_wav), "--url", server.url, "--realtime", "--chunk-ms", "200"]) == 0
    assert time.monotonic() - started >= duration - 0.3


def test_stream_errors_are_clear(server, tmp_path, capsys):
    assert main(["stream", str(tmp_path / "missing.wav"), "--url", server.url]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x.wav").write_bytes(b"")
    assert main(["stream", str(tmp_path / "x.wav"), "--url", "ws://127.0.0.1:9"]) == 2
    silence = tmp_path / "silence.wav"
    import soundfile as sf
    sf.write(silence, np.zeros(1600, np.float32), 16000)
    assert main(["stream", str(silence), "--url", "ws://127.0.0.1:9"]) == 1
    assert "cannot connect" in capsys.readouterr().err
    assert main(["stream", "--url", server.url]) == 2
    assert main(["stream", str(silence), "--mic"]) == 2


def test_asr_command_has_stream_and_serve():
    """`asr stream` and `asr serve` come through the "asr.commands" entry points of the installed package."""
    for command, env in (("stream", "ASR_URL"), ("serve", "ASR_PORT")):
        result = subprocess.run([sys.executable, "-m", "asr", command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "examples:" in result.stdout and env in result.stdout


class FakeInputStream:
    """Stands in for sounddevice.RawInputStream, because this machine has no microphone: plays recorded PCM16 to
    the callback from a thread in blocks, at 4x real time, then stops (`active` turns False) like a device would."""

    def __init__(self, pcm: bytes, samplerate: int, blocksize: int, callback):
        self.pcm, self.block_bytes, self.callback = pcm, blocksize * 2, callback
        self.pause = blocksize / samplerate / 4
        self.active = False
        self._thread = threading.Thread(target=self._play, daemon=True)

    def _play(self):
        for offset in range(0, len(self.pcm), self.block_bytes):
            block = self.pcm[offset : offset + self.block_bytes]
            self.callback(memoryview(block), len(block) // 2, None, None)
            time.sleep(self.pause)
        self.active = False

    def __enter__(self):
        self.active = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._thread.join()


def test_microphone_client_with_a_fake_input(server, stream_model, speech_wav, capsys):
    rate = 48000  # a typical device rate: the server resamples
    pcm = float_to_pcm16(resample(load_audio(speech_wav), 16000, rate))
    opened = []

    def open_input(samplerate, blocksize, callback):
        opened.append((samplerate, blocksize))
        return FakeInputStream(pcm, samplerate, blocksize, callback)

    text = stream_microphone(server.url, chunk_ms=100, input_source=(rate, open_input))
    assert opened == [(48000, 4800)]
    assert text == stream_transcript(stream_model, pcm, rate)
    assert " ".join(capsys.readouterr().out.splitlines()) == text


def test_microphone_client_stops_after_seconds(server):
    pcm = float_to_pcm16(np.zeros(16000 * 3, np.float32))
    replies = []

    class Out:
        def write(self, text):
            replies.extend(json.loads(line) for line in text.splitlines() if line)

        def flush(self):
            pass

        def isatty(self):
            return False

    stream_microphone(server.url, chunk_ms=200, raw=True, seconds=1.0, out=Out(),
                      input_source=(16000, lambda **kw: FakeInputStream(pcm, **kw)))
    assert len(replies) == 5 + 1  # 1 s in 200 ms chunks, then the final


def test_no_microphone_fails_clearly(capsys):
    sounddevice = pytest.importorskip("sounddevice")
    try:
        sounddevice.query_devices(kind="input")
        pytest.skip("this machine has an input device")
    except sounddevice.PortAudioError:
        pass
    assert main(["stream", "--mic", "--url", "ws://127.0.0.1:9"]) == 2
    assert "no microphone found" in capsys.readouterr().err
