"""The server: one aiohttp application on one port for the Vosk websocket (any path), the browser page, /healthz,
/metrics and the OpenAI-compatible transcription API; the Wyoming service on a port of its own; SIGTERM drains.

    from server.app import run_server
    from server.settings import ServerSettings
    asyncio.run(run_server(ServerSettings(port=2700)))        # what `asr serve` does

`ServerThread` runs one in a background thread (tests, benchmarks).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import ssl
import threading
import time
from http import HTTPStatus
from pathlib import Path

import numpy as np
import torch
from aiohttp import WSMsgType, web

from asr.audio import SAMPLE_RATE
from asr.checkpoint import MODEL_NAMES, load_model
from asr.lm import load_language_model
from asr.model import AcousticModel
from asr.recognizer import StreamingRecognizer
from asr.second_pass import SecondPass
from server.batcher import Batcher, Stream, StreamRefused
from server.metrics import Metrics
from server.openai_api import OpenAIApi
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
from server.wyoming_service import WyomingService

log = logging.getLogger("server")

STATIC = Path(__file__).parent / "static"
# The only files served over HTTP: fixed names, never a path taken from the request.
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}
DRAIN_GRACE = 30.0  # seconds open streams get to receive their final result on shutdown
PING_INTERVAL = 20.0  # seconds between the server's websocket pings; a client that does not answer one is closed


def model_name_of(model: str) -> str:
    """The name clients may ask for in their config: the shipped name, or the checkpoint file's stem."""
    return model if model in MODEL_NAMES else Path(model).stem


class ClientGone(Exception):
    """The websocket client closed the connection (or it broke); `code` is the close code."""

    def __init__(self, code: int):
        super().__init__(f"closed with {code}")
        self.code = code


