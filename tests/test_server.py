"""The server on real speech: any chunking and any sample rate give the offline transcript, streams share model steps
without influencing each other, a client that never reads stalls nobody, auth, TLS, /healthz, /metrics, SIGTERM."""
from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from asr.audio import float_to_pcm16, load_audio, resample
from asr.recognizer import Endpointing
from server.app import ServerThread
from server.settings import ServerSettings
from tests.helpers import stream_transcript


def stream(url: str, pcm: bytes, chunk_bytes, config: dict | None = None, **connect_options) -> list[dict]:
    """Send `pcm` in chunks (an int, or a list of sizes), then eof; returns every reply in order."""
    sizes = iter(chunk_bytes) if isinstance(chunk_bytes, list) else None
    replies = []
    with connect(url, **connect_options) as ws:
        if config:
            ws.send(json.dumps({"config": config}))
        offset = 0
        while offset < len(pcm):
            size = next(sizes) if sizes else chunk_bytes
            ws.send(pcm[offset : offset + size])
            offset += size
            replies.append(json.loads(ws.recv(timeout=30)))
        ws.send('{"eof": 1}')
        replies.append(json.loads(ws.recv(timeout=30)))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1000
    return replies


def http_status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()  # an unclosed error response keeps its connection open until the server times it out
        return error.code


def final_text(replies: list[dict]) -> str:
    return " ".join(r["text"] for r in replies if r.get("text"))


@pytest.fixture(scope="module")
def hello_pcm(speech_wav) -> bytes:
    return float_to_pcm16(load_audio(speech_wav))


@pytest.fixture(scope="module")
def long_pcm(long_speech) -> bytes:
    return float_to_pcm16(load_audio(long_speech))


