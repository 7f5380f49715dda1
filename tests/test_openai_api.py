"""OpenAI's transcription API on a real server, through the real `openai` SDK: the same text, subtitles and word
times as `asr transcribe`, server-sent events, OpenAI's error shape for bad requests, and uploads behind live
streams."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile as sf

from asr.audio import float_to_pcm16, load_audio
from asr.formats import render
from asr.transcribe import transcribe_file
from server.app import ServerThread
from server.settings import ServerSettings
from tests.helpers import realtime_latencies

TOKEN = "s3cret"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(stream_model):
    settings = ServerSettings(port=0, token=TOKEN, max_upload_bytes=2_000_000)
    with ServerThread(settings, stream_model, "stream") as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=TOKEN, max_retries=0)


@pytest.fixture(scope="module")
def expected(stream_model, long_speech):
    """What `asr transcribe --model stream` gives for the file (the server's settings: beam search with the LM)."""
    return transcribe_file(stream_model, long_speech, decoding=ServerSettings().decoding)


def test_text_and_json_equal_asr_transcribe(client, long_speech, expected):
    assert len(expected.text.split()) > 20  # several utterances of real words
    with open(long_speech, "rb") as audio:  # "whisper-1", which clients hard-code, is the server's model
        result = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en", temperature=0.2,
                                                    prompt="ignored")
    assert result.text == expected.text
    with open(long_speech, "rb") as audio:
        text = client.audio.transcriptions.create(model="stream", file=audio, response_format="text")
    assert text == expected.text + "\n"  # as `asr transcribe --format text` prints it


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_equal_asr_transcribe(client, long_speech, expected, fmt):
    with open(long_speech, "rb") as audio:
        subtitles = client.audio.transcriptions.create(model="stream", file=audio, response_format=fmt)
    assert subtitles == render(expected, fmt, str(long_speech), 0.0)
    assert subtitles.count("-->") >= 2


def test_verbose_json_has_word_times_and_a_segment_per_utterance(client, long_speech, expected):
    with open(long_speech, "rb") as audio:
        result = client.audio.transcriptions.create(model="stream", file=audio, response_format="verbose_json",
                                                    timestamp_granularities=["word", "segment"])
    duration = sf.info(long_speech).duration
    assert result.text == expected.text and result.language == "english"
    assert result.duration == pytest.approx(duration, abs=0.01)
    assert [(w.word, w.start, w.end) for w in result.words] == [
        (w.word, round(w.start, 3), round(w.end, 3)) for w in expected.words]
    assert all(0 <= w.start <= w.end <= duration for w in result.words)
    # The recording is three sentences twice with a second of silence between them: the endpointer cuts it.
    assert len(result.segments) >= 3
    assert " ".join(s.text for s in result.segments) == expected.text
    assert all(a.end <= b.start for a, b in zip(result.segments, result.segments[1:]))
    assert all(s.avg_logprob <= 0 and s.compression_ratio > 0 for s in result.segments)


def test_an_mp3_upload_equals_asr_transcribe_of_the_mp3(client, stream_model, long_speech, tmp_path):
    """MP3 (what phones and most tools send) goes through ffmpeg, whole, as `asr transcribe` reads it."""
    mp3 = tmp_path / "talk.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(long_speech), "-b:a", "64k", str(mp3)], check=True)
    with open(mp3, "rb") as audio:
        result = client.audio.transcriptions.create(model="stream", file=audio)
    expected = transcribe_file(stream_model, mp3, decoding=ServerSettings().decoding)
    assert result.text == expected.text and len(expected.text.split()) > 20


