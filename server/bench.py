"""Load benchmark: N concurrent streams sent in real time, reply latency per chunk, finals checked against offline.

    python -m server.bench --streams 8 --seconds 30            # starts its own `asr serve` on a free port
    python -m server.bench --find-max --seconds 20             # raise N until p95 latency exceeds 250 ms
    python -m server.bench --url ws://127.0.0.1:2700 --streams 4 --model stream   # a server already running
    python -m server.bench --streams 20 --seconds 15 --fast-sender     # beside one client sending 1 MiB messages
    python -m server.bench --find-max --compare-greedy --audio data/real/dev/cv   # real dev speech: greedy and LM
    python -m server.bench --find-max --upload-seconds 3600    # beside a 1-hour file posted to the OpenAI API
    python -m server.bench --find-max --server-arg=--precision --server-arg=int8   # int8 models

--audio takes files or directories (every audio file below one, at most MAX_AUDIO_FILES, in name order). With
--compare-greedy, --find-max runs twice in one run, greedy decoding first (`--lm none`, one pass) and then the
decoding the server options give (`--server-arg=--final-model --server-arg=offline`: two passes), and prints both
capacities, their ratio, and pocketsphinx's real-time factor on the same audio (if it is installed), so that figures
from different days and machines compare.

Each stream sends its audio as PCM16 in `--chunk-ms` chunks paced by the wall clock (starts staggered over one
chunk), reading replies as they come; a chunk's latency is the time from its send to its reply. At the end each
stream's finals, joined, must equal `StreamingRecognizer` on the whole audio (what `asr transcribe --model stream`
gives, with `--final-model` when the server has one; an int8 server's may differ a little, as its steps depend on
their batch); the latency of the replies that carry a final is reported
apart (final_p50/p95/p99: with two passes it includes the second pass). With --fast-sender one more client sends
--fast-sender-bytes messages of audio back to back (reading its replies as they come) for as long as the measured
streams run: it must slow only itself. With --upload-seconds one more client posts that much of the audio (looped,
as Ogg Opus) to POST /v1/audio/transcriptions at the start of each run: uploads go behind the live streams, and the
report's upload_x_real_time says how fast the server decoded it meanwhile. Traffic goes only to 127.0.0.1 unless --url says otherwise; the number of
streams and runs is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

from asr.audio import SAMPLE_RATE, float_to_pcm16, load_audio, pcm16_to_float
from asr.checkpoint import load_model
from asr.second_pass import SecondPass
from asr.transcribe import transcribe_audio
from server.settings import ServerSettings, add_arguments, from_args

SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "a journey of a thousand miles begins with a single step", "please call stella and ask her to bring"]
VARIANTS = 4  # distinct audio streams (rotations of the test audio), each with its own offline reference
MAX_STREAMS = 1024
MAX_RUNS = 12
MAX_AUDIO_FILES = 200
AUDIO_SUFFIXES = (".wav", ".flac", ".opus", ".ogg", ".mp3")


@dataclass
class StreamResult:
    latencies: list[float] = field(default_factory=list)
    final_latencies: list[float] = field(default_factory=list)  # of the replies that carry a final
    text: str = ""
    expected: str = ""
    error: str | None = None


def audio_files(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for the audio files below it (name order, at most MAX_AUDIO_FILES)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix in AUDIO_SUFFIXES)
            if not found:
                sys.exit(f"bench: --audio {path}: no audio files in this directory")
            files += found[:MAX_AUDIO_FILES]
        elif path.exists():
            files.append(str(path))
        else:
            sys.exit(f"bench: --audio {path}: no such file or directory")
    return files


def bench_audio(files: list[str]) -> np.ndarray:
    """The given files, or espeak-ng sentences, joined with half a second of silence (16 kHz float32)."""
    files = audio_files(files)
    if not files:
        if shutil.which("espeak-ng") is None:
            sys.exit("bench: give --audio FILE (espeak-ng, which makes the default test audio, is missing)")
        folder = Path(tempfile.mkdtemp(prefix="bench-"))
        for i, sentence in enumerate(SENTENCES):
            subprocess.run(["espeak-ng", "-w", str(folder / f"{i}.wav"), sentence], check=True)
        files = [str(folder / f"{i}.wav") for i in range(len(SENTENCES))]
    silence = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    return np.concatenate([part for f in files for part in (load_audio(f), silence)])


def stream_audio(audio: np.ndarray, variant: int, seconds: float) -> bytes:
    """`seconds` of the audio, looped, starting at a different place for each variant, as PCM16."""
    start = variant * len(audio) // VARIANTS
    needed = int(seconds * SAMPLE_RATE)
    looped = np.tile(audio, needed // len(audio) + 2)[start : start + needed]
    return float_to_pcm16(looped)


def pocketsphinx_speed(audio: np.ndarray) -> float | None:
    """Seconds of `audio` pocketsphinx's en-us model decodes per second of this process's CPU time (None if it is
    not installed): the day's yardstick for this machine's speed."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        return None
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    audio = audio[: 60 * SAMPLE_RATE]
    started = time.process_time()
    decoder.start_utt()
    decoder.process_raw(float_to_pcm16(audio), full_utt=True)
    decoder.end_utt()
    return round(len(audio) / SAMPLE_RATE / (time.process_time() - started), 1)


