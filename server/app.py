"""The websocket server: one coroutine per connection, plain HTTP for the page, /healthz and /metrics, SIGTERM drain.

    from server.app import run_server
    from server.settings import ServerSettings
    asyncio.run(run_server(ServerSettings(port=2700)))        # what `asr serve` does

`ServerThread` runs one in a background thread (tests, benchmarks).
"""
from __future__ import annotations

import asyncio
import email.utils
import hmac
import logging
import signal
import ssl
import threading
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import torch
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from asr.audio import SAMPLE_RATE
from asr.checkpoint import MODEL_NAMES, load_model
from asr.lm import load_language_model
from asr.model import AcousticModel
from asr.recognizer import StreamingRecognizer
from asr.second_pass import SecondPass
from server.batcher import Batcher, Stream, StreamRefused
from server.metrics import Metrics
from server.protocol import (
    TRY_AGAIN_LATER,
    Eof,
    ProtocolError,
    Reset,
    StreamConfig,
    encode,
    error_reply,
    parse_text_message,
)
from server.session import Session
from server.settings import ServerSettings

log = logging.getLogger("server")

STATIC = Path(__file__).parent / "static"
# The only files served over HTTP: fixed names, never a path taken from the request.
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}
DRAIN_GRACE = 30.0  # seconds open streams get to receive their final result on shutdown


def model_name_of(model: str) -> str:
    """The name clients may ask for in their config: the shipped name, or the checkpoint file's stem."""
    return model if model in MODEL_NAMES else Path(model).stem


