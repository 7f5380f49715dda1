"""One stream's state between messages: its config, its StreamingRecognizer, the odd byte carried from one binary
message to the next, and its limits (audio and wall-clock length, how long the next message may take). No I/O: the
app feeds it, tells it how long it waited for the client, and sends what it returns."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from asr.audio import pcm16_to_float
from asr.decoding import Transcript
from asr.lm_decoding import check_phrases
from asr.recognizer import StreamingRecognizer
from server.protocol import (
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    ProtocolError,
    StreamConfig,
    final_reply,
    partial_reply,
)
from server.settings import StreamLimits

log = logging.getLogger("server")

# (sample_rate, phrases, max_alternatives) -> a recognizer with the server's model, endpointing, decoding, second pass
NewRecognizer = Callable[[int, list[str] | None, int], StreamingRecognizer]


class Session:
    """The server side of one websocket stream."""

    def __init__(self, new_recognizer: NewRecognizer, model_name: str, limits: StreamLimits = StreamLimits(),
                 peer: str = "?"):
        self.new_recognizer = new_recognizer
        self.model_name = model_name
        self.limits = limits
        self.peer = peer
        self.config = StreamConfig()
        self._recognizer: StreamingRecognizer | None = None  # made when audio starts, at the configured rate
        self._odd_byte = b""
        self.audio_seconds = 0.0  # received, at the client's rate
        self.opened = time.monotonic()
        self.waited = 0.0  # seconds spent waiting for the client's messages (not for the server's replies)
        self.final_chars = 0  # length of all final texts so far, for the end-of-stream log line

    @property
    def audio_started(self) -> bool:
        return self._recognizer is not None

    @property
    def recognizer(self) -> StreamingRecognizer:
        if self._recognizer is None:
            config = self.config
            self._recognizer = self.new_recognizer(config.sample_rate, list(config.phrase_list) or None,
                                                   config.max_alternatives)
        return self._recognizer

    # --- limits -----------------------------------------------------------------------------------------------------
    def check_size(self, message: str | bytes) -> None:
        """Text and binary messages alike may be at most max_message_bytes long (text counted in UTF-8 bytes)."""
        size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "replace"))
        limit = self.limits.max_message_bytes
        if size > limit:
            kind = "binary" if isinstance(message, bytes) else "text"
            raise ProtocolError(MESSAGE_TOO_BIG, f"{kind} message of {size} bytes is over the limit of {limit}; "
                                "send smaller messages")

    def next_message_deadline(self, now: float | None = None) -> tuple[float, str]:
        """How many seconds the next message may take to arrive, and which limit ends the stream if it does not:
        "idle" (no message at all), "duration" (the stream's wall-clock limit) or "realtime" (the client has sent
        less than `min_realtime` seconds of audio per second it kept the server waiting, beyond the grace)."""
        limits, now = self.limits, time.monotonic() if now is None else now
        limits_left = [(limits.idle_timeout, "idle"),
                       (self.opened + limits.max_stream_seconds - now, "duration")]
        if limits.min_realtime > 0:
            limits_left.append(((self.audio_seconds + limits.realtime_grace) / limits.min_realtime - self.waited,
                                "realtime"))
        seconds, which = min(limits_left)
        return max(0.0, seconds), which

    def timed_out(self, which: str, now: float | None = None) -> ProtocolError:
        """The error that closes a stream whose next message did not come in time (see next_message_deadline)."""
        limits, now = self.limits, time.monotonic() if now is None else now
        if which == "idle":
            message = f"no message for {limits.idle_timeout:g} s; closing idle stream"
        elif which == "duration":
            message = (f"stream has been open for {now - self.opened:.0f} s, the server's limit is "
                       f"{limits.max_stream_seconds:g} s; open a new stream")
        else:
            message = (f"stream sent {self.audio_seconds:.1f} s of audio in {self.waited:.0f} s; send audio at "
                       f"least at {limits.min_realtime:g}x real time (silence too while nobody speaks), or open "
                       "the stream when the audio starts")
        return ProtocolError(POLICY_VIOLATION, message)

    def configure(self, config: StreamConfig) -> None:
        if self.audio_started:
            raise ProtocolError(POLICY_VIOLATION, "config must come before any audio, eof or reset")
        if not self.limits.min_sample_rate <= config.sample_rate <= self.limits.max_sample_rate:
            raise ProtocolError(UNSUPPORTED_DATA, f"sample_rate {config.sample_rate} is outside this server's "
                                f"{self.limits.min_sample_rate}..{self.limits.max_sample_rate}")
        if config.model is not None and config.model != self.model_name:
            raise ProtocolError(POLICY_VIOLATION, f"model {config.model!r} is not served here "
                                f"(this server runs {self.model_name!r}); leave model out or ask for that one")
        if config.phrase_list:
            try:  # the limits (phrases, words and characters per phrase) are asr.lm_decoding's
                config = replace(config, phrase_list=check_phrases(config.phrase_list))
            except ValueError as error:
                raise ProtocolError(INVALID_PAYLOAD, f"phrase_list: {error}") from None
        self.config = config

    def pcm_to_samples(self, data: bytes) -> np.ndarray:
        """A binary message -> float32 samples at the stream's rate; an odd trailing byte waits for the next one."""
        data = self._odd_byte + data
        even = len(data) - len(data) % 2
        self._odd_byte = data[even:]
        samples = pcm16_to_float(data[:even])
        self.recognizer  # audio has started: no config from now on
        seconds = len(samples) / self.config.sample_rate
        if self.audio_seconds + seconds > self.limits.max_stream_seconds:
            raise ProtocolError(POLICY_VIOLATION, f"stream is longer than the server's limit of "
                                f"{self.limits.max_stream_seconds:g} s of audio; open a new stream")
        self.audio_seconds += seconds
        return samples

    def chunk_reply(self, finals: list[Transcript]) -> dict:
        """The reply to a binary message: the finals an endpoint fired (joined), else the running partial."""
        if finals:
            return self._final(Transcript.join(finals))
        return partial_reply(self.recognizer.partial)

    def end_reply(self, finals: list[Transcript]) -> dict:
        """The reply to eof (every utterance the flush finalised plus the last one) or to reset (the utterance it
        finished): one final, joined."""
        return self._final(Transcript.join(finals))

    def _final(self, transcript: Transcript) -> dict:
        self.final_chars += len(transcript.text)
        return final_reply(transcript, self.config)
