"""OpenAI's transcription API on the server's port: `POST /v1/audio/transcriptions` and `GET /v1/models`, so that the
official SDKs and the tools built on them work with `base_url` pointed here.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:2700/v1", api_key="TOKEN or anything")
    client.audio.transcriptions.create(model="stream", file=open("talk.mp3", "rb")).text

An upload is decoded as a stream of its own through the live streams' batcher, behind them (`Batcher.submit(...,
background=True)`): the text is the one `asr transcribe` gives with the server's model, LM and second pass, and live
streams keep their latency. At most `max_uploads` files are decoded at once and four times as many may wait; each is
at most `max_upload_bytes` and `limits.max_stream_seconds` of audio long. Errors come in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import BodyPartReader, web

from asr.audio import SAMPLE_RATE, AudioError
from asr.decoding import Transcript
from asr.formats import render
from asr.transcribe import audio_blocks, audio_duration
from server.batcher import Stream

if TYPE_CHECKING:
    from server.app import RecognitionServer

log = logging.getLogger("server")

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
ALIASES = ("whisper-1",)  # accepted as the server's model: many clients hard-code it
ENGLISH = ("en", "english")
MAX_FIELDS = 32  # form fields in one request
MAX_FIELD_BYTES = 4096  # each field but the file
WAITING_PER_SLOT = 4  # uploads that may wait for each of `max_uploads`
CREATED = 1700000000  # `created` of the models listed: a fixed time, the models have no creation date here


class UploadError(Exception):
    """A request this endpoint refuses: HTTP `status`, and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


@dataclass
class TranscriptionRequest:
    """The form of one request, checked; `path` is the uploaded file in the server's upload folder."""

    path: str
    filename: str
    model: str | None = None
    language: str | None = None
    response_format: str = "json"
    granularities: list[str] = field(default_factory=list)
    stream: bool = False
    seconds: float = 0.0  # of audio decoded so far