@pytest.mark.parametrize("chunk_bytes", [32, 333, 3201, 6400, 64000], ids=["1ms", "333B", "3201B", "200ms", "2s"])
def test_any_chunking_gives_the_offline_transcript(server, stream_model, hello_pcm, chunk_bytes):
    replies = stream(server.url, hello_pcm, chunk_bytes)
    assert len(replies) == -(-len(hello_pcm) // chunk_bytes) + 1  # one reply per message, eof included
    assert all("partial" in r or "text" in r for r in replies)
    assert "text" in replies[-1] and "result" in replies[-1]
    assert final_text(replies) == stream_transcript(stream_model, hello_pcm)


def test_ragged_chunks_and_single_bytes(server, stream_model, hello_pcm):
    rng = np.random.default_rng(0)
    sizes = [1] * 41 + [int(n) for n in rng.integers(1, 9000, size=len(hello_pcm) // 100)]
    assert final_text(stream(server.url, hello_pcm, sizes)) == stream_transcript(stream_model, hello_pcm)


def test_long_speech_with_pauses(server, stream_model, long_pcm):
    replies = stream(server.url, long_pcm, 6400)
    assert final_text(replies) == stream_transcript(stream_model, long_pcm)
    finals = [r for r in replies if "text" in r]
    starts = [w["start"] for r in finals for w in r["result"]]
    assert starts == sorted(starts)  # word times count from the start of the stream, across utterances


@pytest.mark.parametrize("sample_rate", [8000, 44100])
def test_other_sample_rates_are_resampled_by_the_server(server, stream_model, speech_wav, sample_rate):
    pcm = float_to_pcm16(resample(load_audio(speech_wav), 16000, sample_rate))
    replies = stream(server.url, pcm, sample_rate // 5 * 2 + 1, {"sample_rate": sample_rate})
    assert final_text(replies) == stream_transcript(stream_model, pcm, sample_rate)


def test_several_finals_in_one_message_are_joined(stream_model, hello_pcm):
    endpointing = Endpointing(max_utterance=0.3)  # a final every 0.3 s, whatever the model hears
    settings = ServerSettings(port=0, endpointing=endpointing)
    with ServerThread(settings, stream_model, "stream") as server:
        replies = stream(server.url, hello_pcm, len(hello_pcm) // 2 + 1)
    assert final_text(replies) == stream_transcript(stream_model, hello_pcm, endpointing=endpointing)
    assert "text" in replies[0]  # the first second held three utterances, sent as one final


def test_reset_finishes_the_utterance_and_the_stream_goes_on(server, hello_pcm):
    half = len(hello_pcm) // 2
    with connect(server.url) as ws:
        ws.send(hello_pcm[:half])
        json.loads(ws.recv(timeout=30))
        ws.send('{"reset": 1}')
        first = json.loads(ws.recv(timeout=30))
        ws.send(hello_pcm[half:])
        json.loads(ws.recv(timeout=30))
        ws.send('{"eof": 1}')
        last = json.loads(ws.recv(timeout=30))
    assert "text" in first and "text" in last
    assert all(w["end"] <= half / 32000 + 0.1 for w in first["result"])
    assert all(w["start"] >= half / 32000 - 0.1 for w in last["result"])  # times stay absolute after a reset


def test_words_off_and_alternatives(server, stream_model, hello_pcm):
    expected = stream_transcript(stream_model, hello_pcm)
    plain = [r for r in stream(server.url, hello_pcm, 8000, {"words": False}) if "partial" not in r]
    assert all(set(r) == {"text"} for r in plain) and final_text(plain) == expected
    nbest = [r for r in stream(server.url, hello_pcm, 8000, {"max_alternatives": 3, "words": 1}) if "partial" not in r]
    # The server decodes with the shipped LM: each final carries the beam's best few, best first, with its share of
    # the beam's probability; the best ones joined are the transcript the server gives without alternatives.
    assert all(1 <= len(r["alternatives"]) <= 3 for r in nbest)
    assert " ".join(r["alternatives"][0]["text"] for r in nbest if r["alternatives"][0]["text"]) == expected
    for r in nbest:
        confidences = [a["confidence"] for a in r["alternatives"]]
        assert confidences == sorted(confidences, reverse=True) and 0 < sum(confidences) <= 1.0001
        assert len({a["text"] for a in r["alternatives"]}) == len(r["alternatives"])
        assert all("result" in a for a in r["alternatives"])


def test_concurrent_streams_do_not_influence_each_other(server, stream_model, speech_dir):
    pcms = [float_to_pcm16(load_audio(speech_dir / f"{name}.wav")) for name in ("hello", "weather", "numbers")]
    results = [None] * len(pcms)

    def run(i):
        results[i] = final_text(stream(server.url, pcms[i], 1600 * (i + 1) + i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pcms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [stream_transcript(stream_model, pcm) for pcm in pcms]


def test_a_client_that_never_reads_stalls_nobody(server, stream_model, hello_pcm, long_pcm):
    stop = threading.Event()

    def flood():  # sends chunks as fast as it can and never reads a reply
        with connect(server.url, max_queue=1, close_timeout=1) as ws:
            sent = 0
            while not stop.is_set() and sent < 2000:
                ws.send(long_pcm[(sent * 3200) % (len(long_pcm) - 3200):][:3200])
                sent += 1

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    time.sleep(0.5)
    started = time.monotonic()
    try:
        assert final_text(stream(server.url, hello_pcm, 3200)) == stream_transcript(stream_model, hello_pcm)
    finally:
        stop.set()
    assert time.monotonic() - started < 30
    flooder.join(timeout=30)
    assert not flooder.is_alive()


def test_healthz_metrics_and_page(server, hello_pcm):
    stream(server.url, hello_pcm, 6400)
    base = f"http://127.0.0.1:{server.port}"
    assert http_status(base + "/healthz") == 200
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    chunks = float(re.search(r"^asr_chunks_total (\S+)", metrics, re.M).group(1))
    assert chunks >= len(hello_pcm) // 6400
    for name in ("asr_active_streams", "asr_audio_seconds_total", "asr_batch_size_bucket",
                 "asr_model_step_seconds_bucket", "asr_reply_latency_seconds_bucket"):
        assert name in metrics
    with urllib.request.urlopen(base + "/", timeout=10) as response:
        assert 'id="transcript"' in response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
    with urllib.request.urlopen(base + "/worklet.js", timeout=10) as response:
        assert b"registerProcessor" in response.read()
    for path in ("/static/index.html", "/../server/app.py", "/favicon.ico"):
        assert http_status(base + path) == 404


def test_token_auth(stream_model, hello_pcm):
    with ServerThread(ServerSettings(port=0, token="s3cret"), stream_model, "stream") as server:
        for url in (server.url, server.url + "/?token=wrong"):  # refused at the handshake: no stream is opened
            with pytest.raises(InvalidStatus) as caught:
                connect(url)
            assert caught.value.response.status_code == 401 and b"token" in caught.value.response.body
        assert stream(server.url + "/?token=s3cret", hello_pcm, 16000)[-1]["text"] is not None
        headers = {"Authorization": "Bearer s3cret"}
        assert "text" in stream(server.url, hello_pcm, 16000, additional_headers=headers)[-1]
        assert http_status(f"http://127.0.0.1:{server.port}/metrics") == 401
        assert http_status(f"http://127.0.0.1:{server.port}/metrics", headers) == 200


def test_tls(stream_model, hello_pcm, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    settings = ServerSettings(port=0, tls_cert=str(cert), tls_key=str(key))
    with ServerThread(settings, stream_model, "stream") as server:
        assert server.url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        assert final_text(stream(server.url, hello_pcm, 16000, ssl=context)) == stream_transcript(stream_model, hello_pcm)


def test_drain_gives_open_streams_their_final_result(stream_model, hello_pcm):
    server = ServerThread(ServerSettings(port=0), stream_model, "stream").start()
    with connect(server.url) as ws:
        ws.send(hello_pcm)
        first = json.loads(ws.recv(timeout=30))
        server.server.draining = True  # what drain() does first: refuse new streams, /healthz says 503
        assert http_status(f"http://127.0.0.1:{server.port}/healthz") == 503
        server.drain()
        final = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert final_text([first, final]) == stream_transcript(stream_model, hello_pcm) and ws.close_code == 1001


def test_sigterm_drains_the_serve_command(stream_model, hello_pcm, tmp_path):
    from asr.checkpoint import MODELS_DIR

    model_arg = str(MODELS_DIR / "stream.pt")
    process = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", "0", "--model", model_arg],
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # the log line that says where it listens
            if match := re.search(r"on ws://127\.0\.0\.1:(\d+)", line):
                break
        else:
            pytest.fail("asr serve exited before listening")
        with connect(f"ws://127.0.0.1:{match.group(1)}") as ws:
            ws.send(hello_pcm)
            ws.recv(timeout=30)
            process.send_signal(signal.SIGTERM)
            final = json.loads(ws.recv(timeout=30))
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        assert "text" in final and ws.close_code == 1001
        assert process.wait(timeout=30) == 0
        log = process.stderr.read()
        assert "stream end" in log and "final_chars=" in log
    finally:
        process.kill()
        process.wait()