def test_stream_true_sends_deltas_that_add_up_to_the_text(client, long_speech, expected):
    with open(long_speech, "rb") as audio:
        events = list(client.audio.transcriptions.create(model="stream", file=audio, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 3 and events[-1].type == "transcript.text.done"
    assert "".join(deltas) == events[-1].text == expected.text


def test_the_readmes_sdk_script_runs_unmodified(server, stream_model):
    """The README's example, run as a user would (only its address and key point at the test server)."""
    (script,) = [block for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
                 if "OpenAI(" in block]
    script = script.replace("http://127.0.0.1:2700", f"http://127.0.0.1:{server.port}")
    script = re.sub(r'api_key="[^"]*"', f'api_key="{TOKEN}"', script)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    expected = transcribe_file(stream_model, ROOT / "samples" / "weather.flac", decoding=ServerSettings().decoding)
    assert result.stdout == expected.text + "\n"


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["stream"]


def test_a_wrong_key_is_refused(server, long_speech):
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="wrong", max_retries=0)
    with open(long_speech, "rb") as audio, pytest.raises(openai.AuthenticationError) as caught:
        wrong.audio.transcriptions.create(model="stream", file=audio)
    assert caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_an_oversized_file_is_refused_and_the_server_goes_on(client, long_speech, expected, tmp_path):
    big = tmp_path / "big.wav"  # 70 s of 16-bit audio at 16 kHz: over the test server's 2 MB
    sf.write(big, np.tile(load_audio(long_speech), 4), 16000, subtype="PCM_16")
    with open(big, "rb") as audio, pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="stream", file=audio)
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large" and "2000000 bytes" in caught.value.body["message"]
    with open(long_speech, "rb") as audio:
        assert client.audio.transcriptions.create(model="stream", file=audio).text == expected.text


@pytest.mark.parametrize("kwargs, param, says", [
    ({"file": ("notes.wav", b"these are not the droids you are looking for" * 20)}, "file", "notes.wav: cannot decode"),
    ({"file": ("empty.wav", b"")}, "file", "empty.wav"),
    ({"model": "tiny.en"}, "model", "'tiny.en' is not served here"),
    ({"language": "de"}, "language", "English"),
    ({"response_format": "xml"}, "response_format", "'xml' is not one of"),
    ({"timestamp_granularities": ["phoneme"]}, "timestamp_granularities", "'phoneme'"),
    ({"temperature": 3.0}, "temperature", "0..1"),
], ids=["not-audio", "empty", "model", "language", "format", "granularity", "temperature"])
def test_bad_requests_get_a_400_in_openais_shape(client, long_speech, kwargs, param, says):
    request = {"model": "stream", **kwargs}
    with open(long_speech, "rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(**{"file": audio, **request})
    error = caught.value.body
    assert error["param"] == param and says in error["message"] and error["type"] == "invalid_request_error"
    assert "Traceback" not in error["message"] and "/tmp" not in error["message"]  # no server paths either


def test_a_form_without_a_file(server):
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/audio/transcriptions", method="POST",
                                     data=b"model=stream", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and b"multipart/form-data" in caught.value.read()


def test_live_streams_outrank_a_long_upload(stream_model, long_speech, tmp_path):
    """Real-time streams beside 3-minute uploads decoded as fast as the server can (one after another for as long as
    the streams run, so that a fast machine cannot finish before them): their reply latency stays within a bound of
    the same streams alone, and the uploads still finish."""
    long = tmp_path / "long.flac"
    sf.write(long, np.tile(load_audio(long_speech), 9), 16000)
    pcm = float_to_pcm16(load_audio(long_speech))
    with ServerThread(ServerSettings(port=0), stream_model, "stream") as server:
        url = f"ws://127.0.0.1:{server.port}"
        alone = np.array(realtime_latencies(url, pcm, 6, 6.0))
        texts, streams_done = [], threading.Event()

        def upload():
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="-", max_retries=0)
            while not streams_done.is_set():
                with open(long, "rb") as audio:
                    texts.append(client.audio.transcriptions.create(model="stream", file=audio, timeout=600).text)

        uploader = threading.Thread(target=upload)
        uploader.start()
        beside = np.array(realtime_latencies(url, pcm, 6, 6.0))
        streams_done.set()
        uploader.join(timeout=600)
    print(f"live reply latency: p50 {np.median(alone) * 1000:.0f} -> {np.median(beside) * 1000:.0f} ms, "
          f"p95 {np.percentile(alone, 95) * 1000:.0f} -> {np.percentile(beside, 95) * 1000:.0f} ms beside "
          f"{len(texts)} uploads")
    assert not uploader.is_alive() and texts and all(len(text.split()) > 9 * 20 for text in texts)
    assert np.median(beside) <= 4 * np.median(alone) + 0.1
    assert np.percentile(beside, 95) <= 4 * np.percentile(alone, 95) + 0.3