class RecognitionServer:
    def __init__(self, settings: ServerSettings = ServerSettings(), model: AcousticModel | None = None,
                 model_name: str | None = None):
        self.settings = settings
        self.model = model if model is not None else load_model(settings.model)
        if settings.lm is not None:
            load_language_model(settings.lm)  # a missing or damaged LM stops the server before it listens
        self.model_name = model_name or model_name_of(settings.model)
        self.second_pass = None
        if settings.final_model is not None:
            self.second_pass = SecondPass(load_model(settings.final_model), settings.decoding, settings.final_model)
        self.metrics = Metrics()
        self.batcher = Batcher(self.model, settings.max_batch, settings.max_wait_ms / 1000, settings.max_streams,
                               settings.max_streams_per_address, metrics=self.metrics, final_model=self.second_pass)
        self.draining = False
        self._pages = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()}
        self._server = None
        self._drain: asyncio.Future | None = None
        self._handlers: set[asyncio.Task] = set()
        self.port: int | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._drain = asyncio.get_running_loop().create_future()
        await asyncio.get_running_loop().run_in_executor(None, self._warm_up)
        self.batcher.start()
        self._server = await serve(
            self._handle, s.host, s.port, process_request=self._process_request, ssl=self._ssl_context(),
            # Messages up to max_message_bytes are served; up to twice that they get an {"error"} and 1009; beyond,
            # websockets itself closes with 1009 before buffering them. max_queue: a connection is not read while
            # one message waits behind the one being decoded (back-pressure; the client's TCP buffer fills instead).
            max_size=2 * s.limits.max_message_bytes, max_queue=1, write_limit=1 << 16,
            # No permessage-deflate: PCM audio hardly compresses, and inflating every message costs CPU per stream.
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "wss" if s.tls_cert else "ws"
        log.info("serving model %r on %s://%s:%d (max %d streams, batch %d, wait %g ms)", self.model_name, scheme,
                 s.host, self.port, s.max_streams, s.max_batch, s.max_wait_ms)

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """Stop taking streams (/healthz says 503), give every open stream its final result, then close."""
        self.draining = True
        if not self._drain.done():
            log.info("draining: %d open streams get their final result", len(self.batcher.streams))
            self._drain.set_result(None)
        if self._handlers:  # each handler sends its final result and closes; close() below cuts any that hang
            await asyncio.wait(set(self._handlers), timeout=grace)
        self._server.close()
        await self._server.wait_closed()
        await self.batcher.stop()
        log.info("server stopped")

    def _warm_up(self) -> None:
        """One throwaway step, so that the first client does not wait for lazy imports and first-call setup."""
        recognizer = StreamingRecognizer(self.model, endpointing=self.settings.endpointing,
                                         decoding=self.settings.decoding)
        recognizer.accept_waveform(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), last=True)

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.tls_cert, s.tls_key)
        return context

    # --- HTTP -------------------------------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if path == "/healthz":
                if self.draining:
                    return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
                if self.batcher.full:
                    return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "full\n")
                return connection.respond(HTTPStatus.OK, "ok\n")
            if path == "/metrics":
                if not self._authorized(request):
                    return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
                return _response(HTTPStatus.OK, self.metrics.exposition(), self.metrics.content_type)
            if path in self._pages:
                return _response(HTTPStatus.OK, *self._pages[path])
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not self._authorized(request):  # refused before the handshake completes: no stream, no slot
            self.metrics.refused.labels("token").inc()
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer "
                                      "TOKEN' or connect to ...?token=TOKEN\n")
        if self.draining:
            self.metrics.refused.labels("draining").inc()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down; try another\n")
        try:
            self.batcher.check_room(_address(connection))
        except StreamRefused as refused:
            self.metrics.refused.labels(refused.reason).inc()
            status = HTTPStatus.SERVICE_UNAVAILABLE if refused.reason == "full" else HTTPStatus.TOO_MANY_REQUESTS
            return connection.respond(status, f"{refused}\n")
        return None  # go on with the websocket handshake, any path (like Vosk)

    def _authorized(self, request: Request) -> bool:
        token = self.settings.token
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        given = given[len("Bearer "):] if given.startswith("Bearer ") else ""
        given = given or parse_qs(request.path.partition("?")[2]).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    # --- websocket --------------------------------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = "%s:%s" % tuple(ws.remote_address[:2]) if ws.remote_address else "?"
        if self.draining:  # raced past process_request
            return await self._refuse(ws, TRY_AGAIN_LATER, "server is shutting down; try again later")
        try:
            stream = self.batcher.open_stream(_address(ws))
        except StreamRefused as refused:  # raced past process_request
            self.metrics.refused.labels(refused.reason).inc()
            return await self._refuse(ws, TRY_AGAIN_LATER, str(refused))
        session = Session(self.model, self.model_name, self.settings.endpointing, self.settings.limits, peer,
                          self.settings.decoding, self.second_pass)
        self._handlers.add(asyncio.current_task())
        started, close = time.monotonic(), 1000
        log.info("stream start %s path=%s streams=%d", peer, ws.request.path.partition("?")[0],
                 len(self.batcher.streams))
        try:
            close = await self._converse(ws, stream, session)
        except ProtocolError as error:
            close = error.code
            self.metrics.stream_errors.labels(str(error.code)).inc()
            await self._refuse(ws, error.code, error.message)
        except ConnectionClosed:
            close = ws.close_code if ws.close_code is not None else 1006
        except Exception:  # a bug, never the client's fault: this stream ends, the server and other streams go on
            log.exception("stream %s failed", peer)
            close = 1011
            await self._refuse(ws, 1011, "internal server error")
        finally:
            self._handlers.discard(asyncio.current_task())
            self.batcher.close_stream(stream)
            log.info("stream end %s duration=%.1fs audio=%.1fs final_chars=%d close=%s", peer,
                     time.monotonic() - started, session.audio_seconds, session.final_chars, close)

    async def _converse(self, ws: ServerConnection, stream: Stream, session: Session) -> int:
        """Read messages, reply to each in order. Returns the close code it ended with."""
        while True:
            message = await self._next_message(ws, session)
            arrived = time.perf_counter()
            if message is None:  # draining: the stream gets its final result, then the server goes away
                if session.audio_started:
                    await ws.send(encode(await self._end_of_stream(stream, session)))
                await ws.close(1001, "server is shutting down")
                return 1001
            session.check_size(message)
            end_of_stream = False
            if isinstance(message, bytes):
                samples = session.pcm_to_samples(message)
                self.metrics.chunks.inc()
                self.metrics.audio_seconds.inc(len(samples) / session.config.sample_rate)
                reply = session.chunk_reply(await self.batcher.submit(stream, session.recognizer, samples))
            else:
                command = parse_text_message(message)
                if isinstance(command, StreamConfig):
                    session.configure(command)
                    continue  # no reply to a config
                if isinstance(command, Reset):  # the utterance ends here; the stream goes on
                    reply = session.end_reply(await self.batcher.second_pass([session.recognizer.finish_utterance()]))
                else:
                    assert isinstance(command, Eof)
                    end_of_stream = True
                    reply = await self._end_of_stream(stream, session)
            await ws.send(encode(reply))
            self.metrics.reply_seconds.observe(time.perf_counter() - arrived)
            if end_of_stream:
                await ws.close(1000)
                return 1000

    async def _end_of_stream(self, stream: Stream, session: Session) -> dict:
        """The one way a stream ends (eof or drain): the recognizer is told no more audio comes and returns the
        utterances still open, the last one included."""
        return session.end_reply(await self.batcher.submit(stream, session.recognizer, _EMPTY, last=True))

    async def _next_message(self, ws: ServerConnection, session: Session) -> str | bytes | None:
        """The next message, None once the server drains, or a ProtocolError once the session's deadline for it
        passes (idle, too long a stream, or too little audio for the time the client kept the stream open)."""
        timeout, which = session.next_message_deadline()
        waiting = time.monotonic()
        receive = asyncio.ensure_future(ws.recv())
        done, _ = await asyncio.wait({receive, self._drain}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        session.waited += time.monotonic() - waiting
        if receive in done:
            return receive.result()
        receive.cancel()  # cancelling recv() loses no data (websockets documents this)
        if self._drain.done():
            return None
        raise session.timed_out(which)

    @staticmethod
    async def _refuse(ws: ServerConnection, code: int, message: str) -> None:
        log.info("stream error %s: %d %s", ws.remote_address, code, message)
        try:
            await ws.send(encode(error_reply(message)))
            await ws.close(code, message[:120])
        except ConnectionClosed:
            pass


_EMPTY = np.zeros(0, dtype=np.float32)


def _address(connection: ServerConnection) -> str:
    """The client's IP address (the per-address stream limit counts by it)."""
    return str(connection.remote_address[0]) if connection.remote_address else "?"


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Content-Length", str(len(body))),
                       ("Content-Type", content_type), ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


async def run_server(settings: ServerSettings, model: AcousticModel | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain: what `asr serve` runs (it owns the process: torch threads)."""
    torch.set_num_threads(settings.threads)
    server = RecognitionServer(settings, model)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.drain()


class ServerThread:
    """A RecognitionServer on its own event loop in a background thread. Use as a context manager:

        with ServerThread(ServerSettings(port=0), model) as server:
            websockets.sync.client.connect(server.url)
    """

    def __init__(self, settings: ServerSettings = ServerSettings(port=0), model: AcousticModel | None = None,
                 model_name: str | None = None):
        self.server = RecognitionServer(settings, model, model_name)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asr-server", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        scheme = "wss" if self.server.settings.tls_cert else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    def drain(self, timeout: float = 60) -> None:
        """Drain as SIGTERM does; returns once the server has stopped."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.drain(), self._loop).result(timeout=timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.drain()