class RecognitionServer:
    def __init__(self, settings: ServerSettings = ServerSettings(), model: AcousticModel | None = None,
                 model_name: str | None = None):
        self.settings = settings
        self.model = model if model is not None else load_model(settings.model, precision=settings.precision)
        if settings.lm is not None:
            load_language_model(settings.lm)  # a missing or damaged LM stops the server before it listens
        self.model_name = model_name or model_name_of(settings.model)
        self.second_pass = None
        if settings.final_model is not None:
            self.second_pass = SecondPass(load_model(settings.final_model, precision=settings.precision),
                                          settings.decoding, settings.final_model)
        self.metrics = Metrics()
        self.batcher = Batcher(self.model, settings.max_batch, settings.max_wait_ms / 1000, settings.max_streams,
                               settings.max_streams_per_address, metrics=self.metrics, final_model=self.second_pass)
        self.openai = OpenAIApi(self)
        self.wyoming = WyomingService(self) if settings.wyoming_port is not None else None
        self.draining = False
        self._pages = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()}
        self._runner: web.AppRunner | None = None
        self._drain: asyncio.Future | None = None
        self._handlers: set[asyncio.Task] = set()
        self.port: int | None = None

    def recognizer(self, sample_rate: int = SAMPLE_RATE, phrases: list[str] | None = None,
                   max_alternatives: int = 0) -> StreamingRecognizer:
        """A recognizer with the server's model, endpointing, decoding and second pass: every protocol's streams."""
        s = self.settings
        return StreamingRecognizer(self.model, sample_rate, s.endpointing, s.decoding, phrases, max_alternatives,
                                   self.second_pass)

    # --- lifecycle --------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._drain = asyncio.get_running_loop().create_future()
        await asyncio.get_running_loop().run_in_executor(None, self._warm_up)
        self.batcher.start()
        app = web.Application()
        self.openai.add_routes(app.router)
        app.router.add_get("/{path:.*}", self._get)  # the websocket (any path, like Vosk), the page, health, metrics
        # No access log: a line per request costs CPU at hundreds of streams; streams log their start and end.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=DRAIN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.host, s.port, ssl_context=self._ssl_context(), backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.wyoming is not None:
            await self.wyoming.start(s.host, s.wyoming_port)
        scheme = "wss" if s.tls_cert else "ws"
        log.info("serving model %r on %s://%s:%d (max %d streams, batch %d, wait %g ms)", self.model_name, scheme,
                 s.host, self.port, s.max_streams, s.max_batch, s.max_wait_ms)

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """Stop taking streams (/healthz says 503), give every open stream its final result, then close."""
        self.draining = True
        if not self._drain.done():
            log.info("draining: %d open streams get their final result", len(self.batcher.streams))
            self._drain.set_result(None)
        if self.wyoming is not None:
            await self.wyoming.stop()
        if self._handlers:  # each handler sends its final result and closes; cleanup() below cuts any that hang
            await asyncio.wait(set(self._handlers), timeout=grace)
        await self._runner.cleanup()
        await self.batcher.stop()
        self.openai.close()
        log.info("server stopped")

    @property
    def drained(self) -> asyncio.Future:
        """Done once the server starts to drain (every protocol's streams then end)."""
        return self._drain

    def _warm_up(self) -> None:
        """One throwaway step, so that the first client does not wait for lazy imports and first-call setup."""
        self.recognizer().accept_waveform(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), last=True)

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.tls_cert, s.tls_key)
        return context

    # --- HTTP -------------------------------------------------------------------------------------------------------
    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        path = request.path
        if path == "/healthz":
            if self.draining:
                return _text(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            if self.batcher.full:
                return _text(HTTPStatus.SERVICE_UNAVAILABLE, "full\n")
            return _text(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            if not self.authorized(request):
                return _text(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
            return _response(HTTPStatus.OK, self.metrics.exposition(), self.metrics.content_type)
        if path in self._pages:
            return _response(HTTPStatus.OK, *self._pages[path])
        return _text(HTTPStatus.NOT_FOUND, "not found\n")

    def authorized(self, request: web.Request) -> bool:
        """The request carries the server's token (`Authorization: Bearer T` or `?token=T`), or it has none."""
        token = self.settings.token
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        given = given[len("Bearer "):] if given.startswith("Bearer ") else ""
        given = given or request.query.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def _handshake_refusal(self, request: web.Request) -> web.Response | None:
        """Why a websocket handshake is refused before it completes (no stream, no slot), or None."""
        if not self.authorized(request):
            self.metrics.refused.labels("token").inc()
            return _text(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer TOKEN' or "
                         "connect to ...?token=TOKEN\n")
        if self.draining:
            self.metrics.refused.labels("draining").inc()
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down; try another\n")
        try:
            self.batcher.check_room(_address(request))
        except StreamRefused as refused:
            self.metrics.refused.labels(refused.reason).inc()
            status = HTTPStatus.SERVICE_UNAVAILABLE if refused.reason == "full" else HTTPStatus.TOO_MANY_REQUESTS
            return _text(status, f"{refused}\n")
        return None

    # --- websocket --------------------------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._handshake_refusal(request)) is not None:
            return refusal
        limit = self.settings.limits.max_message_bytes
        # Messages up to max_message_bytes are served; up to twice that they get an {"error"} and 1009; beyond,
        # aiohttp itself closes with 1009 before buffering them. A connection is not read while its message is
        # decoded (back-pressure: the client's TCP buffer fills instead). No permessage-deflate: PCM audio hardly
        # compresses, and inflating every message costs CPU per stream.
        ws = web.WebSocketResponse(max_msg_size=2 * limit, compress=False, heartbeat=PING_INTERVAL,
                                   writer_limit=1 << 16)
        await ws.prepare(request)
        peer = _peer(request)
        if self.draining:  # raced past the handshake's checks
            await self._refuse(ws, peer, TRY_AGAIN_LATER, "server is shutting down; try again later")
            return ws
        try:
            stream = self.batcher.open_stream(_address(request))
        except StreamRefused as refused:  # raced past the handshake's checks
            self.metrics.refused.labels(refused.reason).inc()
            await self._refuse(ws, peer, TRY_AGAIN_LATER, str(refused))
            return ws
        session = Session(self.recognizer, self.model_name, self.settings.limits, peer)
        self._handlers.add(asyncio.current_task())
        started, close = time.monotonic(), 1000
        log.info("stream start %s path=%s streams=%d", peer, request.path, len(self.batcher.streams))
        try:
            close = await self._converse(ws, stream, session)
        except ProtocolError as error:
            close = error.code
            self.metrics.stream_errors.labels(str(error.code)).inc()
            await self._refuse(ws, peer, error.code, error.message)
        except (ClientGone, ConnectionError) as gone:
            close = gone.code if isinstance(gone, ClientGone) else 1006
        except Exception:  # a bug, never the client's fault: this stream ends, the server and other streams go on
            log.exception("stream %s failed", peer)
            close = 1011
            await self._refuse(ws, peer, 1011, "internal server error")
        finally:
            self._handlers.discard(asyncio.current_task())
            self.batcher.close_stream(stream)
            log.info("stream end %s duration=%.1fs audio=%.1fs final_chars=%d close=%s", peer,
                     time.monotonic() - started, session.audio_seconds, session.final_chars, close)
        return ws

    async def _converse(self, ws: web.WebSocketResponse, stream: Stream, session: Session) -> int:
        """Read messages, reply to each in order. Returns the close code it ended with."""
        while True:
            message = await self._next_message(ws, session)
            arrived = time.perf_counter()
            if message is None:  # draining: the stream gets its final result, then the server goes away
                if session.audio_started:
                    await ws.send_str(encode(await self._end_of_stream(stream, session)))
                await ws.close(code=1001, message=b"server is shutting down")
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
            await ws.send_str(encode(reply))
            self.metrics.reply_seconds.observe(time.perf_counter() - arrived)
            if end_of_stream:
                await ws.close(code=1000)
                return 1000

    async def _end_of_stream(self, stream: Stream, session: Session) -> dict:
        """The one way a stream ends (eof or drain): the recognizer is told no more audio comes and returns the
        utterances still open, the last one included."""
        return session.end_reply(await self.batcher.finish(stream, session.recognizer))

    async def _next_message(self, ws: web.WebSocketResponse, session: Session) -> str | bytes | None:
        """The next message, None once the server drains, ClientGone once the client closed, or a ProtocolError
        once the session's deadline for it passes (idle, too long a stream, or too little audio for the time the
        client kept the stream open)."""
        timeout, which = session.next_message_deadline()
        waiting = time.monotonic()
        receive = asyncio.ensure_future(ws.receive())
        done, _ = await asyncio.wait({receive, self._drain}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        session.waited += time.monotonic() - waiting
        if receive not in done:
            receive.cancel()  # a cancelled read leaves the message in aiohttp's queue
            await asyncio.gather(receive, return_exceptions=True)
            if self._drain.done():
                return None
            raise session.timed_out(which)
        message = receive.result()
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            return message.data
        raise ClientGone(ws.close_code if ws.close_code is not None else 1006)

    @staticmethod
    async def _refuse(ws: web.WebSocketResponse, peer: str, code: int, message: str) -> None:
        log.info("stream error %s: %d %s", peer, code, message)
        try:
            await ws.send_str(encode(error_reply(message)))
            await ws.close(code=code, message=message[:120].encode())
        except ConnectionError:
            pass


def _peer(request: web.Request) -> str:
    """The client's address and port, for the log."""
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return "%s:%s" % tuple(peername[:2]) if peername else _address(request)


def _address(request: web.Request) -> str:
    """The client's IP address (the per-address stream limit counts by it)."""
    return request.remote or "?"


def _response(status: HTTPStatus, body: bytes, content_type: str) -> web.Response:
    return web.Response(status=status.value, body=body, headers={"Content-Type": content_type,
                                                                 "Cache-Control": "no-store"})


def _text(status: HTTPStatus, text: str) -> web.Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


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
