"""Pseudo-labels for untranscribed real speech: two Whisper teachers, a filter chosen on labelled speech, a corpus out.

    # 1. label: both teachers on every clip (resumable: clips already in OUT/labels/ are skipped; --jobs processes)
    python -m training.pseudo_label label --out data/pseudo --jobs 2 --suite data/real \\
        --labelled ../shared/data/real/commonvoice_cv13_delta ../shared/data/real/librispeech_train_clean_5 \\
        --common-voice cv13/dataset --audio resemblyzer/audio_data/librispeech_train-clean-100
    # 2. choose: the filter that keeps the most speech whose labels, on the labelled clips, are at most 5% wrong
    python -m training.pseudo_label choose --out data/pseudo --max-label-wer 0.05
    # 3. corpus: the unlabelled clips that pass it, as a LibriSpeech-layout subset (FLAC, teacher text)
    python -m training.pseudo_label corpus --out data/pseudo --real ../shared/data/real --suite data/real
    # flag: training utterances whose transcript both teachers contradict -> OUT/flagged.tsv (resumable)
    python -m training.pseudo_label flag --out data/pseudo --corpus data/real/train \\
        --speakers-of ../shared/data/real/speechocean762 ../shared/data/real/alphanumeric_numbers

Sources: --labelled DIR (LibriSpeech layout: --per-corpus clips of each, picked by a hash of the id, none of a
--suite dev or test speaker; their labels only measure the filter, they never enter the corpus), --common-voice DIR
(a Common Voice release folder: the clips/ that validated.tsv and invalidated.tsv do not list), --audio DIR (every
audio file below it; a LibriSpeech file name SPEAKER-CHAPTER-UTT names its reader).

The teachers are `training.teacher` models (default: whisper tiny.en, then base). The filter keeps a clip when the
second teacher's confidence is at least C and the two teachers' transcripts differ by at most A (word error rate of
one against the other); the label is the second teacher's. `choose` tries a grid of (C, A), measures the kept labels'
WER against the true transcripts of the labelled clips, and writes OUT/filter.json with the whole grid.

`corpus` leaves out clips of held-out speakers (the speakers of SUITE/dev/* and SUITE/test/*, by Common Voice client id
or LibriSpeech reader; an unvalidated Common Voice clip's speaker is that of the nearest clip number that a tsv lists,
within CV_SPEAKER_WINDOW: one person's clips get consecutive numbers) and clips whose label is a held-out sentence.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import jiwer

from asr.audio import AudioError, load_audio, write_flac
from training.evaluate import error_rates
from training.librispeech import AUDIO_SUFFIXES, Utterance, load_manifest, write_subset

log = logging.getLogger(__name__)

TEACHERS = ("tiny.en", "base")
PER_CORPUS = 150                 # labelled clips per corpus that measure the filter
CONFIDENCES = (0.0, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
AGREEMENTS = (0.0, 0.1, 0.2, 0.34, 1.0)     # teachers' mutual WER at most this (1.0: agreement not asked)
MAX_LABEL_WER = 0.05
MAX_SECONDS = 30.0               # Whisper's window: longer clips would be cut, so they are left out
CV_SPEAKER_WINDOW = 100          # clip numbers: 98% of one speaker's consecutive validated clips lie this close
SPEAKER_BASE = 800000            # pseudo-labelled speakers are numbered from here
UNLABELLED_AUDIO = AUDIO_SUFFIXES + (".mp3",)


@dataclass(frozen=True)
class Clip:
    key: str                  # source/name: unique, stable across runs
    path: str
    reference: str = ""       # the true transcript of a labelled clip, "" otherwise
    speaker: str = ""         # what the source says about who speaks ("cv:CLIENT", "librispeech:READER"), or ""


# ----------------------------------------------------------------------------------------------------------- sources

def _bucket(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 2**32


def suite_speakers(suite: Path | None) -> set[str]:
    """Speaker numbers of every utterance in SUITE/dev/* and SUITE/test/* (none without a suite)."""
    if suite is None:
        return set()
    return {u.speaker for split in ("dev", "test") for part in sorted((suite / split).glob("*"))
            if part.is_dir() for u in load_manifest(part)}


def labelled_clips(folder: Path, per_corpus: int, heldout: set[str]) -> list[Clip]:
    """`per_corpus` utterances of a LibriSpeech-layout corpus, picked by a hash of their ids, none of a held-out
    speaker (the filter is measured on the speakers it will label for training, never on a dev or test speaker)."""
    utterances = [u for u in load_manifest(folder) if u.speaker not in heldout]
    utterances = sorted(utterances, key=lambda u: _bucket(u.id))[:per_corpus]
    return [Clip(f"labelled/{folder.name}/{u.id}", u.path, u.text) for u in utterances]


def _read_tsv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _clip_number(name: str) -> int:
    match = re.search(r"(\d+)\.\w+$", name)
    return int(match[1]) if match else -1


class CommonVoiceSpeakers:
    """Client id of a Common Voice clip from the clips a release's tsv files list: its own line, else the nearest
    listed clip number within CV_SPEAKER_WINDOW (one person records a run of consecutive numbers)."""

    def __init__(self, rows: list[dict]):
        by_number = {_clip_number(r["path"]): r["client_id"] for r in rows if r.get("client_id")}
        self.numbers = sorted(by_number)
        self.clients = [by_number[n] for n in self.numbers]

    def __call__(self, name: str) -> str:
        number = _clip_number(name)
        i = bisect_left(self.numbers, number)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.numbers)]
        if not near:
            return ""
        j = min(near, key=lambda j: abs(self.numbers[j] - number))
        return self.clients[j] if abs(self.numbers[j] - number) <= CV_SPEAKER_WINDOW else ""


def common_voice_clips(folder: Path) -> list[Clip]:
    """The clips of a Common Voice release folder that no tsv has validated or invalidated."""
    clips_dir = folder / "clips"
    if not clips_dir.is_dir():
        raise SystemExit(f"--common-voice {folder}: no clips/ folder (give the release folder holding validated.tsv)")
    rows = _read_tsv(folder / "validated.tsv") + _read_tsv(folder / "invalidated.tsv")
    if not rows:
        raise SystemExit(f"--common-voice {folder}: no validated.tsv: cannot tell unvalidated clips from the others")
    listed = {r["path"] for r in rows}
    speakers = CommonVoiceSpeakers(rows)
    return [Clip(f"{folder.name}/{p.name}", str(p), "", f"cv:{client}" if (client := speakers(p.name)) else "")
            for p in sorted(clips_dir.iterdir()) if p.name not in listed and p.suffix in UNLABELLED_AUDIO]


def audio_clips(folder: Path) -> list[Clip]:
    if not folder.is_dir():
        raise SystemExit(f"--audio {folder}: no such directory")
    clips = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in UNLABELLED_AUDIO):
        reader = re.fullmatch(r"(\d+)-\d+-\d+", path.stem)
        clips.append(Clip(f"{folder.name}/{path.relative_to(folder)}", str(path), "",
                          f"librispeech:{reader[1]}" if reader else ""))
    return clips


# ---------------------------------------------------------------------------------------------------------- labelling

def _labels_dir(out: Path) -> Path:
    return out / "labels"


def read_labels(out: Path) -> dict[str, dict]:
    """key -> record, from every shard under OUT/labels (a line cut short by a crash is skipped)."""
    records = {}
    for shard in sorted(_labels_dir(out).glob("*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[record["key"]] = record
    return records


def _label_shard(shard: int, clips: list[Clip], out: Path, teachers: tuple[str, ...], parent: int) -> int:
    """One worker: every clip through every teacher, one JSON line per clip appended to its own shard file; it stops
    when its parent process is gone (killed without the chance to stop it)."""
    from training.teacher import Teacher

    loaded = [Teacher.load(name) for name in teachers]
    written = 0
    with open(_labels_dir(out) / f"shard{shard}.jsonl", "a", encoding="utf-8") as f:
        for clip in clips:
            if os.getppid() != parent:
                break
            try:
                audio = load_audio(clip.path)
            except AudioError as error:
                record = {"key": clip.key, "path": clip.path, "error": str(error)}
            else:
                seconds = len(audio) / 16000
                record = {"key": clip.key, "path": clip.path, "seconds": round(seconds, 3),
                          "reference": clip.reference, "speaker": clip.speaker}
                if seconds <= MAX_SECONDS:
                    record["teachers"] = {t.name: vars(t.transcribe(audio)) for t in loaded}
            f.write(json.dumps(record) + "\n")
            f.flush()
            written += 1
    return written


def label(clips: list[Clip], out: Path, teachers: tuple[str, ...], jobs: int) -> int:
    from training.teacher import Teacher, TeacherError

    for name in teachers:  # fail here, with the install line, not in a worker
        try:
            Teacher.load(name)
        except TeacherError as error:
            raise SystemExit(f"pseudo_label: {error}") from None
    _labels_dir(out).mkdir(parents=True, exist_ok=True)
    done = read_labels(out)
    todo = [c for c in clips if c.key not in done]
    log.info("%d clips, %d labelled already, %d to label with %s on %d processes", len(clips), len(clips) - len(todo),
             len(todo), " + ".join(teachers), jobs)
    if not todo:
        return 0
    existing = len(list(_labels_dir(out).glob("shard*.jsonl")))
    shards = [(existing + i, todo[i::jobs], out, teachers, os.getpid()) for i in range(jobs)]
    # SIGTERM leaves the block like Ctrl-C does, and leaving it (done, an error, a stop) terminates the workers
    stop = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            return sum(pool.starmap(_label_shard, shards))
    finally:
        signal.signal(signal.SIGTERM, stop)


# ------------------------------------------------------------------------------------------------------------- filter

@dataclass(frozen=True)
class Filter:
    confidence: float      # the second teacher's, at least
    agreement: float       # the teachers' mutual WER, at most
    first: str = TEACHERS[0]
    second: str = TEACHERS[1]

    def label(self, record: dict) -> str | None:
        """The kept label of a record, or None when the filter drops it."""
        teachers = record.get("teachers")
        if not teachers or self.first not in teachers or self.second not in teachers:
            return None
        first, second = teachers[self.first]["text"], teachers[self.second]["text"]
        if not second or not first or teachers[self.second]["confidence"] < self.confidence:
            return None
        return second if mutual_wer(first, second) <= self.agreement else None


def mutual_wer(a: str, b: str) -> float:
    return 0.0 if a == b else jiwer.wer(b, a)


def grid(records: list[dict], teachers: tuple[str, str]) -> list[dict]:
    """Every (confidence, agreement) of the grid on the labelled records: the kept share and the kept labels' WER."""
    total = sum(r["seconds"] for r in records)
    rows = []
    for confidence in CONFIDENCES:
        for agreement in AGREEMENTS:
            rule = Filter(confidence, agreement, *teachers)
            kept = [(r, text) for r in records if (text := rule.label(r)) is not None]
            scores = error_rates([r["reference"] for r, _ in kept], [t for _, t in kept]) if kept else {"wer": 1.0}
            rows.append({"confidence": confidence, "agreement": agreement, "kept_clips": len(kept),
                         "kept_share": round(sum(r["seconds"] for r, _ in kept) / total, 4),
                         "label_wer": round(scores["wer"], 4)})
    return rows


def teacher_wer(records: list[dict], teacher: str) -> float:
    scored = [r for r in records if teacher in r.get("teachers", {})]
    return error_rates([r["reference"] for r in scored], [r["teachers"][teacher]["text"] for r in scored])["wer"]


def choose(out: Path, max_label_wer: float, teachers: tuple[str, str]) -> dict:
    records = [r for r in read_labels(out).values()
               if r.get("reference") and "teachers" in r and r["key"].startswith("labelled/")]
    if not records:
        raise SystemExit(f"choose: no labelled clips in {_labels_dir(out)}: run `label --labelled DIR` first")
    rows = grid(records, teachers)
    allowed = [r for r in rows if r["label_wer"] <= max_label_wer and r["kept_clips"]]
    if not allowed:
        raise SystemExit(f"choose: no filter of the grid keeps labels at most {max_label_wer:.0%} wrong")
    best = max(allowed, key=lambda r: (r["kept_share"], -r["label_wer"]))
    by_corpus = {}
    for corpus in sorted({r["key"].split("/")[1] for r in records}):
        part = [r for r in records if r["key"].split("/")[1] == corpus]
        rule = Filter(best["confidence"], best["agreement"], *teachers)
        kept = [(r, t) for r in part if (t := rule.label(r)) is not None]
        by_corpus[corpus] = {"clips": len(part), **{name: round(teacher_wer(part, name), 4) for name in teachers},
                             "kept_clips": len(kept), "kept_label_wer": round(error_rates(
                                 [r["reference"] for r, _ in kept], [t for _, t in kept])["wer"], 4) if kept else None}
    chosen = {"teachers": list(teachers), "confidence": best["confidence"], "agreement": best["agreement"],
              "max_label_wer": max_label_wer, "labelled_clips": len(records), "kept_share": best["kept_share"],
              "label_wer": best["label_wer"], "by_corpus": by_corpus, "grid": rows}
    (out / "filter.json").write_text(json.dumps(chosen, indent=1))
    return chosen


# ------------------------------------------------------------------------------------------------------------- corpus

def heldout_speakers(real: Path, suite: Path) -> set[str]:
    """"cv:CLIENT" and "librispeech:READER" of every speaker in SUITE's dev and test parts."""
    numbers = suite_speakers(suite)
    heldout = set()
    for speakers_tsv in sorted(real.glob("*/SPEAKERS.tsv")):
        for row in _read_tsv(speakers_tsv):
            number = row.get("speaker") or row.get("speaker_id")
            original = row.get("client_id") or row.get("original_speaker_id") or ""
            if number in numbers and original:
                kind = "librispeech" if "librispeech" in speakers_tsv.parent.name else "cv"
                heldout.add(f"{kind}:{original}")
    return heldout