class OpenAIApi:
    def __init__(self, server: RecognitionServer):
        self.server = server
        self.settings = server.settings
        self._slots = asyncio.Semaphore(server.settings.max_uploads)
        self._uploads = 0  # requests reading, waiting or decoding
        self._decoders = ThreadPoolExecutor(server.settings.max_uploads, thread_name_prefix="upload-decode")
        self._folder: str | None = None  # made on the first upload

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/audio/transcriptions", self.transcriptions)
        router.add_get("/v1/models", self.models)

    def close(self) -> None:
        self._decoders.shutdown(wait=False, cancel_futures=True)
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def model_names(self) -> list[str]:
        return [self.server.model_name]

    # --- endpoints --------------------------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        if not self.server.authorized(request):
            return _unauthorized().response()
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "lstm-asr"} for name in self.model_names]})

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            self._check_admission(request)
        except UploadError as error:
            self.server.metrics.uploads.labels(str(error.status)).inc()
            return error.response()
        self._uploads += 1
        form, status = None, 500
        try:
            form = await self._read_form(request)
            async with self._slots:
                response = await self._transcribe(request, form)
            status = response.status
            return response
        except UploadError as error:
            status = error.status
            log.info("upload from %s refused: %d %s", request.remote, error.status, error.message)
            return error.response()
        finally:
            self._uploads -= 1
            self.server.metrics.uploads.labels(str(status)).inc()
            if form is not None:
                os.unlink(form.path)
                log.info("upload from %s: %.1f s of audio in %.1f s, status %d", request.remote, form.seconds,
                         time.monotonic() - started, status)

    def _check_admission(self, request: web.Request) -> None:
        s = self.settings
        if not self.server.authorized(request):
            raise _unauthorized()
        if self.server.draining:
            raise UploadError(503, "server is shutting down; try another", code="server_draining", kind="server_error")
        if self._uploads >= s.max_uploads * (1 + WAITING_PER_SLOT):
            raise UploadError(429, f"{self._uploads} uploads are being transcribed or waiting, the most this server "
                              "takes; try again later", code="rate_limit_exceeded", kind="rate_limit_error")
        if request.content_length is not None and request.content_length > s.max_upload_bytes + 64 * 1024:
            raise _too_big(s.max_upload_bytes)

    # --- the form ---------------------------------------------------------------------------------------------------
    async def _read_form(self, request: web.Request) -> TranscriptionRequest:
        """Read the multipart form, the file into the upload folder (at most max_upload_bytes, each read within the
        idle timeout), the other fields (at most MAX_FIELD_BYTES each), and check them."""
        if not request.content_type.startswith("multipart/form-data"):
            raise UploadError(400, f"send multipart/form-data with a 'file' field, not {request.content_type!r}")
        reader = await request.multipart()
        fields: dict[str, list[str]] = {}
        path = filename = None
        try:
            for _ in range(MAX_FIELDS + 1):
                part = await self._timed(reader.next())
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    raise UploadError(400, "nested multipart forms are not taken")
                if part.name == "file":
                    if path is not None:
                        raise UploadError(400, "send one 'file'", param="file")
                    filename = os.path.basename(part.filename or "upload")
                    path = await self._save(part, filename)
                else:
                    fields.setdefault(part.name or "", []).append(await self._field(part))
            else:
                raise UploadError(400, f"more than {MAX_FIELDS} form fields")
            if path is None:
                raise UploadError(400, "the form has no 'file' field: send the audio as 'file'", param="file")
            return _check_fields(TranscriptionRequest(path, filename), fields, self.model_names)
        except BaseException as error:  # the upload is refused: its file goes
            if path is not None:
                os.unlink(path)
            if isinstance(error, (ValueError, AssertionError)):  # aiohttp's word for a malformed multipart body
                raise UploadError(400, f"malformed multipart form: {error}") from None
            raise

    async def _save(self, part: BodyPartReader, filename: str) -> str:
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="asr-uploads-")
        suffix = os.path.splitext(filename)[1]  # decoders pick the format by it: kept only when plain
        fd, path = tempfile.mkstemp(suffix=suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else "",
                                    dir=self._folder)
        size, limit = 0, self.settings.max_upload_bytes
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await self._timed(part.read_chunk(1 << 16)):
                    size += len(chunk)
                    if size > limit:
                        raise _too_big(limit)
                    out.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
        return path

    async def _field(self, part: BodyPartReader) -> str:
        data = b""
        while chunk := await self._timed(part.read_chunk(1024)):
            data += chunk
            if len(data) > MAX_FIELD_BYTES:
                raise UploadError(400, f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes",
                                  param=part.name)
        return data.decode("utf-8", "replace")

    async def _timed(self, read):
        """One read of the request body, within the idle timeout: a client that stops sending is let go."""
        try:
            return await asyncio.wait_for(read, self.settings.limits.idle_timeout)
        except asyncio.TimeoutError:
            raise UploadError(408, f"no data for {self.settings.limits.idle_timeout:g} s; upload "
                              "abandoned") from None

    # --- transcription ----------------------------------------------------------------------------------------------
    async def _transcribe(self, request: web.Request, form: TranscriptionRequest) -> web.StreamResponse:
        utterances = self._utterances(request, form)
        try:
            first = await anext(utterances)  # a file that does not decode is a 400 before any response starts
        except StopAsyncIteration:
            first = []
        if form.stream:
            return await self._events(request, form, first, utterances)
        finals = list(first)
        async for more in utterances:
            finals += more
        return _response(finals, form)

    async def _utterances(self, request: web.Request, form: TranscriptionRequest) -> AsyncIterator[list[Transcript]]:
        """The upload's audio through the batcher as a background stream, block by block (decoded in the upload
        threads): the finals each block ended, then the last ones. Stops early if the client has gone away."""
        blocks, loop = audio_blocks(form.path), asyncio.get_running_loop()
        recognizer, stream = self.server.recognizer(), Stream(f"upload:{request.remote}")
        limit = self.settings.limits.max_stream_seconds
        if (duration := audio_duration(form.path)) is not None and duration > limit:  # known from the header
            raise UploadError(400, f"{form.filename}: {duration:.0f} s of audio, longer than the server's limit of "
                              f"{limit:g} s", param="file", code="audio_too_long")
        while True:
            try:
                block = await loop.run_in_executor(self._decoders, next, blocks, None)
            except AudioError as error:
                raise UploadError(400, str(error).replace(form.path, form.filename), param="file",
                                  code="invalid_audio") from None
            if block is None:
                break
            form.seconds += len(block) / SAMPLE_RATE
            if form.seconds > limit:
                raise UploadError(400, f"{form.filename}: longer than the server's limit of {limit:g} s of audio",
                                  param="file", code="audio_too_long")
            if request.transport is None or request.transport.is_closing():
                return  # the client went away: stop decoding
            finals = await self.server.batcher.submit(stream, recognizer, block, background=True)
            self.server.metrics.upload_audio_seconds.inc(len(block) / SAMPLE_RATE)
            yield finals
        yield await self.server.batcher.finish(stream, recognizer, background=True)

    async def _events(self, request: web.Request, form: TranscriptionRequest, first: list[Transcript],
                      utterances: AsyncIterator[list[Transcript]]) -> web.StreamResponse:
        """Server-sent events as OpenAI's API sends them: a `transcript.text.delta` per utterance the endpointer
        finalises (the deltas add up to the text), then `transcript.text.done` with the whole text."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        texts = []

        async def send(finals: list[Transcript]) -> None:
            for final in finals:
                if final.text:
                    delta = (" " if texts else "") + final.text
                    texts.append(final.text)
                    await response.write(_event({"type": "transcript.text.delta", "delta": delta}))

        try:
            await send(first)
            async for finals in utterances:
                await send(finals)
            await response.write(_event({"type": "transcript.text.done", "text": " ".join(texts),
                                         "usage": _usage(form.seconds)}))
        except UploadError as error:  # the file broke off after the first block: the stream ends with the error
            await response.write(_event({"type": "error", **error.body()}))
        await response.write_eof()
        return response


# --- checks and answers -----------------------------------------------------------------------------------------------
def _check_fields(form: TranscriptionRequest, fields: dict[str, list[str]], models: list[str]) -> TranscriptionRequest:
    def one(name: str) -> str | None:
        values = fields.get(name)
        return values[-1].strip() if values else None

    form.model = one("model")
    if form.model is None:
        raise UploadError(400, "you must provide a model parameter: " + ", ".join(models), param="model")
    if form.model not in models and form.model not in ALIASES:
        raise UploadError(400, f"model {form.model!r} is not served here; this server runs "
                          f"{', '.join(repr(m) for m in models)} (and takes 'whisper-1' for the first)",
                          param="model", code="model_not_found")
    form.language = one("language")
    if form.language and form.language.lower().partition("-")[0] not in ENGLISH:
        raise UploadError(400, f"language {form.language!r} is not supported: this server transcribes English "
                          "('en')", param="language", code="unsupported_language")
    form.response_format = one("response_format") or "json"
    if form.response_format not in RESPONSE_FORMATS:
        raise UploadError(400, f"response_format {form.response_format!r} is not one of "
                          f"{', '.join(RESPONSE_FORMATS)}", param="response_format")
    form.granularities = fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", [])
    for granularity in form.granularities:
        if granularity not in GRANULARITIES:
            raise UploadError(400, f"timestamp_granularities: {granularity!r} is not 'word' or 'segment'",
                              param="timestamp_granularities")
    temperature = one("temperature")  # accepted and ignored: the search is deterministic
    try:
        if temperature is not None and not 0 <= float(temperature) <= 1:
            raise ValueError
    except ValueError:
        raise UploadError(400, f"temperature {temperature!r} is not a number in 0..1", param="temperature") from None
    stream = (one("stream") or "false").lower()
    if stream not in ("true", "false"):
        raise UploadError(400, f"stream {stream!r} is not true or false", param="stream")
    form.stream = stream == "true"
    if form.stream and form.response_format not in ("json", "text"):
        raise UploadError(400, "stream=true sends events with the text; leave response_format json or text",
                          param="stream")
    return form  # `prompt` is accepted and unused: an LSTM with CTC has no use for preceding text


def _response(finals: list[Transcript], form: TranscriptionRequest) -> web.Response:
    seconds = form.seconds
    transcript = Transcript.join(finals) if finals else Transcript("")
    fmt = form.response_format
    if fmt == "json":
        return web.json_response({"text": transcript.text, "usage": _usage(seconds)})
    if fmt == "verbose_json":
        body = {"task": "transcribe", "language": "english", "duration": round(seconds, 3), "text": transcript.text,
                "usage": _usage(seconds)}
        if "segment" in form.granularities or not form.granularities:
            body["segments"] = [_segment(i, final) for i, final in enumerate(f for f in finals if f.text)]
        if "word" in form.granularities:
            body["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                             for w in transcript.words]
        return web.json_response(body)
    kind = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}[fmt]
    return web.Response(text=render(transcript, fmt, form.filename, seconds), content_type=kind)


def _segment(number: int, utterance: Transcript) -> dict:
    """One utterance as a segment of OpenAI's verbose JSON. avg_logprob: the mean log confidence of its words;
    compression_ratio: as whisper computes it; no_speech_prob 0: the endpointer cuts segments around speech."""
    words = utterance.words
    start, end = (words[0].start, words[-1].end) if words else (0.0, 0.0)
    text = utterance.text.encode()
    return {"id": number, "seek": round(start * 100), "start": round(start, 3), "end": round(end, 3),
            "text": utterance.text, "tokens": [], "temperature": 0.0,
            "avg_logprob": round(float(np.mean([math.log(max(w.conf, 1e-10)) for w in words])) if words else 0.0, 4),
            "compression_ratio": round(len(text) / len(zlib.compress(text)), 4), "no_speech_prob": 0.0}


def _usage(seconds: float) -> dict:
    return {"type": "duration", "seconds": math.ceil(seconds)}


def _event(body: dict) -> bytes:
    return f"data: {json.dumps(body)}\n\n".encode()


def _unauthorized() -> UploadError:
    return UploadError(401, "missing or wrong API key: send the server's token as the API key "
                       "('Authorization: Bearer TOKEN')", code="invalid_api_key")


def _too_big(limit: int) -> UploadError:
    return UploadError(413, f"file is larger than the server's limit of {limit} bytes", param="file",
                       code="file_too_large")
