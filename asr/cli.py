"""The `asr` command. Its own subcommands are transcribe and plot; serve, stream (server package) and train, eval,
synth (training package) plug in through the "asr.commands" entry points, so this module never imports them."""
from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from asr.lm_cli import LM_HELP


def model_argument(text: str) -> str | None:
    """--final-model (asr transcribe, asr serve): a model name or checkpoint path, or "none"."""
    return None if text.strip().lower() in ("none", "") else text


model_argument.__name__ = "model"  # argparse names the type in its messages


PRECISION_HELP = ("weights of the loaded models: float32 (the exact model) or int8 (quantised: faster steps on a CPU, "
                  "slightly different words; README, Benchmarks)")


def precision_argument(text: str) -> str:
    """--precision (asr transcribe, asr serve, the dev suite, the benchmarks): float32 or int8."""
    from asr.model import check_precision

    try:
        return check_precision(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


precision_argument.__name__ = "precision"

TRANSCRIBE_EXAMPLES = """examples:
  asr transcribe samples/hello.wav
  asr transcribe talk.mp3 interview.flac --model offline --format srt --output-dir subs/
  asr transcribe *.wav --format json > transcripts.jsonl
  asr transcribe call.wav --lm none                 # greedy CTC, no language model
  asr transcribe call.wav --lm data/my_lm --lm-weight 1.0
  asr transcribe talk.wav --final-model offline     # two passes: stream model's endpoints, offline model's words
"""

PLOT_EXAMPLES = """examples:
  asr plot samples/hello.wav --out gates.png
  asr plot speech.flac --model offline --layer 1 --out gates.png
"""


def run_transcribe(args) -> int:
    from tqdm import tqdm

    from asr.api import Model
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError, load_model
    from asr.formats import SUFFIXES, render
    from asr.lm_cli import decoding_from_args
    from asr.recognizer import Endpointing
    from asr.second_pass import SecondPass
    from asr.transcribe import audio_duration

    try:
        decoding = decoding_from_args(args)
        second_pass = None
        if args.final_model is not None:
            second_pass = SecondPass(load_model(args.final_model, precision=args.precision), decoding, args.final_model)
        model = Model(load_model(args.model, precision=args.precision), args.model, decoding, second_pass)
    except (CheckpointError, ValueError) as error:  # a missing or damaged model or LM, bad search settings
        print(f"asr transcribe: {error}", file=sys.stderr)
        return 2
    torch_threads(args.threads)
    endpointing = Endpointing(silence=args.endpoint_silence)
    output_dir = Path(args.output_dir) if args.output_dir else None
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
    total = sum(audio_duration(f) or 0.0 for f in args.files)
    failed = 0
    with tqdm(total=round(total, 1), unit="s", desc="transcribe", file=sys.stderr, disable=args.quiet or None,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]") as bar:
        for path in args.files:
            seconds = 0.0

            def advance(block_seconds: float) -> None:
                nonlocal seconds
                seconds += block_seconds
                bar.update(block_seconds)

            try:
                transcript = model.transcribe(path, endpointing=endpointing, progress=advance)
            except AudioError as error:
                bar.write(f"asr transcribe: {error}", file=sys.stderr)
                failed += 1
                if args.format == "text" and not output_dir:  # one line per input file, empty for a failed one
                    bar.clear()
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                continue
            text = render(transcript, args.format, path, seconds)
            if output_dir:
                (output_dir / (Path(path).stem + SUFFIXES[args.format])).write_text(text, encoding="utf-8")
            else:
                bar.clear()
                sys.stdout.write(text)
                sys.stdout.flush()
    if failed:
        print(f"asr transcribe: {failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


def run_plot(args) -> int:
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError, load_model
    from asr.plot import plot_utterance

    try:
        model = load_model(args.model)
        plot_utterance(model, args.file, args.out, layer=args.layer)
    except (AudioError, CheckpointError, ValueError) as error:
        print(f"asr plot: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


def torch_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# Every command's one-line help, so that `asr --help` lists them without importing torch: only the command being
# run has its full parser built. Each register function takes its help from here.
COMMAND_HELP = {
    "transcribe": "transcribe audio files",
    "serve": "run the streaming websocket server (Vosk protocol, browser page at /)",
    "stream": "stream a file or the microphone to an `asr serve` server",
    "plot": "draw log-mel, CTC posteriors and LSTM gates of one utterance",
    "synth": "synthesize a LibriSpeech-format corpus with offline text-to-speech",
    "train": "train a model on LibriSpeech-format corpora",
    "eval": "WER and CER of a model over LibriSpeech-format directories",
    "average": "average the weights of checkpoints of one model shape (a model soup)",
    "lm": LM_HELP,
}


def register_transcribe(subparsers) -> None:
    from asr.checkpoint import DEFAULT_MODEL
    from asr.formats import FORMATS
    from asr.lm_cli import add_decoding_arguments

    transcribe = subparsers.add_parser("transcribe", help=COMMAND_HELP["transcribe"], epilog=TRANSCRIBE_EXAMPLES,
                                       description="Transcribe audio files (any format, rate and channel count) in "
                                       "bounded memory. One result per file, in input order.",
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
    transcribe.add_argument("files", nargs="+", metavar="FILE")
    transcribe.add_argument("--model", default=DEFAULT_MODEL, help="stream, offline or a checkpoint path (default %(default)s)")
    transcribe.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    transcribe.add_argument("--output-dir", metavar="DIR", help="write FILE_STEM.{txt,json,srt,vtt} here instead of stdout")
    transcribe.add_argument("--final-model", type=model_argument,
                            metavar="MODEL", help="with a stream model: transcribe each utterance its endpoints cut "
                            "again with this bidirectional model (offline or a checkpoint path), as `asr serve "
                            "--final-model` does for its finals (default none)")
    transcribe.add_argument("--endpoint-silence", type=float, default=0.8,
                            help="stream model: seconds of silence that end an utterance (default 0.8)")
    transcribe.add_argument("--threads", type=int, help="torch CPU threads")
    transcribe.add_argument("--precision", type=precision_argument, default="float32",
                            help=PRECISION_HELP + " (default float32)")
    transcribe.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_decoding_arguments(transcribe)
    transcribe.set_defaults(func=run_transcribe)


def register_plot(subparsers) -> None:
    from asr.checkpoint import DEFAULT_MODEL

    plot = subparsers.add_parser("plot", help=COMMAND_HELP["plot"],
                                 description="Draw, for one utterance: the log-mel spectrogram, the CTC posteriors "
                                 "with the recognised characters, and the mean input, forget and output gate "
                                 "activations of one LSTM layer over time.", epilog=PLOT_EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    plot.add_argument("file", metavar="FILE")
    plot.add_argument("--model", default=DEFAULT_MODEL, help="stream, offline or a checkpoint path")
    plot.add_argument("--layer", type=int, default=0, help="LSTM layer whose gates are drawn (default 0)")
    plot.add_argument("--out", default="gates.png", help="PNG to write (default gates.png)")
    plot.set_defaults(func=run_plot)


def _registrations() -> dict:
    """Command name -> its register function (or entry point, loaded on use): ours, then the plug-ins."""
    from asr.lm_cli import register_lm

    commands = {"transcribe": register_transcribe, "plot": register_plot, "lm": register_lm}
    for entry in sorted(entry_points(group="asr.commands"), key=lambda e: e.name):
        commands.setdefault(entry.name, entry)
    return commands


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `asr` parser. Only `command` (None: every command) gets its full subparser; the others are listed
    with their help, so `asr --help` and `asr transcribe ...` import only what they need."""
    from asr import __version__

    parser = argparse.ArgumentParser(prog="asr", description="Streaming speech recognition with an LSTM-CTC model: "
                                     "transcribe files, serve a Vosk-compatible websocket, train your own models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, register in _registrations().items():
        if name != command and name in COMMAND_HELP:
            subparsers.add_parser(name, help=COMMAND_HELP[name])
            continue
        if not callable(register):
            try:
                register = register.load()
            except ImportError as error:  # a broken optional part must not take the whole command down
                logging.getLogger("asr").warning("subcommand %r unavailable: %s", name, error)
                continue
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