def offline_text(model, pcm: bytes, settings: ServerSettings, second_pass: SecondPass | None) -> str:
    """What `asr transcribe --model stream` gives for the whole recording, decoding as the server does (with its
    second pass, if it has one)."""
    return transcribe_audio(model, pcm16_to_float(pcm), decoding=settings.decoding, second_pass=second_pass).text


def server_settings(server_args: list[str]) -> ServerSettings:
    """The settings an `asr serve` with these extra options runs (parsed as it parses them)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(server_args))


async def run_stream(url: str, pcm: bytes, chunk_ms: float, start_at: float, result: StreamResult) -> None:
    chunk_bytes = int(SAMPLE_RATE * chunk_ms / 1000) * 2
    chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
    sent_at: asyncio.Queue[float] = asyncio.Queue()
    finals = []
    try:
        async with connect(url, max_size=2**20, open_timeout=30) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": SAMPLE_RATE}}))

            async def send():
                loop = asyncio.get_running_loop()
                for i, chunk in enumerate(chunks):
                    await asyncio.sleep(max(0.0, start_at + i * chunk_ms / 1000 - loop.time()))
                    sent_at.put_nowait(time.perf_counter())
                    await ws.send(chunk)
                sent_at.put_nowait(time.perf_counter())
                await ws.send('{"eof": 1}')

            sender = asyncio.create_task(send())
            for i in range(len(chunks) + 1):
                reply = json.loads(await ws.recv())
                latency = time.perf_counter() - await sent_at.get()
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                if i < len(chunks):
                    result.latencies.append(latency)
                if reply.get("text"):
                    finals.append(reply["text"])
                    result.final_latencies.append(latency)
            await sender
        result.text = " ".join(finals)
    except Exception as error:  # reported, counted as a failed stream
        result.error = f"{type(error).__name__}: {error}"


async def fast_sender(url: str, pcm: bytes, message_bytes: int, stop: asyncio.Event, sent: list[int]) -> None:
    """One client sending `message_bytes` of audio per message back to back until `stop`; counts messages sent."""
    message = (pcm * (message_bytes // len(pcm) + 1))[:message_bytes]
    async with connect(url, max_size=None, open_timeout=30, close_timeout=1) as ws:
        async def read():
            async for _ in ws:
                pass

        reader = asyncio.create_task(read())
        while not stop.is_set():
            await ws.send(message)
            sent[0] += 1
        reader.cancel()


async def post_upload(url: str, path: str) -> None:
    """POST the file to the server's OpenAI-compatible endpoint (until it is decoded, or cancelled)."""
    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/")
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    with open(path, "rb") as audio:
        form.add_field("file", audio, filename=Path(path).name)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{http}/v1/audio/transcriptions", data=form) as response:
                body = await response.text()
                if response.status != 200:
                    print(f"  upload: HTTP {response.status}: {body[:200]}", file=sys.stderr)