def write_corpus(out: Path, real: Path | None, suite: Path | None) -> list[Utterance]:
    chosen_file = out / "filter.json"
    if not chosen_file.exists():
        raise SystemExit(f"corpus: {chosen_file} is missing: run `choose` first")
    chosen = json.loads(chosen_file.read_text())
    rule = Filter(chosen["confidence"], chosen["agreement"], *chosen["teachers"])
    heldout = heldout_speakers(real, suite) if real and suite else set()
    heldout_text = set()
    if suite and (suite / "heldout_sentences.txt").exists():
        heldout_text = set((suite / "heldout_sentences.txt").read_text(encoding="utf-8").splitlines())
    records = sorted((r for r in read_labels(out).values() if not r.get("reference")), key=lambda r: r["key"])
    speaker_numbers: dict[str, int] = {}
    per_speaker: dict[int, int] = {}
    utterances, dropped = [], {"filter": 0, "held-out speaker": 0, "held-out sentence": 0, "unreadable": 0}
    for record in records:
        text = rule.label(record)
        reason = ("unreadable" if "error" in record else "filter" if text is None
                  else "held-out speaker" if record["speaker"] in heldout
                  else "held-out sentence" if text in heldout_text else None)
        if reason:
            dropped[reason] += 1
            continue
        # an unknown speaker gets one of their own: their clips are not grouped, which costs nothing in training
        who = record["speaker"] or record["key"]
        number = speaker_numbers.setdefault(who, SPEAKER_BASE + len(speaker_numbers))
        flac = out / "audio" / (re.sub(r"[^\w.-]+", "_", record["key"]) + ".flac")
        if not flac.exists():
            flac.parent.mkdir(parents=True, exist_ok=True)
            write_flac(flac, load_audio(record["path"]))
        index = per_speaker[number] = per_speaker.get(number, -1) + 1
        utterances.append(Utterance(f"{number}-1-{index:04d}", str(flac), record["seconds"], text, str(number)))
    write_subset(out / "train", utterances)
    hours = sum(u.duration for u in utterances) / 3600
    log.info("pseudo-labelled corpus: %d utterances, %.2f h, %d speakers in %s; left out: %s", len(utterances), hours,
             len(speaker_numbers), out / "train", ", ".join(f"{v} {k}" for k, v in dropped.items()))
    return utterances


