"""Word error rates on every part of a dev suite, for each model and for pocketsphinx on the same files.

    python -m training.dev_suite --suite data/real --models stream offline --pocketsphinx   # greedy and with the LM
    python -m training.dev_suite --suite data/real --models stream offline --pocketsphinx --whisper tiny.en base
    python -m training.dev_suite --suite data/real --models stream --lm none                # greedy only
    python -m training.dev_suite --suite data/real --extra data/corpus/test --models runs/stream/best.pt --json out.json
    python -m training.dev_suite --suite data/real --models stream offline --precision int8 --threads 1
    python -m training.dev_suite --suite data/real --split dev --models stream runs/stream-join/best.pt  # choose on dev

Parts are the LibriSpeech-format directories SUITE/dev/* and SUITE/test/* (see training.real_speech) plus any --extra
directory; `--split dev` scores the dev parts alone, for choosing between models or settings (the test parts are
for reporting the choice). The table ends with each split's mean WER over its parts, each part counting the same.
Every model transcribes every file the way `asr transcribe` does (training.evaluate.evaluate_files), once with
greedy decoding and once with the beam search over the LM (its default settings unless given).
pocketsphinx (`pip install pocketsphinx`: its wheel ships an en-us model) is the reference to beat, Whisper
(--whisper, training.teacher) the peer a user would pick instead; their transcripts are cached per peer and audio file
(they never change), so each file costs their time once.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from asr.audio import AudioError, load_audio
from asr.cli import PRECISION_HELP, precision_argument, torch_threads
from asr.lm_cli import add_decoding_arguments, decoding_from_args
from asr.lm_decoding import GREEDY, Decoding
from asr.transcribe import BLOCK_SECONDS
from training.evaluate import error_rates, evaluate_files
from training.librispeech import CACHE_DIR, Utterance, load_manifest

log = logging.getLogger(__name__)


SPLITS = ("dev", "test")


def suite_parts(suite: Path | None, extra: list[Path], splits: tuple[str, ...] = SPLITS) -> dict[str, Path]:
    parts = {}
    if suite is not None:
        for split in splits:
            for folder in sorted((suite / split).glob("*")):
                if folder.is_dir():
                    parts[f"{split}/{folder.name}"] = folder
    for folder in extra:
        parts[str(folder)] = folder
    if not parts:
        raise SystemExit("no dev-suite parts: give --suite (made by training.real_speech) or --extra DIR")
    return parts


PEER_CACHE = CACHE_DIR.parent / "peers"


@functools.lru_cache(maxsize=None)
def audio_key(path: str) -> str:
    """A file's identity for the peers' cache: a hash of its bytes, so a copy, a link or the same corpus synced
    again (new mtimes) keeps its entry, and a changed file gets a new one. Read once per run, whatever the peers."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def pocketsphinx_recognizer():
    """audio (samples,) float32 16 kHz -> pocketsphinx's en-us hypothesis, upper-cased."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise SystemExit("--pocketsphinx: pip install pocketsphinx") from None
    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def recognize(audio):
        decoder.start_utt()
        decoder.process_raw((audio.clip(-1, 1) * 32767).astype("int16").tobytes(), full_utt=True)
        decoder.end_utt()
        return decoder.hyp().hypstr.upper() if decoder.hyp() else ""
    return recognize


def teacher_recognizer(name: str):
    """audio -> a Whisper teacher's normalised transcript (training.teacher)."""
    from training.teacher import Teacher, TeacherError
    try:
        teacher = Teacher.load(name)
    except TeacherError as error:
        raise SystemExit(f"--whisper {name}: {error}") from None
    return lambda audio: teacher.transcribe(audio).text


def peer_transcripts(peer: str, make_recognizer, utterances: list[Utterance]) -> dict[str, str]:
    """utterance id -> a peer recognizer's hypothesis. Cached per peer and audio file (a peer's output never
    changes), so a part that shares files with another (dev/so762-unseen with dev/so762) costs nothing more."""
    cache_file = PEER_CACHE / f"{peer}.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    cached, recognize, hypotheses = len(cache), None, {}
    for utt in utterances:
        try:
            key = audio_key(utt.path)
            if key not in cache:
                recognize = recognize or make_recognizer()
                cache[key] = recognize(load_audio(utt.path))
        except (AudioError, OSError) as error:
            log.error("%s", error)
            continue
        hypotheses[utt.id] = cache[key]
    if len(cache) > cached:
        _save_cache(cache_file, cache)
    return hypotheses


def _save_cache(cache_file: Path, cache: dict[str, str]) -> None:
    """Merge into what is on disk now (another run may have added to it meanwhile) and replace it atomically."""
    on_disk = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**on_disk, **cache}))
    os.replace(tmp, cache_file)


def peers(pocketsphinx: bool, whisper: list[str]) -> dict[str, object]:
    """name -> a function making that peer's recognizer (made only when a file is not cached)."""
    chosen = {"pocketsphinx": pocketsphinx_recognizer} if pocketsphinx else {}
    for name in whisper:
        chosen[f"whisper {name}"] = lambda name=name: teacher_recognizer(name)
    return chosen


