"""`asr train`, `asr eval` and `asr synth`: plugged into the `asr` command through the "asr.commands" entry points."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields

TRAIN_EXAMPLES = """examples:
  asr synth data/synth --hours 1 --subset train && asr synth data/synth --utterances 100 --subset dev --seed 1
  asr train --train data/synth/train --dev data/synth/dev --out runs/tiny --steps 300
  asr train --train LibriSpeech/train-clean-100 LibriSpeech/train-clean-360 --dev LibriSpeech/dev-clean \\
            --out runs/stream --hidden 512 --layers 4 --steps 60000
  asr train ... --out runs/stream --resume                 # continue after a crash or a stop
  torchrun --standalone --nproc_per_node=4 -m training.train ...        # the same flags on 4 GPUs (DDP)
"""

EVAL_EXAMPLES = """examples:
  asr eval --data data/synth/test --model stream
  asr eval --data LibriSpeech/test-clean LibriSpeech/test-other --model runs/offline/best.pt --jsonl results.jsonl
"""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}
    parser.add_argument("--train", nargs="+", required=True, metavar="DIR", help="LibriSpeech-format subset dirs")
    parser.add_argument("--dev", nargs="*", default=[], metavar="DIR", help="dev subset dirs (WER while training)")
    parser.add_argument("--out", required=True, help="run directory: last.pt, best.pt, metrics.csv")
    model = parser.add_argument_group("model")
    model.add_argument("--hidden", type=int, help=f"LSTM units per direction (default {defaults['hidden']})")
    model.add_argument("--layers", type=int, help=f"LSTM layers (default {defaults['layers']})")
    model.add_argument("--stack", type=int, help=f"10 ms frames stacked per model step (default {defaults['stack']})")
    model.add_argument("--bidirectional", action="store_true", help="offline model (cannot stream)")
    model.add_argument("--dropout", type=float, help=f"dropout between layers (default {defaults['dropout']})")
    model.add_argument("--normalization", choices=["global", "running"],
                       help=f"feature normalisation: fixed training statistics, or each stream's running mean "
                            f"(default {defaults['normalization']})")
    model.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint's weights (same dims)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, help=f"steps in the schedule (default {defaults['steps']})")
    opt.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {defaults['lr']})")
    opt.add_argument("--warmup", type=int, help=f"linear warmup steps (default {defaults['warmup']})")
    opt.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {defaults['weight_decay']})")
    opt.add_argument("--clip", type=float, help=f"gradient norm clip (default {defaults['clip']})")
    opt.add_argument("--batch-seconds", type=float,
                     help=f"padded audio seconds per batch and process (default {defaults['batch_seconds']})")
    opt.add_argument("--max-utterance-seconds", type=float, help="skip longer utterances (default 30)")
    opt.add_argument("--no-spec-augment", dest="spec_augment", action="store_false", default=None)
    run = parser.add_argument_group("run")
    run.add_argument("--eval-every", type=int, help=f"steps between dev evaluations (default {defaults['eval_every']})")
    run.add_argument("--save-every", type=int, help=f"steps between checkpoints (default {defaults['save_every']})")
    run.add_argument("--log-every", type=int, help=f"steps between metrics rows (default {defaults['log_every']})")
    run.add_argument("--dev-max-utterances", type=int, help="dev utterances scored (default 400)")
    run.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this much wall time")
    run.add_argument("--seed", type=int, help="random seed (default 0)")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    run.add_argument("--no-cache-features", dest="cache_features", action="store_false", default=None,
                     help="recompute features every epoch instead of keeping them in memory")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="training.train", description="Train an LSTM-CTC model",
                                     epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    return parser


def run_train(args) -> int:
    from training.train import config_from_args, train

    meta = train(config_from_args(args))
    print(json.dumps({"step": meta["progress"]["step"], "best_dev_wer": meta["progress"]["best_dev_wer"],
                      "train_hours": meta["train_hours"], "out": args.out}))
    return 0


def register_train(subparsers) -> None:
    from training.train import __doc__ as usage

    parser = subparsers.add_parser("train", help="train a model on LibriSpeech-format corpora", description=usage,
                                   epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)


def run_eval(args) -> int:
    from asr.checkpoint import load_model
    from training.evaluate import evaluate_files
    from training.librispeech import load_manifests

    model = load_model(args.model)
    utterances = load_manifests(args.data)
    if args.max_utterances:
        utterances = utterances[: args.max_utterances]
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    try:
        scores = evaluate_files(model, utterances, jsonl=jsonl)
    finally:
        if jsonl:
            jsonl.close()
    print(json.dumps({"model": str(args.model), "data": args.data, "wer": round(scores["wer"], 4),
                      "cer": round(scores["cer"], 4), "utterances": scores["utterances"], "words": scores["words"],
                      "failed": scores["failed"]}))
    return 1 if scores["failed"] else 0


def register_eval(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="WER and CER of a model over LibriSpeech-format directories",
                                   description="Transcribe every utterance of LibriSpeech-format directories as "
                                   "`asr transcribe` would and report corpus WER and CER as JSON.",
                                   epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="LibriSpeech-format subset dirs")
    parser.add_argument("--model", default="stream", help="stream, offline or a checkpoint path (default stream)")
    parser.add_argument("--jsonl", metavar="FILE", help="write per-utterance results as JSON lines")
    parser.add_argument("--max-utterances", type=int, help="score only the first N utterances")
    parser.set_defaults(func=run_eval)

