"""The `asr stream` client: stream a file or the microphone to a server, show partials on one line and finals as lines.

    stream_file("speech.wav", "ws://127.0.0.1:2700")           # -> exit code; prints the final text
    stream_microphone("ws://127.0.0.1:2700", seconds=10)        # needs sounddevice and an input device
"""
from __future__ import annotations

import json
import queue
import shutil
import ssl
import sys
import time
from contextlib import ExitStack
from typing import Callable, TextIO

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.sync.client import ClientConnection, connect

from asr.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    AudioError,
    float_to_pcm16,
    load_audio,
)

DEFAULT_URL = "ws://127.0.0.1:2700"


class StreamError(Exception):
    """The stream could not be done: no server, refused, an error reply. The message says what to do."""


class MicrophoneError(StreamError):
    pass


class TranscriptPrinter:
    """Shows replies: the partial rewritten in place on one line (on a terminal), each final on its own line;
    or, with `raw`, every reply as received (one JSON per line)."""

    def __init__(self, out: TextIO | None = None, raw: bool = False):
        self.out = out or sys.stdout
        self.raw = raw
        self.live = not raw and self.out.isatty()
        self._shown = 0  # characters of the partial on screen
        self.finals: list[str] = []

    def show(self, message: str) -> dict:
        reply = json.loads(message)
        if self.raw:
            print(message, file=self.out, flush=True)
        elif "partial" in reply:
            if self.live:
                width = shutil.get_terminal_size().columns - 1
                text = reply["partial"][-width:]
                self.out.write("\r" + text + " " * max(0, self._shown - len(text)))
                self.out.flush()
                self._shown = len(text)
        elif "text" in reply or "alternatives" in reply:
            text = reply["text"] if "text" in reply else reply["alternatives"][0]["text"]
            self._clear()
            if text:
                print(text, file=self.out, flush=True)
        if "error" in reply:
            self._clear()
            raise StreamError(f"server error: {reply['error']}")
        if "text" in reply or "alternatives" in reply:
            self.finals.append(reply["text"] if "text" in reply else reply["alternatives"][0]["text"])
        return reply

    def _clear(self) -> None:
        if self.live and self._shown:
            self.out.write("\r" + " " * self._shown + "\r")
            self._shown = 0


def _connect(stack: ExitStack, url: str, token: str | None, ssl_context: ssl.SSLContext | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return stack.enter_context(connect(url, additional_headers=headers, ssl=ssl_context, open_timeout=10,
                                           max_size=2**20))
    except InvalidURI as error:
        raise StreamError(f"{url} is not a websocket URL (want ws://HOST:PORT or wss://...): {error}") from None
    except InvalidStatus as error:
        status = error.response.status_code
        body = error.response.body.decode(errors="replace").strip()
        raise StreamError(f"{url} refused the stream: HTTP {status} {body}") from None
    except (OSError, InvalidHandshake, TimeoutError) as error:
        raise StreamError(f"cannot connect to {url} ({type(error).__name__}: {error}); is `asr serve` running "
                          "there?") from None


class _Stream:
    """One websocket stream: config, then a reply for each chunk, then eof and the final result."""

    def __init__(self, url: str, sample_rate: int, printer: TranscriptPrinter, token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.printer = printer
        self._stack = ExitStack()
        self.ws = _connect(self._stack, url, token, ssl_context)
        self.ws.send(json.dumps({"config": {"sample_rate": sample_rate}}))

    def send(self, pcm: bytes) -> dict:
        self.ws.send(pcm)
        return self._reply()

    def finish(self) -> dict:
        self.ws.send(json.dumps({"eof": 1}))
        reply = self._reply()
        self.ws.close()
        return reply

    def close(self) -> None:
        self._stack.close()

    def _reply(self) -> dict:
        try:
            return self.printer.show(self.ws.recv(timeout=60))
        except ConnectionClosed as error:
            raise StreamError(f"the server closed the stream ({error})") from None
        except TimeoutError:
            raise StreamError("no reply from the server in 60 s") from None


def stream_file(path, url: str = DEFAULT_URL, chunk_ms: float = 200, realtime: bool = False, raw: bool = False,
                token: str | None = None, out: TextIO | None = None, ssl_context: ssl.SSLContext | None = None) -> str:
    """Stream an audio file as 16 kHz PCM16 in `chunk_ms` chunks (paced by the clock if `realtime`). Returns the
    final text (all finals joined). Raises StreamError or AudioError."""
    pcm = float_to_pcm16(load_audio(path))
    chunk_bytes = max(2, int(SAMPLE_RATE * chunk_ms / 1000) * 2)
    printer = TranscriptPrinter(out, raw)
    stream = _Stream(url, SAMPLE_RATE, printer, token, ssl_context)
    try:
        started = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), chunk_bytes)):
            if realtime:
                time.sleep(max(0.0, started + i * chunk_ms / 1000 - time.monotonic()))
            stream.send(pcm[offset : offset + chunk_bytes])
        stream.finish()
    finally:
        stream.close()
    return " ".join(text for text in printer.finals if text)


