"""Tune the beam search's beam size, LM weight and word score on dev parts: the model runs once per utterance, then
every setting decodes the same log-probabilities. WER is reported per part; the best setting is the one with the
lowest mean WER over the parts (each part counts the same, whatever its size). Tune on dev, never on test.

    python -m training.tune_decoding --model stream --dev data/real/dev/cv data/real/dev/an4 data/real/dev/so762 \\
        --lm-weights 0 0.5 1 1.5 2 --word-scores -1 0 1 2 [--beam-sizes 16 32]

A whole utterance in one model call gives the log-probabilities a stream of it gives (the model is causal, its
normalisation a running mean), so this scores what `asr transcribe` would, up to endpoints inside an utterance.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

import torch

from asr.audio import AudioError, load_audio
from asr.checkpoint import load_model
from asr.cli import torch_threads
from asr.features import log_mel
from asr.lm_decoding import GREEDY, BeamSearchOptions, Decoding
from training.evaluate import error_rates
from training.librispeech import load_manifest

log = logging.getLogger(__name__)


@torch.inference_mode()
def part_log_probs(model, folder: Path, limit: int | None) -> tuple[list[str], list[torch.Tensor]]:
    """References and (frames, vocab) log-probabilities of every readable utterance in a part."""
    references, outputs = [], []
    for utt in load_manifest(folder)[:limit]:
        try:
            features = log_mel(load_audio(utt.path))
        except AudioError as error:
            log.error("%s", error)
            continue
        log_probs, lengths, _ = model(features[None], torch.tensor([len(features)]))
        references.append(utt.text)
        outputs.append(log_probs[0, : lengths[0]])
    return references, outputs


def decode_all(decoding: Decoding, frame_shift: float, outputs: list[torch.Tensor]) -> list[str]:
    texts = []
    for log_probs in outputs:
        decoder = decoding.decoder(frame_shift)
        decoder.feed(log_probs)
        texts.append(decoder.result().text)
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tune_decoding", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="stream", help="shipped name or checkpoint")
    parser.add_argument("--dev", type=Path, nargs="+", required=True, metavar="DIR", help="dev parts (never test)")
    parser.add_argument("--lm", default="default", help="LM directory (default: the shipped one)")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[BeamSearchOptions().beam_size])
    parser.add_argument("--lm-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    parser.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--max-utterances", type=int, help="per part")
    parser.add_argument("--json", type=Path, help="write every setting's WER per part here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 beside a training)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch_threads(args.threads)

    model = load_model(args.model)
    shift = model.dims.frame_shift
    parts = {folder.name: part_log_probs(model, folder, args.max_utterances) for folder in args.dev}
    settings = [GREEDY] + [Decoding(args.lm, BeamSearchOptions(beam_size=b, lm_weight=w, word_score=s))
                           for b, w, s in itertools.product(args.beam_sizes, args.lm_weights, args.word_scores)]
    rows = []
    for decoding in settings:
        started = time.perf_counter()
        wers = {name: error_rates(refs, decode_all(decoding, shift, outputs))["wer"]
                for name, (refs, outputs) in parts.items()}
        row = {"decoding": decoding.describe(), "lm_weight": decoding.options.lm_weight if decoding.lm else None,
               "word_score": decoding.options.word_score if decoding.lm else None, "wer": wers,
               "mean_wer": sum(wers.values()) / len(wers), "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        log.info("%s: mean WER %.1f%% (%s)", row["decoding"], 100 * row["mean_wer"],
                 ", ".join(f"{k} {100 * v:.1f}%" for k, v in wers.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    names = list(parts)
    print("| decoding | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
    for row in sorted(rows, key=lambda r: r["mean_wer"]):
        print(f"| {row['decoding']} | " + " | ".join(f"{100 * row['wer'][n]:.1f}%" for n in names)
              + f" | {100 * row['mean_wer']:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