def upload_file(audio: np.ndarray, seconds: float) -> str:
    """`seconds` of the audio, looped, as an Ogg Opus file (an hour is about 10 MB: under OpenAI's 25 MB)."""
    path = Path(tempfile.mkdtemp(prefix="bench-upload-")) / "upload.ogg"
    sf.write(path, pcm16_to_float(stream_audio(audio, 0, seconds)), SAMPLE_RATE, format="OGG", subtype="OPUS")
    return str(path)


async def run_load(url: str, pcms: list[bytes], streams: int, chunk_ms: float,
                   fast_bytes: int = 0, upload: str | None = None) -> list[StreamResult]:
    loop = asyncio.get_running_loop()
    stop, sent = asyncio.Event(), [0]
    fast = asyncio.create_task(fast_sender(url, pcms[0], fast_bytes, stop, sent)) if fast_bytes else None
    uploading = asyncio.create_task(post_upload(url, upload)) if upload else None
    # the fast sender and the upload are under way before the measured streams start
    start = loop.time() + (2.0 if fast or uploading else 0.5)
    results = [StreamResult() for _ in range(streams)]
    await asyncio.gather(*(run_stream(url, pcms[i % len(pcms)], chunk_ms, start + chunk_ms / 1000 * i / streams,
                                      results[i]) for i in range(streams)))
    if uploading:
        if uploading.done() and uploading.exception():
            print(f"  upload: {uploading.exception()}", file=sys.stderr)
        uploading.cancel()
        await asyncio.gather(uploading, return_exceptions=True)
    if fast:
        stop.set()
        try:
            await asyncio.wait_for(fast, 30)
        except Exception as error:  # its stream may be closed under it; that is its own business
            print(f"  fast sender: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"  fast sender: {sent[0]} messages of {fast_bytes} bytes "
              f"({sent[0] * fast_bytes / 2 / SAMPLE_RATE:.0f} s of audio)", file=sys.stderr)
    return results


_last = {}  # port -> (time, batch size sum, batch count, upload audio seconds) at the previous report


def server_rates(port: int | None) -> dict:
    """Since the previous report, from the server's /metrics: the mean streams per model step, and the seconds of
    uploaded audio decoded per second (when there were any)."""
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except Exception:
        return {}
    values = [re.search(rf"^{name} (\S+)", text, re.M) for name in (
        "asr_batch_size_sum", "asr_batch_size_count", "asr_upload_audio_seconds_total")]
    now = (time.monotonic(), *(float(value.group(1)) if value else 0.0 for value in values))
    then = _last.get(port, (now[0], 0.0, 0.0, now[3]))
    _last[port] = now
    rates = {"mean_batch": round((now[1] - then[1]) / (now[2] - then[2]), 2) if now[2] > then[2] else None}
    if now[3] > then[3]:
        rates["upload_x_real_time"] = round((now[3] - then[3]) / (now[0] - then[0]), 1)
    return rates


