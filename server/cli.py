"""`asr serve` and `asr stream`: they plug into the `asr` command through the "asr.commands" entry points.

Each register_* adds a subparser and sets `func(args) -> exit code`. Every option also reads an environment
variable (ASR_PORT, ...); a flag on the command line wins over the environment.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from server.app import ServerSettings


def _positive(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value
    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _port(text):
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


_port.__name__ = "port"  # argparse: "invalid port value: 'abc'"
_non_negative.__name__ = "float"


def _option(parser, flag: str, env: str, default, kind=str, help: str = "", **kwargs) -> None:
    """--flag with its default from $env. argparse converts string defaults with `kind`, so a bad $env value is
    reported like a bad flag, only when this subcommand runs."""
    shown = "unset" if default is None else default
    parser.add_argument(flag, default=os.environ.get(env, default), type=kind,
                        help=f"{help} (env {env}; default {shown})", **kwargs)


SERVE_EPILOG = """\
Protocol: Vosk's websocket protocol (PROTOCOL.md). Send an optional {"config": {"sample_rate": 8000}}, then
binary 16-bit mono PCM; each message gets {"partial": ...} or a final {"text": ..., "result": [...]};
{"eof": 1} ends the stream with its final result. GET / is a browser microphone page, /healthz and /metrics
(Prometheus) are for operators. SIGTERM drains: open streams get their final result, then the server exits.

examples:
  asr serve                                   # ws://127.0.0.1:2700, shipped "stream" model
  asr serve --host 0.0.0.0 --port 2700 --max-streams 200
  ASR_TOKEN=s3cret asr serve --tls-cert cert.pem --tls-key key.pem
  asr serve --model runs/stream/best.pt --max-batch 64 --max-wait-ms 20
"""

STREAM_EPILOG = """\
Prints the running partial on one line (on a terminal) and each final result as a line; exits 0 once the
server has sent the final result of the stream.

examples:
  asr stream speech.wav                       # as fast as the server answers
  asr stream talk.mp3 --realtime --chunk-ms 100
  asr stream speech.flac --json               # raw server replies, one JSON per line
  asr stream --mic --seconds 30               # microphone (needs: pip install 'lstm-asr[mic]')
  asr stream speech.wav --url wss://asr.example.org:2700 --token s3cret
"""


def register_serve(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="run the streaming websocket server (Vosk protocol)", epilog=SERVE_EPILOG,
        description="Serve streaming speech recognition over websockets, with a browser page at GET /.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d = ServerSettings()
    _option(parser, "--host", "ASR_HOST", d.host, help="interface to bind (0.0.0.0 for all)")
    _option(parser, "--port", "ASR_PORT", d.port, _port, help="TCP port (0 picks a free one)")
    _option(parser, "--model", "ASR_MODEL", d.model, help="shipped model name (stream) or checkpoint path")
    _option(parser, "--max-batch", "ASR_MAX_BATCH", d.max_batch, _positive(int), help="streams in one model step")
    _option(parser, "--max-wait-ms", "ASR_MAX_WAIT_MS", d.max_wait_ms, _non_negative,
            help="how long a step waits for more streams to batch")
    _option(parser, "--max-streams", "ASR_MAX_STREAMS", d.max_streams, _positive(int),
            help="concurrent streams; more are refused with HTTP 503")
    _option(parser, "--max-message-bytes", "ASR_MAX_MESSAGE_BYTES", d.max_message_bytes, _positive(int),
            help="largest websocket message (bigger: error and close 1009)")
    _option(parser, "--idle-timeout", "ASR_IDLE_TIMEOUT", d.idle_timeout, _positive(float),
            help="seconds without a message before a stream is closed")
    _option(parser, "--max-stream-seconds", "ASR_MAX_STREAM_SECONDS", d.max_stream_seconds, _positive(float),
            help="audio seconds one stream may send")
    _option(parser, "--endpoint-silence", "ASR_ENDPOINT_SILENCE", d.endpoint_silence, _positive(float),
            help="seconds of silence after speech that end an utterance")
    _option(parser, "--blank-threshold", "ASR_BLANK_THRESHOLD", d.blank_threshold, float,
            help="CTC blank posterior above which a frame counts as silence")
    _option(parser, "--max-utterance", "ASR_MAX_UTTERANCE", d.max_utterance, _positive(float),
            help="seconds after which an utterance is final anyway")
    _option(parser, "--token", "ASR_TOKEN", None,
            help="shared secret clients must send (Authorization: Bearer T or ?token=T)")
    _option(parser, "--tls-cert", "ASR_TLS_CERT", None, help="PEM certificate: serve wss:// and https://")
    _option(parser, "--tls-key", "ASR_TLS_KEY", None, help="PEM private key for --tls-cert")
    _option(parser, "--log-level", "ASR_LOG_LEVEL", "INFO", str.upper, help="logging level")
    parser.set_defaults(func=run_serve)
    return parser


def run_serve(args) -> int:
    from asr.checkpoint import CheckpointError
    from server.app import run_server

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # no-op under `asr`, which set it
    logging.getLogger().setLevel(args.log_level)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # it logs every connection; we log streams
    if bool(args.tls_cert) != bool(args.tls_key):
        print("asr serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        settings = ServerSettings(
            host=args.host, port=args.port, model=args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
            max_streams=args.max_streams, max_message_bytes=args.max_message_bytes, idle_timeout=args.idle_timeout,
            max_stream_seconds=args.max_stream_seconds, endpoint_silence=args.endpoint_silence,
            blank_threshold=args.blank_threshold, max_utterance=args.max_utterance, token=args.token or None,
            tls_cert=args.tls_cert or None, tls_key=args.tls_key or None)
        asyncio.run(run_server(settings))
    except (CheckpointError, ValueError, OSError) as error:  # missing model, bad setting, port in use, bad cert
        print(f"asr serve: {error}", file=sys.stderr)
        return 1
    return 0


def register_stream(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stream", help="stream a file or the microphone to an `asr serve` server", epilog=STREAM_EPILOG,
        description="Stream audio to a websocket server and print the transcript as it comes.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="audio file (WAV/FLAC/OGG/MP3...; sent as 16 kHz PCM16)")
    parser.add_argument("--mic", action="store_true", help="stream the default microphone instead of a file")
    _option(parser, "--url", "ASR_URL", "ws://127.0.0.1:2700", help="server address")
    _option(parser, "--chunk-ms", "ASR_CHUNK_MS", 200, _positive(float), help="audio per message")
    parser.add_argument("--realtime", action="store_true", help="pace a file by the clock, like a live source")
    parser.add_argument("--json", action="store_true", help="print the server's raw JSON replies")
    _option(parser, "--token", "ASR_TOKEN", None, help="shared secret, if the server wants one")
    parser.add_argument("--seconds", type=_positive(float), help="with --mic: stop after this much audio")
    parser.add_argument("--device", help="with --mic: input device name or index (default: the system's)")
    parser.set_defaults(func=run_stream)
    return parser


def run_stream(args) -> int:
    from server.client import run

    if bool(args.file) == bool(args.mic):
        print("asr stream: give an audio FILE or --mic (one of them)", file=sys.stderr)
        return 2
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    return run(args.file, mic=args.mic, url=args.url, chunk_ms=args.chunk_ms, realtime=args.realtime, raw=args.json,
               token=args.token or None, seconds=args.seconds, device=device)


def main(argv=None) -> int:
    """`python -m server serve|stream ...`: the same commands without the `asr` front end."""
    parser = argparse.ArgumentParser(prog="python -m server")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_serve(subparsers)
    register_stream(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)