# --- microphone -----------------------------------------------------------------------------------------------------
InputFactory = Callable[..., object]  # (samplerate, blocksize, callback) -> a started-on-enter input stream


def sounddevice_input(device=None) -> tuple[int, InputFactory]:
    """The default input device through sounddevice (imported only here): (its sample rate, a stream factory)."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:
        raise MicrophoneError(f"the microphone needs sounddevice and PortAudio ({error}): pip install 'lstm-asr[mic]'"
                              " and apt-get install libportaudio2") from None
    try:
        info = sounddevice.query_devices(device, kind="input")
    except (ValueError, sounddevice.PortAudioError) as error:
        raise MicrophoneError(f"no microphone found ({error}); stream a file with `asr stream FILE`, or open the "
                              "server's page in a browser on a machine with a microphone") from None
    rate = int(info["default_samplerate"])
    rate = rate if MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE else SAMPLE_RATE

    def factory(samplerate, blocksize, callback):
        return sounddevice.RawInputStream(samplerate=samplerate, blocksize=blocksize, device=device, channels=1,
                                          dtype="int16", callback=callback)

    return rate, factory


def stream_microphone(url: str = DEFAULT_URL, chunk_ms: float = 200, raw: bool = False, token: str | None = None,
                      seconds: float | None = None, device=None, out: TextIO | None = None,
                      input_source: tuple[int, InputFactory] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> str:
    """Stream the microphone until Ctrl-C, `seconds` of audio, or the input stream stops. Returns the final text.

    input_source: (sample rate, factory) to record from; the default is `sounddevice_input(device)`. The factory
    gets (samplerate, blocksize, callback) like sounddevice.RawInputStream and returns a context manager with an
    `active` attribute; the callback receives (int16 mono bytes, frames, time, status) from the audio thread.
    """
    rate, open_input = input_source or sounddevice_input(device)
    blocks: queue.Queue[bytes] = queue.Queue()
    chunk_bytes = max(2, int(rate * chunk_ms / 1000) * 2)
    limit_bytes = None if seconds is None else int(seconds * rate) * 2

    def on_audio(data, frames, time_info, status):  # audio thread: hand the block over, nothing else
        blocks.put(bytes(data))

    printer = TranscriptPrinter(out, raw)
    stream = _Stream(url, rate, printer, token, ssl_context)
    sent, pending = 0, b""
    try:
        with open_input(samplerate=rate, blocksize=chunk_bytes // 2, callback=on_audio) as recording:
            try:
                while limit_bytes is None or sent < limit_bytes:
                    try:
                        pending += blocks.get(timeout=0.1)
                    except queue.Empty:
                        if not recording.active:
                            break
                        continue
                    while len(pending) >= chunk_bytes:
                        chunk, pending = pending[:chunk_bytes], pending[chunk_bytes:]
                        if limit_bytes is not None:
                            chunk = chunk[: limit_bytes - sent]
                        stream.send(chunk)
                        sent += len(chunk)
            except KeyboardInterrupt:  # Ctrl-C ends the recording; the final result still comes
                pass
        if pending and (limit_bytes is None or sent < limit_bytes):
            stream.send(pending if limit_bytes is None else pending[: limit_bytes - sent])
        stream.finish()
    finally:
        stream.close()
    return " ".join(text for text in printer.finals if text)


def run(file=None, mic: bool = False, **options) -> int:
    """The `asr stream` command: exit 0 with the final text printed, 1 on a stream error, 2 on bad input."""
    try:
        if mic:
            options.pop("realtime", None)
            stream_microphone(**options)
        else:
            options.pop("seconds", None), options.pop("device", None)
            stream_file(file, **options)
        return 0
    except (AudioError, MicrophoneError) as error:
        print(f"asr stream: {error}", file=sys.stderr)
        return 2
    except StreamError as error:
        print(f"asr stream: {error}", file=sys.stderr)
        return 1