def report(streams: int, results: list[StreamResult], expected: list[str], port: int | None,
           server: LocalServer | None = None) -> dict:
    latencies = np.array([x for r in results for x in r.latencies]) * 1000
    errors = [r.error for r in results if r.error]
    matches = sum(r.text == expected[i % len(expected)] for i, r in enumerate(results) if not r.error)
    summary = {"streams": streams, "chunks": int(latencies.size), "errors": len(errors),
               "finals_match": f"{matches}/{streams}", **server_rates(port)}
    if latencies.size:
        for q in (50, 95, 99):
            summary[f"p{q}_ms"] = round(float(np.percentile(latencies, q)), 1)
        summary["max_ms"] = round(float(latencies.max()), 1)
    finals = np.array([x for r in results for x in r.final_latencies]) * 1000
    if finals.size:  # replies that carry a final: the endpoint's chunk (and eof) to its final, second pass included
        summary["finals"] = int(finals.size)
        for q in (50, 95, 99):
            summary[f"final_p{q}_ms"] = round(float(np.percentile(finals, q)), 1)
    if server is not None:
        summary["server_rss_mb"], summary["server_peak_rss_mb"] = server.rss_mb()
        summary["server_cpu_s"] = server.cpu_used()
    print(json.dumps(summary), flush=True)
    for error in errors[:3]:
        print(f"  stream error: {error}", file=sys.stderr)
    for i, r in enumerate(results):
        if not r.error and r.text != expected[i % len(expected)]:
            print(f"  stream {i} final differs:\n    got      {r.text!r}\n    expected {expected[i % len(expected)]!r}",
                  file=sys.stderr)
            break
    return summary


class LocalServer:
    """`python -m server serve` on a free 127.0.0.1 port, in a child process (the bench's clients get their own
    CPU time and interpreter)."""

    def __init__(self, model: str, max_streams: int, extra: list[str]):
        command = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0", "--model", model,
                   "--max-streams", str(max_streams), "--log-level", "INFO", *extra]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            if match := re.search(r"on ws://127\.0\.0\.1:(\d+)", line):
                self.port = int(match.group(1))
                break
        else:
            sys.exit(f"bench: the server did not start (exit code {self.process.wait()})")
        self._cpu = None
        self.cpu_used()  # the starting point
        # keep reading its log so that the pipe never fills up; show only warnings and errors
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self):
        for line in self.process.stderr:
            if " WARNING " in line or " ERROR " in line:
                sys.stderr.write("  server: " + line)

    def rss_mb(self) -> tuple[float | None, float | None]:
        """The server process's resident memory now and at its peak (Linux /proc), in MB."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None, None
        values = [re.search(rf"^{key}:\s+(\d+) kB", status, re.M) for key in ("VmRSS", "VmHWM")]
        return tuple(round(int(v.group(1)) / 1024, 1) if v else None for v in values)

    def cpu_used(self) -> float | None:
        """CPU seconds the server process used since the last call (user and system, all threads; Linux /proc):
        with the audio streamed, the server's cost per stream, steadier than latency on a noisy machine."""
        now = self._cpu_seconds()
        used = None if now is None or self._cpu is None else round(now - self._cpu, 1)
        self._cpu = now
        return used

    def _cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream, sent in real time")
    parser.add_argument("--chunk-ms", type=float, default=200.0, help="audio per message (default 200)")
    parser.add_argument("--model", default="stream", help="model for the offline reference (and the local server)")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--audio", nargs="*", default=[],
                        help="audio files or directories of them (default: espeak-ng sentences)")
    parser.add_argument("--find-max", action="store_true", help="raise the stream count until p95 > --p95-limit-ms")
    parser.add_argument("--p95-limit-ms", type=float, default=250.0)
    parser.add_argument("--compare-greedy", action="store_true",
                        help="with --find-max: greedy decoding first, then the server options' decoding, one run")
    parser.add_argument("--start-n", type=int, default=1, help="stream count --find-max tries first (default 1)")
    parser.add_argument("--max-n", type=int, default=256, help=f"most streams --find-max tries (<= {MAX_STREAMS})")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `asr serve` option (repeatable)")
    parser.add_argument("--fast-sender", action="store_true",
                        help="one more client sends large audio messages back to back beside the measured streams")
    parser.add_argument("--fast-sender-bytes", type=int, default=2**20,
                        help="bytes of PCM16 per fast-sender message (default 1 MiB, 33 s of audio)")
    parser.add_argument("--upload-seconds", type=float, default=0,
                        help="one more client posts this much audio (looped, Ogg Opus) to /v1/audio/transcriptions "
                             "at the start of each run (at most 7200)")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= MAX_STREAMS or not 1 <= args.start_n <= args.max_n <= MAX_STREAMS:
        parser.error(f"stream counts must be within 1..{MAX_STREAMS}")
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be within (0, 600]")
    if not 2 <= args.fast_sender_bytes <= 2**24:
        parser.error("--fast-sender-bytes must be within 2..16777216")
    if not 0 <= args.upload_seconds <= 7200:
        parser.error("--upload-seconds must be within 0..7200")
    fast_bytes = args.fast_sender_bytes if args.fast_sender else 0

    audio = bench_audio(args.audio)
    args.upload = upload_file(audio, args.upload_seconds) if args.upload_seconds else None
    if args.compare_greedy:
        if not args.find_max or args.url:
            parser.error("--compare-greedy goes with --find-max and a server of its own (no --url)")
        speed = pocketsphinx_speed(audio)
        greedy = measure(args, audio, args.server_arg + ["--lm", "none", "--final-model", "none"], fast_bytes)
        default = measure(args, audio, args.server_arg, fast_bytes)
        print(json.dumps({"greedy_streams": greedy, "default_streams": default,
                          "default_vs_greedy": round(default / greedy, 2) if greedy else None,
                          "pocketsphinx_x_real_time": speed}))
        return 0
    return 0 if measure(args, audio, args.server_arg, fast_bytes) is not None else 1


