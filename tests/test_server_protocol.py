"""The wire protocol: message parsing and replies (no I/O), one stream's session, and every error a client can
cause on a real server, each with its reply and close code."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import ExitStack

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from asr.audio import float_to_pcm16
from asr.decoding import Alternative, Transcript, Word
from asr.lm_decoding import MAX_PHRASES
from server.app import ServerThread
from server.protocol import (
    Eof,
    ProtocolError,
    Reset,
    StreamConfig,
    final_reply,
    parse_text_message,
)
from server.session import Session
from server.settings import ServerSettings, StreamLimits
from tests.helpers import new_recognizer


# --- messages -------------------------------------------------------------------------------------------------------
def test_commands_are_json_whatever_the_spacing():
    assert parse_text_message('{"eof" : 1}') == Eof()  # what Vosk's own clients send
    assert parse_text_message('{"eof":1}') == Eof()
    assert parse_text_message('{ "reset": true }') == Reset()
    config = parse_text_message('{"config": {"sample_rate": 8000.0, "words": 0, "max_alternatives": 2, '
                                '"phrase_list": ["hello"], "unknown_key": 1}}')
    assert config == StreamConfig(8000, False, 2, ("hello",), None)


@pytest.mark.parametrize("text, code", [
    ("not json", 1007), ("[1, 2]", 1007), ('{"eof": 0}', 1007), ('{"config": 5}', 1007),
    ('{"config": {"sample_rate": "fast"}}', 1007), ('{"config": {"sample_rate": 16000.5}}', 1007),
    ('{"config": {"words": "yes"}}', 1007), ('{"config": {"max_alternatives": -1}}', 1007),
    ('{"config": {"phrase_list": "hello"}}', 1007), ('{"config": {"sample_rate": NaN}}', 1007),
    ('{"config": {"sample_rate": 4000}}', 1003), ('{"config": {"sample_rate": 96000}}', 1003),
    ('{"hello": 1}', 1003), ('{"config": {"model": ["a"]}}', 1008),
])
def test_bad_messages_say_what_is_wrong_with_a_close_code(text, code):
    with pytest.raises(ProtocolError) as caught:
        parse_text_message(text)
    assert caught.value.code == code and caught.value.message


def test_final_reply_shapes():
    transcript = Transcript("HELLO WORLD", [Word("HELLO", 0.42, 0.81, 0.97), Word("WORLD", 0.9, 1.3, 0.5)])
    assert final_reply(transcript, StreamConfig()) == {"text": "HELLO WORLD", "result": [
        {"word": "HELLO", "start": 0.42, "end": 0.81, "conf": 0.97},
        {"word": "WORLD", "start": 0.9, "end": 1.3, "conf": 0.5}]}
    assert final_reply(transcript, StreamConfig(words=False)) == {"text": "HELLO WORLD"}
    nbest = final_reply(transcript, StreamConfig(max_alternatives=3))
    [alternative] = nbest["alternatives"]  # a greedy transcript: one alternative, all of the probability
    assert alternative == {"text": "HELLO WORLD", "confidence": 1.0, "result": nbest_words(transcript)}
    assert "result" not in final_reply(transcript, StreamConfig(words=False, max_alternatives=1))["alternatives"][0]
    transcript.alternatives = [Alternative("HELLO WORLD", transcript.words, confidence=0.7),
                               Alternative("HELLO WORD", transcript.words[:1], confidence=0.2),
                               Alternative("YELLOW WORLD", [], confidence=0.1)]
    shown = final_reply(transcript, StreamConfig(max_alternatives=2))["alternatives"]
    assert [(a["text"], a["confidence"], len(a["result"])) for a in shown] == [("HELLO WORLD", 0.7, 2),
                                                                                 ("HELLO WORD", 0.2, 1)]


def nbest_words(transcript):
    return [word.to_dict() for word in transcript.words]


# --- one stream, no I/O ---------------------------------------------------------------------------------------------
def test_session_carries_an_odd_byte_to_the_next_message(stream_model):
    session = Session(new_recognizer(stream_model), "stream")
    pcm = float_to_pcm16(np.linspace(-0.5, 0.5, 1000).astype(np.float32))
    parts = [session.pcm_to_samples(pcm[i : i + 333]) for i in range(0, len(pcm), 333)]
    assert np.array_equal(np.concatenate(parts), np.frombuffer(pcm, "<i2") / 32768.0)


def test_session_checks_config_and_refuses_it_after_audio(stream_model):
    session = Session(new_recognizer(stream_model), "stream")
    session.configure(StreamConfig(sample_rate=8000, phrase_list=("Hello, world!", "yes"), model="stream"))
    assert session.config.phrase_list == ("HELLO WORLD", "YES")  # normalised as the decoder sees them
    for phrases in (("yes",) * (MAX_PHRASES + 1), ("123 !",)):
        with pytest.raises(ProtocolError) as caught:
            Session(new_recognizer(stream_model), "stream").configure(StreamConfig(phrase_list=phrases))
        assert caught.value.code == 1007 and caught.value.message.startswith("phrase_list: ")
    with pytest.raises(ProtocolError) as caught:
        session.configure(StreamConfig(model="offline"))
    assert caught.value.code == 1008
    session.pcm_to_samples(b"\0\0" * 80)
    assert session.config.sample_rate == 8000
    with pytest.raises(ProtocolError) as caught:
        session.configure(StreamConfig())
    assert caught.value.code == 1008


def test_session_limits_stream_length(stream_model):
    session = Session(new_recognizer(stream_model), "stream", limits=StreamLimits(max_stream_seconds=1.0))
    session.pcm_to_samples(b"\0\0" * 16000)
    with pytest.raises(ProtocolError) as caught:
        session.pcm_to_samples(b"\0\0")
    assert caught.value.code == 1008 and "1 s" in caught.value.message


# --- errors on a real server ----------------------------------------------------------------------------------------
LIMITS = ServerSettings(port=0, max_streams=3, limits=StreamLimits(max_message_bytes=64000, idle_timeout=1.0,
                                                                   max_stream_seconds=30.0))


@pytest.fixture(scope="module")
def server(stream_model):
    with ServerThread(LIMITS, stream_model, "stream") as running:
        yield running


def error_and_close(ws) -> tuple[str, int]:
    """The error reply and the close code that follows it."""
    reply = json.loads(ws.recv(timeout=10))
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    return reply["error"], ws.close_code


@pytest.mark.parametrize("messages, code, says", [
    (["{not json"], 1007, "JSON"),
    (['{"config": {"sample_rate": 4000}}'], 1003, "8000..48000"),
    (['{"config": {"model": "/etc/passwd"}}'], 1008, "not served"),
    ([b"\0\0" * 100, '{"config": {"sample_rate": 8000}}'], 1008, "before any audio"),
    (['{"command": "transcribe"}'], 1003, "unknown message"),
    ([json.dumps({"config": {"phrase_list": ["yes"] * (MAX_PHRASES + 1)}})], 1007, "phrase_list: 1001 phrases"),
])
def test_client_errors_get_an_error_reply_then_the_close_code(server, messages, code, says):
    with connect(server.url) as ws:
        for message in messages:
            ws.send(message)
        if isinstance(messages[0], bytes):
            assert "partial" in json.loads(ws.recv(timeout=10))
        error, close_code = error_and_close(ws)
    assert close_code == code and says in error


def test_message_too_big_closes_1009(server):
    with connect(server.url) as ws:
        ws.send(b"\0" * 64002)
        error, code = error_and_close(ws)
    assert code == 1009 and "64000" in error
    with connect(server.url, max_size=None) as ws:  # far too big: websockets refuses it before it is buffered
        ws.send(b"\0" * 200000)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009


def test_idle_stream_is_closed(server):
    with connect(server.url) as ws:
        ws.send(b"\0\0" * 1600)
        ws.recv(timeout=10)
        error, code = error_and_close(ws)  # then nothing for idle_timeout = 1 s
    assert code == 1008 and "idle" in error


def test_server_full_refuses_the_handshake_with_503(server):
    with ExitStack() as stack:
        streams = [stack.enter_context(connect(server.url)) for _ in range(LIMITS.max_streams)]
        for ws in streams:  # each handler has started once it replies
            ws.send(b"\0\0")
            ws.recv(timeout=10)
        with pytest.raises(InvalidStatus) as caught:
            connect(server.url)
        assert caught.value.response.status_code == 503
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        caught.value.close()
        assert caught.value.code == 503


def test_bad_input_leaves_the_server_serving(server):
    for garbage in ["\x00\xff", '{"config": {"sample_rate": 1e308}}', '{"eof": "yes"}']:
        with connect(server.url) as ws:
            ws.send(garbage)
            error_and_close(ws)
    with connect(server.url) as ws:
        ws.send(float_to_pcm16(np.zeros(3200, np.float32)))
        assert "partial" in json.loads(ws.recv(timeout=10))
        ws.send('{"eof": 1}')
        assert "text" in json.loads(ws.recv(timeout=10))
