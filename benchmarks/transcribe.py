"""Offline transcription speed and memory on this CPU: audio seconds per wall second and peak RSS, for the shipped
models, against pocketsphinx (a real recognizer that runs here) on the same audio.

    python benchmarks/transcribe.py --minutes 10 60 --threads 1
    python benchmarks/transcribe.py --minutes 10 --models stream offline --lm none default   # LM cost
    python benchmarks/transcribe.py --minutes 10 --precisions float32 int8                 # int8 models

Builds long files by repeating held-out speech (the samples, or --speech FILES) with pauses, then transcribes each
in a fresh process so that its peak RSS is its own. Memory is bounded when the 60-minute file peaks near the 10-minute
one. Speed is reported per CPU thread (--threads) and as a ratio to pocketsphinx measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.model import PRECISIONS

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads({threads})
path, model_name, lm, precision = sys.argv[1:5]
if model_name == "pocketsphinx":
    from pocketsphinx import Decoder
    import soundfile as sf
    decoder = Decoder(samprate=16000, loglevel="FATAL")
    start = time.perf_counter()
    decoder.start_utt()
    with sf.SoundFile(path) as f:
        for block in f.blocks(blocksize=160000, dtype="int16"):
            decoder.process_raw(block.tobytes(), full_utt=False)
    decoder.end_utt()
    text = decoder.hyp().hypstr if decoder.hyp() else ""
else:
    from asr.checkpoint import load_model
    from asr.lm_decoding import Decoding
    from asr.transcribe import transcribe_file
    model = load_model(model_name, precision=precision)
    decoding = Decoding(None if lm == "none" else lm)
    if decoding.lm:
        decoding.decoder(model.dims.frame_shift)  # the LM and its lexicon trie load once per process, not per file
    start = time.perf_counter()
    text = transcribe_file(model, path, decoding=decoding).text
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "words": len(text.split()),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def build_file(speech: list[Path], minutes: float, path: Path) -> float:
    """Write `minutes` of speech (the given files in turn, 0.7 s pauses) to a 16 kHz WAV, block by block."""
    from asr.audio import load_audio

    clips = [np.concatenate([load_audio(p), np.zeros(11200, np.float32)]) for p in speech]
    total = int(minutes * 60 * 16000)
    written, index = 0, 0
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as out:
        while written < total:
            clip = clips[index % len(clips)][: total - written]
            out.write(clip)
            written += len(clip)
            index += 1
    return written / 16000


def run_child(path: Path, model: str, threads: int, lm: str, precision: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD.format(threads=threads), str(path), model, lm, precision],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--models", nargs="+", default=["stream", "offline", "pocketsphinx"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lm", nargs="+", default=["default"],
                        help="decodings of our models: none (greedy), default (the shipped LM) or an LM directory")
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=PRECISIONS,
                        help="weights of our models")
    parser.add_argument("--speech", type=Path, nargs="+", default=sorted((ROOT / "samples").glob("*.*")))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.wav"
            audio_seconds = build_file(args.speech, minutes, path)
            runs = [(model, lm, precision) for model in args.models
                    for lm in (["-"] if model == "pocketsphinx" else args.lm)
                    for precision in (["-"] if model == "pocketsphinx" else args.precisions)]
            for model, lm, precision in runs:
                stats = run_child(path, model, args.threads, lm, precision)
                rows.append({"minutes": minutes, "model": model, "lm": lm, "precision": precision, "threads": args.threads,
                             "audio_x_realtime": round(audio_seconds / stats["seconds"], 1),
                             "peak_rss_mb": round(stats["peak_rss_mb"]), "words": stats["words"]})
                print(json.dumps(rows[-1]), flush=True)
    reference = {r["minutes"]: r["audio_x_realtime"] for r in rows if r["model"] == "pocketsphinx"}
    print("\n| audio | model | LM | precision | threads | x real time | vs pocketsphinx | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['audio_x_realtime'] / reference[r['minutes']]:.1f}x" if r["minutes"] in reference else "-"
        print(f"| {r['minutes']:g} min | {r['model']} | {r['lm']} | {r['precision']} | {r['threads']} | {r['audio_x_realtime']} | {ratio} | "
              f"{r['peak_rss_mb']} MB |")


if __name__ == "__main__":
    main()