# --------------------------------------------------------------------------------------------------------------- flag

def flag_clips(folder: Path, speakers_of: list[Path] = ()) -> list[Clip]:
    """The utterances of a training corpus (LibriSpeech layout) to be heard by the teachers: every one, or with
    `speakers_of` those whose speaker has a folder in one of these corpora (the shared source a suspect came from:
    speechocean762's learners, the phone numbers)."""
    utterances = load_manifest(folder)
    if speakers_of:
        speakers = {d.name for corpus in speakers_of for d in corpus.iterdir() if d.is_dir()}
        utterances = [u for u in utterances if u.speaker in speakers]
    return [Clip(f"flag/{folder.name}/{u.id}", u.path, u.text) for u in utterances]


def flag(out: Path, corpora: list[Path], agreement: float, min_wer: float, teachers: tuple[str, str]) -> list[dict]:
    """The utterances of `corpora` whose transcript the teachers contradict: both agree with each other (mutual
    WER at most `agreement`) and the second one's text differs from the transcript by a WER of at least `min_wer`.
    Writes OUT/flagged.tsv (id, corpus, WER, transcript, teacher) and returns its rows."""
    names = {folder.name for folder in corpora}
    records = [r for r in read_labels(out).values() if r["key"].startswith("flag/") and "teachers" in r
               and r["key"].split("/")[1] in names]
    rows, totals = [], {name: [0, 0, 0.0] for name in sorted(names)}   # utterances, flagged, flagged hours
    for record in records:
        corpus, utterance = record["key"].split("/")[1:]
        totals[corpus][0] += 1
        first, second = (record["teachers"][t]["text"] for t in teachers)
        if not second or mutual_wer(first, second) > agreement:
            continue
        wer = error_rates([record["reference"]], [second])["wer"]
        if wer >= min_wer:
            rows.append({"id": utterance, "corpus": corpus, "wer": round(wer, 3), "transcript": record["reference"],
                         "teacher": second})
            totals[corpus][1] += 1
            totals[corpus][2] += record["seconds"] / 3600
    rows.sort(key=lambda r: (r["corpus"], r["id"]))
    with open(out / "flagged.tsv", "w", encoding="utf-8") as f:
        f.write("id\tcorpus\twer\ttranscript\tteacher\n")
        f.writelines(f"{r['id']}\t{r['corpus']}\t{r['wer']}\t{r['transcript']}\t{r['teacher']}\n" for r in rows)
    for corpus, (heard, flagged, hours) in totals.items():
        log.info("%s: %d of %d utterances flagged (%.2f h)", corpus, flagged, heard, hours)
    return rows


