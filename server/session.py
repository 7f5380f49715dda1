"""One stream's state between messages: its config, its StreamingRecognizer, the odd byte carried from one binary
message to the next, and its limits. No I/O: the app feeds it and sends what it returns."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from asr.audio import pcm16_to_float
from asr.decoding import Transcript
from asr.model import AcousticModel
from asr.recognizer import Endpointing, StreamingRecognizer
from server.protocol import (
    POLICY_VIOLATION,
    ProtocolError,
    StreamConfig,
    final_reply,
    partial_reply,
)

log = logging.getLogger("server")


@dataclass(frozen=True)
class StreamLimits:
    max_stream_seconds: float = 3600.0  # of audio received


class Session:
    """The server side of one websocket stream."""

    def __init__(self, model: AcousticModel, model_name: str, endpointing: Endpointing = Endpointing(),
                 limits: StreamLimits = StreamLimits(), peer: str = "?"):
        self.model = model
        self.model_name = model_name
        self.endpointing = endpointing
        self.limits = limits
        self.peer = peer
        self.config = StreamConfig()
        self._recognizer: StreamingRecognizer | None = None  # made when audio starts, at the configured rate
        self._odd_byte = b""
        self.audio_seconds = 0.0  # received, at the client's rate
        self.final_chars = 0  # length of all final texts so far, for the end-of-stream log line

    @property
    def audio_started(self) -> bool:
        return self._recognizer is not None

    @property
    def recognizer(self) -> StreamingRecognizer:
        if self._recognizer is None:
            self._recognizer = StreamingRecognizer(self.model, self.config.sample_rate, self.endpointing)
        return self._recognizer

    def configure(self, config: StreamConfig) -> None:
        if self.audio_started:
            raise ProtocolError(POLICY_VIOLATION, "config must come before any audio, eof or reset")
        if config.model is not None and config.model != self.model_name:
            raise ProtocolError(POLICY_VIOLATION, f"model {config.model!r} is not served here "
                                f"(this server runs {self.model_name!r}); leave model out or ask for that one")
        if config.phrase_list:
            log.info("%s: phrase_list of %d phrases ignored (the greedy decoder has no biasing)",
                     self.peer, len(config.phrase_list))
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
        """The reply to eof: every utterance the flush finalised plus the last one, joined into one final."""
        return self._final(Transcript.join(finals))

    def reset(self) -> dict:
        """`{"reset": 1}`: finish the current utterance; the stream and its acoustic state go on."""
        return self._final(self.recognizer.finish_utterance())

    def _final(self, transcript: Transcript) -> dict:
        self.final_chars += len(transcript.text)
        return final_reply(transcript, self.config)
