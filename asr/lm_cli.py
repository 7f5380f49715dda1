"""`asr lm build` and `asr lm info`: make and inspect word n-gram LM directories (asr.lm), and the decoding flags
that `asr transcribe` and `asr eval` share. asr.cli imports this module, never the other way round."""
from __future__ import annotations

import argparse
import json
import sys

LM_HELP = "build and inspect word n-gram language models"

LM_EXAMPLES = """examples:
  asr lm build corpus/*.txt --out data/my_lm --order 3 --exclude test_sentences.txt
  asr lm info default --oov dev_sentences.txt
"""


def run_lm_build(args) -> int:
    from asr.lm import LanguageModelError, build_language_model

    try:
        info = build_language_model(args.texts, args.out, order=args.order, prune=args.prune or [0] * args.order,
                                    exclude_files=args.exclude, lexicon_min_count=args.lexicon_min_count,
                                    memory=args.memory)
    except (LanguageModelError, OSError) as error:
        print(f"asr lm build: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: info[k] for k in ("order", "prune", "sentences", "words", "vocabulary", "size_bytes")}))
    return 0


def run_lm_info(args) -> int:
    from asr.lm import LanguageModelError, load_language_model

    try:
        lm = load_language_model(args.lm)
        info = dict(lm.metadata, directory=str(lm.directory))
        for path in args.oov:
            oov, total = lm.oov_rate([path])
            info.setdefault("oov", {})[path] = {"oov_words": oov, "words": total,
                                                "rate": round(oov / total, 4) if total else 0.0}
    except (LanguageModelError, OSError) as error:
        print(f"asr lm info: {error}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


def register_lm(subparsers) -> None:
    lm = subparsers.add_parser("lm", help=LM_HELP,
                               description="Word n-gram language models (KenLM) for beam-search decoding.",
                               epilog=LM_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = lm.add_subparsers(dest="lm_command", metavar="LM_COMMAND", required=True)
    build = commands.add_parser("build", help="build an LM directory (lm.bin, words.txt, lm.json) from text files",
                                description="Normalise text files (one sentence or line of prose per line), leave "
                                "out excluded sentences, count n-grams with KenLM's lmplz and write a quantized "
                                "binary LM with its lexicon.")
    build.add_argument("texts", nargs="+", metavar="TEXT")
    build.add_argument("--out", required=True, metavar="DIR", help="LM directory to write")
    build.add_argument("--order", type=int, default=4, help="n-gram order (default 4)")
    build.add_argument("--prune", type=int, nargs="+", metavar="N",
                       help="drop n-grams seen at most N times, one N per order starting at unigrams (first 0); "
                       "default: no pruning")
    build.add_argument("--exclude", nargs="+", default=[], metavar="FILE",
                       help="sentence files (dev/test) whose sentences the LM must never see")
    build.add_argument("--lexicon-min-count", type=int, default=1, metavar="N",
                       help="the lexicon keeps words seen at least N times (default 1: every word of the LM)")
    build.add_argument("--memory", default="25%", help="lmplz memory for sorting (default 25%% of RAM)")
    build.set_defaults(func=run_lm_build)
    info = commands.add_parser("info", help="show an LM's metadata and out-of-vocabulary rates")
    info.add_argument("lm", nargs="?", default="default", help="default or an LM directory")
    info.add_argument("--oov", nargs="+", default=[], metavar="FILE", help="sentence files to measure OOV rate on")
    info.set_defaults(func=run_lm_info)


# --- decoding flags, shared by `asr transcribe` and `asr eval` (the server reads the same through server.settings) ---
def lm_argument(text: str) -> str | None:
    """--lm: an LM directory, "default" (the shipped English LM), or "none" for greedy decoding."""
    return None if text.strip().lower() in ("none", "") else text


lm_argument.__name__ = "LM"  # argparse names the type in its messages


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    from asr.lm_decoding import BeamSearchOptions

    defaults = BeamSearchOptions()
    group = parser.add_argument_group("decoding")
    group.add_argument("--lm", type=lm_argument, default="default", metavar="DIR|none",
                       help="word LM directory for the beam search (default: the shipped English LM); none: "
                       "greedy CTC decoding")
    group.add_argument("--beam-size", type=int, default=defaults.beam_size,
                       help=f"hypotheses kept per frame (default {defaults.beam_size})")
    group.add_argument("--lm-weight", type=float, default=defaults.lm_weight,
                       help=f"weight of the LM's log10 word probabilities, 0: lexicon only (default "
                       f"{defaults.lm_weight:g})")
    group.add_argument("--word-score", type=float, default=defaults.word_score,
                       help=f"bonus per word (default {defaults.word_score:g})")


def decoding_from_args(args):
    """The `asr.lm_decoding.Decoding` the flags of `add_decoding_arguments` ask for. Raises LanguageModelError
    (a ValueError) for a missing or damaged LM directory, ValueError for bad search settings."""
    from asr.lm import load_language_model
    from asr.lm_decoding import BeamSearchOptions, Decoding

    options = BeamSearchOptions(beam_size=args.beam_size, lm_weight=args.lm_weight, word_score=args.word_score)
    if args.lm is not None:
        load_language_model(args.lm)
    return Decoding(args.lm, options)
