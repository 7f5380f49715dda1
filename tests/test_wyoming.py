"""The Wyoming service on a real server, through the `wyoming` package's own AsyncTcpClient (what Home Assistant
uses): describe, transcribe at any audio format, streamed transcript chunks, and clients that break the rules."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.sync.client import connect
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from asr.audio import load_audio, pcm_to_float, resample
from asr.transcribe import transcribe_audio
from server.app import ServerThread
from server.settings import ServerSettings


@pytest.fixture(scope="module")
def server(stream_model):
    with ServerThread(ServerSettings(port=0, wyoming_port=0, max_streams=2), stream_model, "stream") as running:
        yield running


def pcm(audio: np.ndarray, width: int, channels: int) -> bytes:
    """Mono float audio as interleaved PCM of `width` bytes (1: unsigned) and `channels` equal channels."""
    scale = 2 ** (8 * width - 1)
    ints = np.clip(np.round(audio * scale), -scale, scale - 1)
    kind = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
    ints = (ints + 128 if width == 1 else ints).astype(kind)
    return np.repeat(ints, channels).tobytes()


async def transcribe(port: int, data: bytes, rate: int, width: int, channels: int, chunk_seconds: float = 0.1,
                     **transcribe) -> list[Event]:
    """One recording through a Wyoming client; every event the server answers, up to the transcript."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(**transcribe).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = int(rate * chunk_seconds) * width * channels
        for start in range(0, len(data), step):
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                audio=data[start : start + step]).event())
        await client.write_event(AudioStop().event())
        events = []
        while not events or not Transcript.is_type(events[-1].type):
            event = await asyncio.wait_for(client.read_event(), 60)
            assert event is not None, [e.type for e in events]
            events.append(event)
        return events


def test_describe(server):
    async def describe():
        async with AsyncTcpClient("127.0.0.1", server.server.wyoming.port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await asyncio.wait_for(client.read_event(), 30))

    info = asyncio.run(describe())
    (program,) = info.asr
    assert [m.name for m in program.models] == ["stream"] and program.models[0].languages == ["en"]
    assert program.supports_transcript_streaming and program.installed


@pytest.mark.parametrize("rate, width, channels", [(16000, 2, 1), (22050, 2, 2), (44100, 4, 1), (8000, 1, 1)])
def test_transcript_equals_asr_transcribe_at_any_format(server, stream_model, long_speech, rate, width, channels):
    audio = resample(load_audio(long_speech), 16000, rate)
    data = pcm(audio, width, channels)
    events = asyncio.run(transcribe(server.server.wyoming.port, data, rate, width, channels, language="en",
                                    name="stream"))
    types = [e.type for e in events]
    assert types[0] == "transcript-start" and types[-2:] == ["transcript-stop", "transcript"]
    chunks = [e.data["text"] for e in events if e.type == "transcript-chunk"]
    text = Transcript.from_event(events[-1]).text
    assert len(chunks) >= 3 and "".join(chunks) == text  # a chunk per utterance, adding up to the text
    # What `asr transcribe` gives for the samples the client sent (pcm_to_float: tests/test_audio.py)
    expected = transcribe_audio(stream_model, pcm_to_float(data, width, channels), rate,
                                decoding=ServerSettings().decoding)
    assert text == expected.text


def test_errors_are_events_and_the_connection_goes_on(server):
    async def session():
        async with AsyncTcpClient("127.0.0.1", server.server.wyoming.port) as client:
            answers = []
            for event in (Transcribe(name="whisper-large").event(), Transcribe(language="fr").event(),
                          AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0").event(), Describe().event()):
                await client.write_event(event)
                answers.append(await asyncio.wait_for(client.read_event(), 30))
            return answers

    model, language, early, info = asyncio.run(session())
    assert Error.from_event(model).code == "model_not_found" and "whisper-large" in Error.from_event(model).text
    assert Error.from_event(language).code == "unsupported_language"
    assert "before audio-start" in Error.from_event(early).text
    assert Info.is_type(info.type)


@pytest.mark.parametrize("header, says", [
    ({"type": "audio-chunk", "payload_length": 10 ** 9}, "payload_length"),
    ({"type": "audio-chunk", "data_length": 10 ** 7}, "data_length"),
    ({"type": "audio-start", "data": {"rate": 10 ** 400, "width": 2, "channels": 1}}, "rate"),
    ({"type": "audio-start", "data": {"rate": 16000, "width": 3, "channels": 1}}, "width 3"),
    ({"data": {}}, "not a Wyoming event"),
], ids=["payload", "data", "rate", "width", "no-type"])
def test_lengths_and_formats_a_client_sends_are_checked(server, header, says):
    async def session():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.server.wyoming.port)
        writer.write(json.dumps(header).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        error = json.loads(line)
        data = json.loads(await reader.readexactly(error["data_length"])) if error.get("data_length") else {}
        closed = await asyncio.wait_for(reader.read(), 30) == b""  # the server closes the connection
        writer.close()
        return error["type"], data, closed

    kind, data, closed = asyncio.run(session())
    assert kind == "error" and says in data["text"] and closed


def test_recordings_count_against_the_servers_streams(server, long_speech):
    """The test server takes 2 streams: with 2 websocket streams open, a Wyoming recording is refused."""
    with connect(server.url) as first, connect(server.url) as second:
        for ws in (first, second):
            ws.send(b"\0\0" * 1600)
            ws.recv(timeout=30)

        async def refused():
            async with AsyncTcpClient("127.0.0.1", server.server.wyoming.port) as client:
                await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                return Error.from_event(await asyncio.wait_for(client.read_event(), 30))

        error = asyncio.run(refused())
    assert error.code == "refused_full" and "2 streams" in error.text
    events = asyncio.run(transcribe(server.server.wyoming.port, pcm(load_audio(long_speech), 2, 1), 16000, 2, 1))
    assert Transcript.from_event(events[-1]).text  # the slots are free again
