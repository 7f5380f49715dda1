"""Write docs/CLI.md from the commands' own argparse help, so the reference cannot drift from the code.

    python docs/cli_reference.py > docs/CLI.md

tests/test_docs.py checks that every option of every command below is in docs/CLI.md and that every option CLI.md
shows exists (argparse's layout changes between Python versions, so the test compares options, not bytes).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's packages, run from anywhere

# `python -m` tools with a main(argv) of their own: module -> what it is for
MODULES = {
    "server.bench": "load benchmark of the streaming server",
    "training.real_speech": "real-speech training sets and the dev suite from the shared corpora",
    "training.dev_suite": "WER of models, pocketsphinx and Whisper on every dev part",
    "training.pseudo_label": "pseudo-labels for untranscribed speech from two Whisper teachers",
    "training.tune_decoding": "tune the LM weight, word score and beam size on dev parts",
    "training.distill": "the delay between a teacher's and a student's outputs, for asr train --teacher",
    "training.plot_curves": "draw a run's metrics.csv",
}


def asr_parsers() -> dict[str, argparse.ArgumentParser]:
    """`asr`, `asr COMMAND` and `asr lm SUBCOMMAND` -> their full parsers."""
    from asr.cli import COMMAND_HELP, build_parser

    parsers = {"asr": build_parser(None)}
    for name in sorted(COMMAND_HELP):
        parser = build_parser(name)
        command = _subparsers(parser)[name]
        parsers[f"asr {name}"] = command
        for sub, subparser in _subparsers(command).items():
            parsers[f"asr {name} {sub}"] = subparser
    return parsers


def module_parsers() -> dict[str, argparse.ArgumentParser]:
    """`python -m MODULE` (and its subcommands) -> their parsers, caught as each module's main builds them."""
    parsers = {}
    for module in MODULES:
        built = []
        original = argparse.ArgumentParser.parse_args

        def capture(self, *args, **kwargs):
            built.append(self)
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = capture
        argv, sys.argv = sys.argv, [module, "--help"]
        try:
            with contextlib.suppress(SystemExit):
                importlib.import_module(module).main()
        finally:
            argparse.ArgumentParser.parse_args = original
            sys.argv = argv
        parser = built[0]
        parsers[f"python -m {module}"] = parser
        for sub, subparser in _subparsers(parser).items():
            parsers[f"python -m {module} {sub}"] = subparser
    return parsers


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def render() -> str:
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: fix it, so the page is the same everywhere
    lines = ["# Command reference", "",
             "Generated from the commands' own `--help` by `python docs/cli_reference.py > docs/CLI.md`; "
             "tests/test_docs.py fails when an option is missing here. Examples of use: the [README](../README.md), "
             "[SERVER.md](SERVER.md), [TRAINING.md](TRAINING.md).", ""]
    from asr.cli import COMMAND_HELP

    parsers = {**asr_parsers(), **module_parsers()}
    summary = {**{f"asr {k}": v for k, v in COMMAND_HELP.items()}, **{f"python -m {k}": v for k, v in MODULES.items()}}
    for name in parsers:
        lines.append(f"- [`{name}`](#{anchor(name)})" + (f": {summary[name]}" if name in summary else ""))
    lines.append("")
    for name, parser in parsers.items():
        parser.prog = name
        lines += [f"## {name}", "", "```", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return "".join(ch for ch in heading.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


if __name__ == "__main__":
    sys.stdout.write(render())
