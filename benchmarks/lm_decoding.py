"""Cost of word-LM beam search (asr.lm_decoding) beside the acoustic model, on real speech, one CPU thread:

    python benchmarks/lm_decoding.py                          # AN4 speakers' second sessions, default options
    python benchmarks/lm_decoding.py --beam-sizes 8 16 32 --streams 100

Reports, as JSON: audio seconds; the acoustic model's speed (log-mel + the shipped stream model over each whole
file); greedy and beam-search decoding speed; the fraction the beam search adds to the acoustic model's time and the
fraction of the model's output frames it searches (the rest are cut by `blank_skip`: a property of the model); the
one-off cost of loading the LM (shared by every stream: RSS and seconds); and the memory of one more stream,
measured as the RSS growth of `--streams` decoders each fed a minute of speech, divided by their number.
"""
from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import torch


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", default="/work/shared/data/real/an4/*/2/*.opus", help="glob of audio files")
    parser.add_argument("--model", default="stream")
    parser.add_argument("--lm", default="default")
    parser.add_argument("--beam-sizes", type=int, nargs="+", help="default: the decoder's default beam size")
    parser.add_argument("--streams", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from asr.audio import load_audio
    from asr.checkpoint import load_model
    from asr.decoding import ctc_greedy
    from asr.features import log_mel
    from asr.lm_decoding import BeamSearchDecoder, BeamSearchOptions

    model = load_model(args.model)
    shift = model.dims.frame_shift
    files = sorted(glob.glob(args.speech))
    if not files:
        raise SystemExit(f"no files match {args.speech}")
    log_probs, seconds, am = [], 0.0, 0.0
    with torch.inference_mode():
        for path in files:
            audio = load_audio(path)
            started = time.perf_counter()
            features = log_mel(audio)
            out, lengths, _ = model(features[None], torch.tensor([len(features)]))
            am += time.perf_counter() - started
            log_probs.append(out[0, : lengths[0]].clone())
            seconds += len(audio) / 16000
    report = {"files": len(files), "audio_seconds": round(seconds, 1), "acoustic_model_x_realtime": round(seconds / am),
              "acoustic_model_ms_per_audio_second": round(1000 * am / seconds, 2)}
    started = time.perf_counter()
    for lp in log_probs:
        ctc_greedy(lp, shift)
    report["greedy_ms_per_audio_second"] = round(1000 * (time.perf_counter() - started) / seconds, 3)

    before, started = rss_mb(), time.perf_counter()
    BeamSearchDecoder(shift, args.lm)  # loads the LM and builds the lexicon trie, once per process
    report["lm_load_seconds"] = round(time.perf_counter() - started, 2)
    report["lm_load_rss_mb"] = round(rss_mb() - before, 1)
    for beam in args.beam_sizes or [BeamSearchOptions.beam_size]:
        decoder = BeamSearchDecoder(shift, args.lm, BeamSearchOptions(beam_size=beam))
        started = time.perf_counter()
        for lp in log_probs:
            decoder.feed(lp)
            decoder.result()
            decoder.clear()
        spent = time.perf_counter() - started
        report[f"beam{beam}"] = {"x_realtime": round(seconds / spent), "ms_per_audio_second": round(1000 * spent / seconds, 2),
                                 "added_to_acoustic_model": round(spent / am, 3),
                                 "searched_frames": round(decoder.searched / decoder.frames, 3)}

    minute = torch.cat(log_probs)[: round(60 / shift)]
    before = rss_mb()
    decoders = [BeamSearchDecoder(shift, args.lm) for _ in range(args.streams)]
    for decoder in decoders:
        for start in range(0, len(minute), 10):  # 0.3 s chunks, as a stream gets them
            decoder.feed(minute[start : start + 10])
    report["streams"] = args.streams
    report["rss_mb_per_stream"] = round((rss_mb() - before) / args.streams, 3)
    report["max_buffered_frames"] = max(d.buffered_frames for d in decoders)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
