"""The Wyoming protocol (Home Assistant's voice pipeline) on a TCP port of its own: `asr serve --wyoming-port 10300`.

A connection may ask `describe` (answered with `info`: one `asr` program, the server's model, English) and then
transcribe any number of recordings, each `transcribe` (optional) + `audio-start` + `audio-chunk`... + `audio-stop`,
answered with `transcript-start`, a `transcript-chunk` per utterance the endpointer finalises (the chunks add up to
the text), `transcript-stop` and `transcript`. The audio goes through the server's batcher as a live stream, with the
websocket's limits: it counts against --max-streams and the per-address limit, is at most --max-stream-seconds long,
and a connection that sends nothing for --idle-timeout is closed. Any rate (8-48 kHz), width (1, 2 or 4 bytes) and
channel count the audio events declare is converted. Events are read with limits on every length a client sends.
Wyoming has no authentication: bind it where only trusted clients reach it (the server's host is loopback by default).
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from wyoming.asr import Transcript as WyomingTranscript
from wyoming.asr import TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info
from wyoming.ping import Pong

from asr.audio import pcm_to_float
from asr.decoding import Transcript
from asr.recognizer import StreamingRecognizer
from server.batcher import Stream, StreamRefused

if TYPE_CHECKING:
    from server.app import RecognitionServer

log = logging.getLogger("server")

MAX_HEADER_BYTES = 64 * 1024  # the JSON line of one event
MAX_DATA_BYTES = 64 * 1024  # its data block
MAX_CHANNELS = 8
WIDTHS = (1, 2, 4)
ATTRIBUTION = Attribution(name="lstm-asr", url="")  # the project has no public address yet


class WyomingError(Exception):
    """What the client did wrong: answered with an `error` event (the connection goes on unless `fatal`)."""

    def __init__(self, message: str, code: str, fatal: bool = False):
        super().__init__(message)
        self.message, self.code, self.fatal = message, code, fatal


@dataclass
class Recording:
    """One recording being transcribed: its stream slot, recognizer and declared audio format."""

    stream: Stream
    recognizer: StreamingRecognizer
    rate: int
    width: int
    channels: int
    seconds: float = 0.0
    texts: list[str] = field(default_factory=list)  # of the utterances sent as transcript chunks


class WyomingService:
    def __init__(self, server: RecognitionServer):
        self.server = server
        self.limits = server.settings.limits
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving Wyoming on tcp://%s:%d", host, self.port)

    async def stop(self) -> None:
        """Stop listening; open recordings get their transcript (the server's drain) before their connection ends."""
        self._server.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=30)
        await self._server.wait_closed()

    def info(self) -> Info:
        name = self.server.model_name
        model = AsrModel(name=name, attribution=ATTRIBUTION, installed=True, languages=["en"], version=None,
                         description=f"LSTM-CTC acoustic model {name!r} with beam search")
        return Info(asr=[AsrProgram(name="lstm-asr", attribution=ATTRIBUTION, installed=True, version=None,
                                    description="Streaming LSTM speech recognition", models=[model],
                                    supports_transcript_streaming=True)])

    # --- one connection ---------------------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", "?")
        address, recording = str(peer[0]), None
        self._connections.add(asyncio.current_task())
        log.info("wyoming connection %s:%s", *peer[:2])
        try:
            while True:
                try:
                    event = await self._next_event(reader)
                    if event is None:  # the client closed, or the server drains
                        if recording is not None and self.server.draining:
                            await self._finish(writer, recording)
                        break
                    recording = await self._handle(event, writer, address, recording)
                except WyomingError as error:
                    log.info("wyoming %s:%s: %s", *peer[:2], error.message)
                    await async_write_event(Error(text=error.message, code=error.code).event(), writer)
                    if error.fatal:
                        break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug, never the client's fault: this connection ends, the server goes on
            log.exception("wyoming connection %s:%s failed", *peer[:2])
        finally:
            if recording is not None:
                self.server.batcher.close_stream(recording.stream)
            self._connections.discard(asyncio.current_task())
            writer.close()
            log.info("wyoming connection end %s:%s", *peer[:2])

    async def _handle(self, event: Event, writer: asyncio.StreamWriter, address: str,
                      recording: Recording | None) -> Recording | None:
        """Answer one event; returns the recording in progress afterwards."""
        kind, data = event.type, event.data or {}
        if kind == "describe":
            await async_write_event(self.info().event(), writer)
        elif kind == "ping":
            await async_write_event(Pong(text=data.get("text")).event(), writer)
        elif kind == "transcribe":
            name, language = data.get("name"), data.get("language")
            if name is not None and name != self.server.model_name:
                raise WyomingError(f"model {name!r} is not served here (this server runs "
                                   f"{self.server.model_name!r})", "model_not_found")
            if language is not None and str(language).lower().partition("-")[0] not in ("en", "english"):
                raise WyomingError(f"language {language!r} is not supported: this server transcribes English",
                                   "unsupported_language")
        elif kind == "audio-start":
            if recording is not None:
                raise WyomingError("audio-start while a recording is open: send audio-stop first", "protocol")
            recording = self._open(data, address)
            await async_write_event(TranscriptStart(language="en").event(), writer)
        elif kind == "audio-chunk":
            if recording is None:
                raise WyomingError("audio-chunk before audio-start", "protocol")
            samples = self._samples(recording, data, event.payload or b"")
            finals = await self.server.batcher.submit(recording.stream, recording.recognizer, samples)
            await self._send_chunks(writer, recording, finals)
        elif kind == "audio-stop":
            if recording is None:
                raise WyomingError("audio-stop before audio-start", "protocol")
            await self._finish(writer, recording)
            self.server.batcher.close_stream(recording.stream)
            recording = None
        return recording  # other events (a client's own extensions) are ignored, as the protocol does

    def _open(self, data: dict, address: str) -> Recording:
        rate, width, channels = _format(data, self.limits)
        if self.server.draining:
            raise WyomingError("server is shutting down; try again later", "server_draining", fatal=True)
        try:
            stream = self.server.batcher.open_stream(address)
        except StreamRefused as refused:
            self.server.metrics.refused.labels(refused.reason).inc()
            raise WyomingError(str(refused), "refused_" + refused.reason) from None
        return Recording(stream, self.server.recognizer(rate), rate, width, channels)

    def _samples(self, recording: Recording, data: dict, payload: bytes) -> np.ndarray:
        if _format(data, self.limits) != (recording.rate, recording.width, recording.channels):
            raise WyomingError("audio-chunk's rate, width or channels differ from audio-start's", "protocol",
                               fatal=True)
        try:
            samples = pcm_to_float(payload, recording.width, recording.channels)
        except ValueError as error:
            raise WyomingError(f"audio-chunk: {error}", "bad_audio", fatal=True) from None
        recording.seconds += len(samples) / recording.rate
        if recording.seconds > self.limits.max_stream_seconds:
            raise WyomingError(f"recording is longer than the server's limit of {self.limits.max_stream_seconds:g} "
                               "s of audio", "too_long", fatal=True)
        self.server.metrics.audio_seconds.inc(len(samples) / recording.rate)
        return samples

    async def _finish(self, writer: asyncio.StreamWriter, recording: Recording) -> None:
        finals = await self.server.batcher.finish(recording.stream, recording.recognizer)
        await self._send_chunks(writer, recording, finals)
        await async_write_event(TranscriptStop().event(), writer)
        await async_write_event(WyomingTranscript(text=" ".join(recording.texts), language="en").event(), writer)

    @staticmethod
    async def _send_chunks(writer: asyncio.StreamWriter, recording: Recording, finals: list[Transcript]) -> None:
        for final in finals:
            if final.text:
                delta = (" " if recording.texts else "") + final.text
                recording.texts.append(final.text)
                await async_write_event(TranscriptChunk(text=delta).event(), writer)

    async def _next_event(self, reader: asyncio.StreamReader) -> Event | None:
        """The next event, within the idle timeout and the length limits; None once the client closed or the server
        drains."""
        read = asyncio.ensure_future(_read_event(reader, self.server.settings.limits.max_message_bytes))
        drained = self.server.drained
        done, _ = await asyncio.wait({read, drained}, timeout=self.limits.idle_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            return read.result()
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        if drained.done():
            return None
        raise WyomingError(f"no event for {self.limits.idle_timeout:g} s; closing idle connection", "idle",
                           fatal=True)


async def _read_event(reader: asyncio.StreamReader, max_payload: int) -> Event | None:
    """One event off the wire (a JSON line, then `data_length` bytes of JSON data and `payload_length` bytes of
    payload), or None at the end of the connection. Every length is checked before it is read."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the reader's limit
        raise WyomingError(f"event header longer than {MAX_HEADER_BYTES} bytes", "too_big", fatal=True) from None
    if not line:
        return None
    try:
        header = json.loads(line)
        kind = header["type"]
        data = header.get("data") or {}
        data_length, payload_length = int(header.get("data_length") or 0), int(header.get("payload_length") or 0)
        if not isinstance(kind, str) or not isinstance(data, dict):
            raise ValueError("type must be a string and data an object")
    except (ValueError, KeyError, TypeError) as error:
        raise WyomingError(f"not a Wyoming event header: {error}", "bad_event", fatal=True) from None
    if not 0 <= data_length <= MAX_DATA_BYTES:
        raise WyomingError(f"data_length {data_length} is outside 0..{MAX_DATA_BYTES}", "too_big", fatal=True)
    if not 0 <= payload_length <= max_payload:
        raise WyomingError(f"payload_length {payload_length} is outside 0..{max_payload}", "too_big", fatal=True)
    if data_length:
        try:
            more = json.loads(await reader.readexactly(data_length))
            data.update(more)
        except (ValueError, TypeError, AttributeError):
            raise WyomingError("event data is not a JSON object", "bad_event", fatal=True) from None
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=kind, data=data, payload=payload)


def _format(data: dict, limits) -> tuple[int, int, int]:
    """(rate, width, channels) an audio event declares, checked against the server's limits."""
    try:
        rate, width, channels = (int(data[key]) for key in ("rate", "width", "channels"))
    except (KeyError, TypeError, ValueError):
        raise WyomingError("audio events need whole numbers rate, width and channels", "bad_audio",
                           fatal=True) from None
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise WyomingError(f"rate {rate} is outside this server's {limits.min_sample_rate}.."
                           f"{limits.max_sample_rate}", "bad_audio", fatal=True)
    if width not in WIDTHS or not 1 <= channels <= MAX_CHANNELS:
        raise WyomingError(f"width {width} (bytes: 1, 2 or 4) or channels {channels} (1..{MAX_CHANNELS}) is not "
                           "taken", "bad_audio", fatal=True)
    return rate, width, channels
