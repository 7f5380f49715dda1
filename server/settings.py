"""Every server setting in one place: `ServerSettings` nests the recognizer's `Endpointing`, the beam search's
`BeamSearchOptions` and the `StreamLimits`,
and `add_arguments` / `from_args` read them from flags and the environment (`--idle-timeout` or `ASR_IDLE_TIMEOUT`;
a flag wins). Defaults are written once, in the dataclasses (the endpointing ones in `asr.recognizer.Endpointing`).

    settings = ServerSettings(port=0, limits=StreamLimits(idle_timeout=5), endpointing=Endpointing(silence=0.5))
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, replace

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr.cli import PRECISION_HELP, model_argument, precision_argument
from asr.lm_cli import lm_argument
from asr.lm_decoding import BeamSearchOptions, Decoding
from asr.model import check_precision
from asr.recognizer import Endpointing

# Measured, not guessed: on the project's 2-core CPU the shipped `stream` model with the LM on (the default) served
# 68 to 93 concurrent real-time streams of Common Voice speech at p95 reply latency <= 250 ms on slow days (README,
# Benchmarks: `python -m server.bench --find-max`; the VM's neighbours move it), models of the same size up to 125 on
# other days. 64 is below every measured capacity, and keeps room on most days for slower clients, TLS and uploads.
DEFAULT_MAX_STREAMS = 64


@dataclass(frozen=True)
class StreamLimits:
    """What one stream may do. Every limit closes the stream with an {"error"} that names it."""

    max_message_bytes: int = 1 << 20  # any websocket message, text or binary
    idle_timeout: float = 60.0  # seconds without any message
    max_stream_seconds: float = 3600.0  # by the wall clock, and of audio received
    min_realtime: float = 0.5  # audio seconds per second the client must send on average (0 turns the check off)
    realtime_grace: float = 10.0  # seconds of audio a stream may fall behind `min_realtime` before it is closed
    min_sample_rate: int = MIN_SAMPLE_RATE
    max_sample_rate: int = MAX_SAMPLE_RATE

    def __post_init__(self):
        for name in ("max_message_bytes", "idle_timeout", "max_stream_seconds", "realtime_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} {getattr(self, name)!r} must be positive")
        if not 0 <= self.min_realtime <= 1:
            raise ValueError(f"min_realtime {self.min_realtime!r} is outside 0..1 (audio seconds per second)")
        if not MIN_SAMPLE_RATE <= self.min_sample_rate <= self.max_sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample rates {self.min_sample_rate}..{self.max_sample_rate} are not within "
                             f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 2700
    model: str = "stream"  # a shipped model name or a checkpoint path (chosen by the operator, never a client)
    precision: str = "float32"  # of the models' weights: float32 or int8 (asr.model.quantized)
    max_batch: int = 32
    max_wait_ms: float = 10.0
    threads: int = 1  # torch threads of the model step: the beam search and the event loop hold Python's lock,
    # so a second core serves them better than a second thread inside the LSTM (README, Benchmarks)
    max_streams: int = DEFAULT_MAX_STREAMS
    max_streams_per_address: int = 0  # concurrent streams from one client IP address; 0: no limit
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    lm: str | None = "default"  # LM directory for the beam search ("default": the shipped one); None: greedy
    final_model: str | None = None  # a bidirectional model for each utterance's final (two passes); None: one pass
    wyoming_port: int | None = None  # TCP port of the Wyoming ASR service (Home Assistant); None: no Wyoming
    max_upload_bytes: int = 25 * 1024 * 1024  # a file posted to /v1/audio/transcriptions (OpenAI's limit)
    max_uploads: int = 2  # uploads decoded at once; 4x as many may wait their turn (more get HTTP 429)
    endpointing: Endpointing = field(default_factory=Endpointing)
    search: BeamSearchOptions = field(default_factory=BeamSearchOptions)
    limits: StreamLimits = field(default_factory=StreamLimits)

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.lm, self.search)

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")
        if self.wyoming_port is not None and not 0 <= self.wyoming_port <= 65535:
            raise ValueError(f"wyoming port {self.wyoming_port} is outside 0..65535")
        for name in ("max_batch", "max_streams", "threads", "max_upload_bytes", "max_uploads"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} {getattr(self, name)!r} must be at least 1")
        if not (self.max_streams_per_address >= 0 and self.max_wait_ms >= 0 and math.isfinite(self.max_wait_ms)):
            raise ValueError("max_streams_per_address and max_wait_ms must not be negative")
        check_precision(self.precision)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")


# --- flags and environment --------------------------------------------------------------------------------------------
def positive(kind):
    def convert(text):
        value = kind(text)
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text} is not a positive number")
        return value
    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def non_negative(kind):
    def convert(text):
        value = kind(text)
        if not value >= 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value
    convert.__name__ = kind.__name__
    return convert


def _port(text):
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


_port.__name__ = "port"  # argparse: "invalid port value: 'abc'"

# (flag, setting: a ServerSettings field, or "endpointing.x" / "limits.x", type, help). The environment variable is
# the flag in capitals with ASR_ in front: --max-wait-ms -> ASR_MAX_WAIT_MS.
OPTIONS = [
    ("--host", "host", str, "interface to bind (0.0.0.0 for all)"),
    ("--port", "port", _port, "TCP port (0 picks a free one)"),
    ("--model", "model", str, "shipped model name (stream) or checkpoint path"),
    ("--precision", "precision", precision_argument, PRECISION_HELP),
    ("--max-batch", "max_batch", positive(int), "streams in one model step"),
    ("--max-wait-ms", "max_wait_ms", non_negative(float), "how long a step waits for more streams to batch"),
    ("--threads", "threads", positive(int), "torch CPU threads of the model step"),
    ("--max-streams", "max_streams", positive(int),
     "concurrent streams; more are refused with HTTP 503 (default from the measured capacity, see README)"),
    ("--max-streams-per-address", "max_streams_per_address", non_negative(int),
     "concurrent streams from one client IP address, more get HTTP 429; 0: no limit"),
    ("--max-message-bytes", "limits.max_message_bytes", positive(int),
     "largest websocket message, text or binary (bigger: error and close 1009)"),
    ("--idle-timeout", "limits.idle_timeout", positive(float), "seconds without a message before a stream is closed"),
    ("--max-stream-seconds", "limits.max_stream_seconds", positive(float),
     "how long one stream may last, by the wall clock and in audio seconds"),
    ("--min-realtime", "limits.min_realtime", non_negative(float),
     "audio seconds per second a stream must send on average (0: no check)"),
    ("--realtime-grace", "limits.realtime_grace", positive(float),
     "seconds of audio a stream may fall behind --min-realtime before it is closed"),
    ("--endpoint-silence", "endpointing.silence", positive(float),
     "seconds of silence after speech that end an utterance"),
    ("--blank-threshold", "endpointing.blank_threshold", float,
     "CTC blank posterior above which a frame counts as silence"),
    ("--max-utterance", "endpointing.max_utterance", positive(float), "seconds after which an utterance is final anyway"),
    ("--lm", "lm", lm_argument, "word LM directory for beam search (default: the shipped English LM); none: greedy decoding"),
    ("--beam-size", "search.beam_size", positive(int), "hypotheses the beam search keeps per frame"),
    ("--lm-weight", "search.lm_weight", non_negative(float), "weight of the LM's log10 word probabilities"),
    ("--word-score", "search.word_score", float, "beam search bonus per word"),
    ("--final-model", "final_model", model_argument,
     "two passes: each utterance's final from this bidirectional model (offline or a checkpoint path), partials from "
     "--model; none: one pass"),
    ("--wyoming-port", "wyoming_port", _port,
     "also serve the Wyoming protocol (Home Assistant) on this TCP port, same host, models and limits"),
    ("--max-upload-bytes", "max_upload_bytes", positive(int),
     "largest file POST /v1/audio/transcriptions takes (bigger: HTTP 413)"),
    ("--max-uploads", "max_uploads", positive(int),
     "uploaded files decoded at once, behind the live streams; 4x as many may wait, more get HTTP 429"),
    ("--token", "token", str, "shared secret clients must send (Authorization: Bearer T or ?token=T)"),
    ("--tls-cert", "tls_cert", str, "PEM certificate: serve wss:// and https://"),
    ("--tls-key", "tls_key", str, "PEM private key for --tls-cert"),
]


def env_name(flag: str) -> str:
    return "ASR_" + flag.lstrip("-").upper().replace("-", "_")


def _dest(setting: str) -> str:
    return setting.replace(".", "__")


def _default(setting: str):
    group, _, name = setting.rpartition(".")
    holder = getattr(ServerSettings(), group) if group else ServerSettings()
    return getattr(holder, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every server setting as a flag whose default comes from its environment variable, else the dataclass.
    argparse converts string defaults with the flag's type, so a bad environment value is reported like a bad flag."""
    for flag, setting, kind, help in OPTIONS:
        default, env = _default(setting), env_name(flag)
        shown = "unset" if default is None else default
        parser.add_argument(flag, dest=_dest(setting), metavar=env[len("ASR_"):], type=kind,
                            default=os.environ.get(env, default), help=f"{help} (env {env}; default {shown})")


def from_args(args: argparse.Namespace) -> ServerSettings:
    """The settings `add_arguments` parsed. Raises ValueError for values that do not fit together."""
    top, nested = {}, {"endpointing": {}, "limits": {}, "search": {}}
    for _, setting, _, _ in OPTIONS:
        value = getattr(args, _dest(setting))
        if setting in ("token", "tls_cert", "tls_key"):
            value = value or None
        group, _, name = setting.rpartition(".")
        (nested[group] if group else top)[name] = value
    defaults = ServerSettings()
    return ServerSettings(**top, endpointing=replace(defaults.endpointing, **nested["endpointing"]),
                          search=replace(defaults.search, **nested["search"]),
                          limits=replace(defaults.limits, **nested["limits"]))