def measure(args, audio: np.ndarray, server_args: list[str], fast_bytes: int) -> int | None:
    """One load run (--streams) or a search for the most streams (--find-max) against a server with `server_args`.
    Returns the streams held (None: a single run that failed)."""
    settings = server_settings(server_args)  # with --url: the defaults, what the server should run too
    model = load_model(args.model, precision=settings.precision)
    pcms = [stream_audio(audio, v, args.seconds) for v in range(VARIANTS)]
    print(f"offline references for {VARIANTS} audio variants of {args.seconds:g} s ...", file=sys.stderr)
    decoding = settings.decoding
    passes = f", finals from {settings.final_model}" if settings.final_model else ""
    print(f"decoding: {decoding.describe()}{passes}", file=sys.stderr)
    second_pass = None
    if settings.final_model is not None:
        second_pass = SecondPass(load_model(settings.final_model, precision=settings.precision), decoding)
    expected = [offline_text(model, pcm, settings, second_pass) for pcm in pcms]
    del second_pass
    del model

    most = args.max_n if args.find_max else args.streams
    server = None if args.url else LocalServer(args.model, most + 9, server_args)
    url = args.url or f"ws://127.0.0.1:{server.port}"
    port = server.port if server else None
    server_rates(port)  # the metrics' starting point
    try:
        if not args.find_max:
            results = asyncio.run(run_load(url, pcms, args.streams, args.chunk_ms, fast_bytes, args.upload))
            summary = report(args.streams, results, expected, port, server)
            ok = summary["errors"] == 0 and summary["finals_match"] == f"{args.streams}/{args.streams}"
            return args.streams if ok else None
        good, bad, n, runs = 0, None, args.start_n, 0
        while runs < MAX_RUNS:
            runs += 1
            results = asyncio.run(run_load(url, pcms, n, args.chunk_ms, fast_bytes, args.upload))
            summary = report(n, results, expected, port, server)
            ok = summary["errors"] == 0 and summary.get("p95_ms", 1e9) <= args.p95_limit_ms
            good, bad = (max(good, n), bad) if ok else (good, n if bad is None else min(bad, n))
            if bad is None:
                if n >= args.max_n:
                    break
                n = min(2 * n, args.max_n)
            elif bad - good <= max(1, good // 8):
                break
            else:
                n = (good + bad) // 2
        limit = f"p95 <= {args.p95_limit_ms:g} ms"
        print(f"most concurrent real-time streams with {limit} ({decoding.describe()}{passes}): {good}"
              + ("" if bad else " (stopped at --max-n)"))
        return good
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