def evaluate_suite(parts: dict[str, Path], models: list[str], pocketsphinx: bool,
                   decodings: list[Decoding] = (GREEDY, Decoding()), whisper: list[str] = (),
                   final_model: str | None = None, precision: str = "float32",
                   block_seconds: float = BLOCK_SECONDS) -> list[dict]:
    """Rows of (part, model, WER, CER, ...). With `final_model`, each streaming model is scored a second time with
    two-pass finals (`asr transcribe --final-model`), labelled "MODEL 2-pass"; int8 models are labelled "MODEL int8".
    Streaming models hear each file in blocks of `block_seconds` (0.2: as a server's client sends it)."""
    from asr.checkpoint import load_model
    from asr.second_pass import SecondPass

    suffix = "" if precision == "float32" else f" {precision}"
    loaded = {name + suffix: load_model(name, precision=precision) for name in models}
    final = load_model(final_model, precision=precision) if final_model else None
    rows = []
    for part, folder in parts.items():
        utterances = load_manifest(folder)
        hours = sum(u.duration for u in utterances) / 3600
        for peer, make_recognizer in peers(pocketsphinx, whisper).items():
            hypotheses = peer_transcripts(peer.replace(" ", "-"), make_recognizer, utterances)
            scored = [u for u in utterances if u.id in hypotheses]
            scores = error_rates([u.text for u in scored], [hypotheses[u.id] for u in scored])
            rows.append({"part": part, "model": peer, "hours": round(hours, 3), **scores})
            log.info("%s %s WER %.1f%%", part, peer, 100 * scores["wer"])
        for name, model in loaded.items():
            passes = [None] + ([final] if final is not None and model.streaming else [])
            for second in passes:
                for decoding in decodings:
                    label = name + (" 2-pass" if second is not None else "") + ("" if decoding.lm is None else " + LM")
                    second_pass = SecondPass(second, decoding) if second is not None else None
                    scores = evaluate_files(model, utterances, progress=False, decoding=decoding,
                                            second_pass=second_pass, block_seconds=block_seconds)
                    rows.append({"part": part, "model": label, "decoding": decoding.describe(),
                                 "hours": round(hours, 3), **scores})
                    log.info("%s %s WER %.1f%%", part, label, 100 * scores["wer"])
    return rows


def markdown_table(rows: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    parts = list(dict.fromkeys(r["part"] for r in rows))
    by = {(r["part"], r["model"]): r for r in rows}
    lines = ["| part | utterances | hours | " + " | ".join(f"{m} WER / CER" for m in models) + " |",
             "|---|---:|---:|" + "---|" * len(models)]
    for part in parts:
        first = by[(part, models[0])]
        cells = [f"{100 * by[(part, m)]['wer']:.1f}% / {100 * by[(part, m)]['cer']:.1f}%" for m in models]
        lines.append(f"| {part} | {first['utterances']} | {first['hours']:.2f} | " + " | ".join(cells) + " |")
    for split in SPLITS:
        chosen = [p for p in parts if p.startswith(split + "/")]
        if chosen:
            means = [sum(by[(p, m)]["wer"] for p in chosen) / len(chosen) for m in models]
            label = f"{split} mean of {len(chosen)} part" + ("s" if len(chosen) > 1 else "")
            lines.append(f"| {label} | | | " + " | ".join(f"{100 * w:.1f}%" for w in means) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dev_suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, help="the output folder of training.real_speech")
    parser.add_argument("--split", choices=SPLITS, help="only the suite's dev parts (to choose between models or "
                        "settings) or its test parts (to report the choice); both by default")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], metavar="DIR", help="more parts to score")
    parser.add_argument("--models", nargs="*", default=["stream", "offline"], help="shipped names or checkpoints")
    parser.add_argument("--pocketsphinx", action="store_true", help="score pocketsphinx's en-us model as well")
    parser.add_argument("--whisper", nargs="*", default=[], metavar="MODEL",
                        help="score Whisper models as well (tiny.en, base: see training.teacher)")
    parser.add_argument("--final-model", metavar="MODEL",
                        help="score the streaming models with two-pass finals from this model as well (offline)")
    parser.add_argument("--precision", type=precision_argument, default="float32", help=PRECISION_HELP)
    parser.add_argument("--block-seconds", type=float, default=BLOCK_SECONDS,
                        help="audio a streaming model hears at a time (default %(default)s, as `asr transcribe`; 0.2 "
                        "as a server's client sends it: the same words in float32, not quite in int8)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 beside other busy processes: more threads "
                        "than free cores slow torch down several times)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    add_decoding_arguments(parser)
    args = parser.parse_args(argv)
    if not args.block_seconds > 0:
        parser.error(f"--block-seconds {args.block_seconds} must be positive")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch_threads(args.threads)
    decoding = decoding_from_args(args)
    decodings = [GREEDY] if decoding.lm is None else [GREEDY, decoding]
    parts = suite_parts(args.suite, args.extra, (args.split,) if args.split else SPLITS)
    rows = evaluate_suite(parts, args.models, args.pocketsphinx, decodings, args.whisper, args.final_model,
                          args.precision, args.block_seconds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
