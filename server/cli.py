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

from asr.cli import COMMAND_HELP
from server.settings import add_arguments, from_args, positive


def _option(parser, flag: str, env: str, default, kind=str, help: str = "", **kwargs) -> None:
    """--flag with its default from $env (the client's options; the server's are in server.settings)."""
    shown = "unset" if default is None else default
    parser.add_argument(flag, default=os.environ.get(env, default), type=kind,
                        help=f"{help} (env {env}; default {shown})", **kwargs)


SERVE_EPILOG = """\
Protocol: Vosk's websocket protocol (PROTOCOL.md). Send an optional {"config": {"sample_rate": 8000}}, then
binary 16-bit mono PCM; each message gets {"partial": ...} or a final {"text": ..., "result": [...]};
{"eof": 1} ends the stream with its final result. GET / is a browser microphone page, /healthz and /metrics
(Prometheus) are for operators. The same port answers OpenAI's POST /v1/audio/transcriptions and GET /v1/models
(the token is the API key); --wyoming-port adds Home Assistant's Wyoming protocol on a TCP port of its own.
SIGTERM drains: open streams get their final result, then the server exits.

examples:
  asr serve                                   # ws://127.0.0.1:2700, shipped "stream" model
  asr serve --host 0.0.0.0 --port 2700 --max-streams 100 --max-streams-per-address 4
  ASR_TOKEN=s3cret asr serve --tls-cert cert.pem --tls-key key.pem
  asr serve --model runs/stream/best.pt --max-batch 64 --max-wait-ms 20
  asr serve --host 0.0.0.0 --wyoming-port 10300   # Home Assistant: Wyoming Protocol integration, port 10300
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
        "serve", help=COMMAND_HELP["serve"], epilog=SERVE_EPILOG,
        description="Serve streaming speech recognition over websockets (Vosk's protocol), OpenAI's transcription "
                    "API and Wyoming, with a browser page at GET /.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)  # every server setting: server/settings.py
    _option(parser, "--log-level", "ASR_LOG_LEVEL", "INFO", str.upper, help="logging level")
    parser.set_defaults(func=run_serve)
    return parser


def run_serve(args) -> int:
    from asr.checkpoint import CheckpointError
    from server.app import run_server

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # no-op under `asr`, which set it
    logging.getLogger().setLevel(args.log_level)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)  # we log streams and uploads ourselves
    try:
        settings = from_args(args)
        asyncio.run(run_server(settings))
    except (CheckpointError, ValueError, OSError) as error:  # missing model, bad setting, port in use, bad cert
        print(f"asr serve: {error}", file=sys.stderr)
        return 1
    return 0


def register_stream(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stream", help=COMMAND_HELP["stream"], epilog=STREAM_EPILOG,
        description="Stream audio to a websocket server and print the transcript as it comes.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="audio file (WAV/FLAC/OGG/MP3...; sent as 16 kHz PCM16)")
    parser.add_argument("--mic", action="store_true", help="stream the default microphone instead of a file")
    _option(parser, "--url", "ASR_URL", "ws://127.0.0.1:2700", help="server address")
    _option(parser, "--chunk-ms", "ASR_CHUNK_MS", 200, positive(float), help="audio per message")
    parser.add_argument("--realtime", action="store_true", help="pace a file by the clock, like a live source")
    parser.add_argument("--json", action="store_true", help="print the server's raw JSON replies")
    _option(parser, "--token", "ASR_TOKEN", None, help="shared secret, if the server wants one")
    parser.add_argument("--seconds", type=positive(float), help="with --mic: stop after this much audio")
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