# --------------------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pseudo_label", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("label", help="run the teachers on clips (resumable)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--labelled", type=Path, nargs="*", default=[], metavar="DIR")
    p.add_argument("--per-corpus", type=int, default=PER_CORPUS, help=f"labelled clips per corpus ({PER_CORPUS})")
    p.add_argument("--suite", type=Path, help="the dev suite of training.real_speech: its speakers' labelled clips "
                                              "are left out")
    p.add_argument("--common-voice", type=Path, nargs="*", default=[], metavar="DIR")
    p.add_argument("--audio", type=Path, nargs="*", default=[], metavar="DIR")
    p.add_argument("--teachers", nargs=2, default=TEACHERS, metavar=("FIRST", "SECOND"),
                   help="two faster-whisper models: names of training.teacher, directories or hub names")
    p.add_argument("--jobs", type=int, default=2, help="processes, one thread each (default 2)")
    p.add_argument("--limit", type=int, help="label at most this many unlabelled clips (a trial run)")
    p = commands.add_parser("choose", help="the filter that keeps the most speech under --max-label-wer")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-label-wer", type=float, default=MAX_LABEL_WER)
    p.add_argument("--teachers", nargs=2, default=TEACHERS, metavar=("FIRST", "SECOND"))
    p = commands.add_parser("corpus", help="the clips that pass the filter as a LibriSpeech-layout subset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--real", type=Path, help="the shared corpora (for held-out speakers' ids)")
    p.add_argument("--suite", type=Path, help="the dev suite of training.real_speech (held-out speakers, sentences)")
    p = commands.add_parser("flag", help="training utterances whose transcript both teachers contradict")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--corpus", type=Path, nargs="+", required=True, metavar="DIR",
                   help="training corpora (LibriSpeech layout): each utterance is heard once (resumable)")
    p.add_argument("--speakers-of", type=Path, nargs="+", default=[], metavar="DIR",
                   help="hear only the speakers that have a folder in these corpora (e.g. the shared "
                        "speechocean762 and alphanumeric_numbers)")
    p.add_argument("--agreement", type=float, default=0.1, help="the teachers' mutual WER at most (0.1)")
    p.add_argument("--min-wer", type=float, default=0.5,
                   help="flag when the teacher's text is at least this WER from the transcript (0.5)")
    p.add_argument("--teachers", nargs=2, default=TEACHERS, metavar=("FIRST", "SECOND"))
    p.add_argument("--jobs", type=int, default=2, help="processes, one thread each (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.command == "label":
        heldout = suite_speakers(args.suite)
        clips = [c for folder in args.labelled for c in labelled_clips(folder, args.per_corpus, heldout)]
        unlabelled = ([c for folder in args.audio for c in audio_clips(folder)]
                      + [c for folder in args.common_voice for c in common_voice_clips(folder)])
        clips += unlabelled[:args.limit] if args.limit is not None else unlabelled
        if not clips:
            parser.error("no clips: give --labelled, --common-voice or --audio")
        log.info("labelled %d clips now", label(clips, args.out, tuple(args.teachers), args.jobs))
    elif args.command == "choose":
        chosen = choose(args.out, args.max_label_wer, tuple(args.teachers))
        print(json.dumps({k: v for k, v in chosen.items() if k != "grid"}, indent=1))
    elif args.command == "flag":
        for folder in args.corpus + args.speakers_of:
            if not folder.is_dir():
                parser.error(f"{folder}: not a directory")
        clips = [c for folder in args.corpus for c in flag_clips(folder, args.speakers_of)]
        log.info("labelled %d clips now", label(clips, args.out, tuple(args.teachers), args.jobs))
        rows = flag(args.out, args.corpus, args.agreement, args.min_wer, tuple(args.teachers))
        print(f"{len(rows)} utterances flagged: {args.out / 'flagged.tsv'} (asr train --exclude-utterances)")
    else:
        write_corpus(args.out, args.real, args.suite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
