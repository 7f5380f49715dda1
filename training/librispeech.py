"""Reader for the official LibriSpeech layout and a cached manifest of its utterances.

    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac
    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt   ("SPEAKER-CHAPTER-UTT TRANSCRIPT" per line)

A manifest lists (id, path, duration, text) per utterance. It is built once per subset directory and cached as JSON
lines keyed by the directory's path and the newest transcript file's time, so re-reading 960 hours takes a second. Every
audio file is decoded in full when the manifest is built: damaged files are named, counted and left out.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf

from asr.tokenizer import normalize_text

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".flac", ".wav", ".opus", ".ogg")  # anything soundfile reads
MAX_BAD_FRACTION = 0.01  # of a subset's audio files that may be damaged before reading it refuses
CACHE_DIR = Path(os.environ.get("ASR_CACHE_DIR", Path.home() / ".cache" / "lstm-asr")) / "manifests"


@dataclass(frozen=True)
class Utterance:
    id: str
    path: str
    duration: float  # seconds
    text: str  # normalised transcript
    speaker: str


class CorpusError(ValueError):
    """A directory that is not a LibriSpeech-format corpus, or a transcript line that cannot be read."""


def _transcript_files(subset_dir: Path) -> list[Path]:
    return sorted(subset_dir.glob("*/*/*.trans.txt"))


def read_transcripts(subset_dir: Path) -> list[tuple[str, Path, str]]:
    """(utterance id, audio path, normalised text) for every line of every trans.txt under `subset_dir`."""
    subset_dir = Path(subset_dir)
    if not subset_dir.is_dir():
        raise CorpusError(f"{subset_dir}: no such directory")
    files = _transcript_files(subset_dir)
    if not files:
        raise CorpusError(f"{subset_dir}: no SPEAKER/CHAPTER/*.trans.txt files (is this a LibriSpeech subset directory?)")
    items = []
    for trans in files:
        for number, raw in enumerate(trans.read_bytes().splitlines(), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise CorpusError(f"{trans}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                                  f"{error.start + 1}); re-save the transcript as UTF-8") from None
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = next((trans.parent / f"{utt_id}{s}" for s in AUDIO_SUFFIXES if (trans.parent / f"{utt_id}{s}").exists()), None)
            if audio is None:
                log.warning("%s:%d: no audio file for %s, skipped", trans, number, utt_id)
                continue
            items.append((utt_id, audio, normalize_text(text)))
    return items


def _cache_path(subset_dir: Path) -> Path:
    files = _transcript_files(subset_dir)
    stamp = max((f.stat().st_mtime_ns for f in files), default=0)
    key = hashlib.sha1(f"v2|{subset_dir.resolve()}|{len(files)}|{stamp}".encode()).hexdigest()[:16]
    return CACHE_DIR / f"{subset_dir.name}-{key}.jsonl"


def check_audio(path: Path) -> tuple[float, str]:
    """Decode the whole file: (seconds, "") when it is sound, (0, cause) when it fails to decode or decodes to a
    length other than its header's (a truncated or corrupted file)."""
    try:
        info = sf.info(str(path))
        samples = 0
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 16, dtype="float32"):
                samples += len(block)
    except Exception as error:
        return 0.0, f"cannot decode ({str(error).strip() or type(error).__name__})"
    if info.frames <= 0:
        return 0.0, "holds no audio samples"
    if samples != info.frames:
        return 0.0, f"decodes to {samples} of the {info.frames} samples its header announces (truncated or corrupted)"
    return info.frames / info.samplerate, ""


def load_manifest(subset_dir: str | os.PathLike, use_cache: bool = True,
                  max_bad_fraction: float = MAX_BAD_FRACTION) -> list[Utterance]:
    """All sound utterances of one subset directory with durations, from the cache when it is current.

    Every audio file is decoded in full once, when the manifest is built; files that fail (see `check_audio`) are
    named with their cause, counted and left out, and the cache remembers the verdict. More than
    `max_bad_fraction` of bad files is a CorpusError: something is wrong with the copy, not with a file or two.
    """
    subset_dir = Path(subset_dir)
    items = read_transcripts(subset_dir)
    cache = _cache_path(subset_dir)
    if use_cache and cache.exists():
        records = [json.loads(line) for line in cache.read_text().splitlines()]
    else:
        def check(item):
            utt_id, path, text = item
            seconds, cause = check_audio(path)
            if cause:
                return {"rejected": str(path), "cause": cause}
            return asdict(Utterance(utt_id, str(path), seconds, text, utt_id.split("-")[0]))

        with ThreadPoolExecutor(4) as pool:
            records = list(pool.map(check, items))
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # several processes may build the same manifest at once
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
            os.replace(tmp, cache)
    rejected = [r for r in records if "rejected" in r]
    for record in rejected:
        log.warning("%s: %s; left out", record["rejected"], record["cause"])
    if rejected:
        log.warning("%s: %d of %d audio files left out as damaged", subset_dir, len(rejected), len(records))
    if records and len(rejected) > max_bad_fraction * len(records):
        raise CorpusError(f"{subset_dir}: {len(rejected)} of {len(records)} audio files are damaged (more than "
                          f"{max_bad_fraction:.0%}); check the copy of the corpus (the files are named above)")
    return [Utterance(**r) for r in records if "rejected" not in r]


def load_manifests(subset_dirs: list[str | os.PathLike]) -> list[Utterance]:
    """Utterances of several subset directories (e.g. train-clean-100 and train-clean-360), in order."""
    return [u for d in subset_dirs for u in load_manifest(d)]


def write_subset(subset_dir: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write `utterances` as a LibriSpeech-format subset: audio files linked (not copied) under their ids, one
    trans.txt per speaker and chapter. Replaces whatever `subset_dir` held, so writing is idempotent; the new subset
    is built beside it and swapped in, so a training run reading the old one meanwhile keeps finding its files."""
    final_dir = Path(subset_dir)
    new_dir = final_dir.with_name(final_dir.name + ".new")
    shutil.rmtree(new_dir, ignore_errors=True)
    chapters: dict[Path, list[str]] = {}
    for utt in utterances:
        speaker, chapter_id, _ = utt.id.split("-")
        folder = new_dir / speaker / chapter_id
        folder.mkdir(parents=True, exist_ok=True)
        source = Path(utt.path).resolve()
        (folder / f"{utt.id}{source.suffix}").symlink_to(source)
        chapters.setdefault(folder, []).append(f"{utt.id} {utt.text}\n")
    for folder, lines in chapters.items():
        speaker, chapter_id = folder.parent.name, folder.name
        (folder / f"{speaker}-{chapter_id}.trans.txt").write_text("".join(lines), encoding="utf-8")
    new_dir.mkdir(parents=True, exist_ok=True)  # an empty subset is still a directory
    old_dir = final_dir.with_name(final_dir.name + ".old")
    shutil.rmtree(old_dir, ignore_errors=True)
    if final_dir.exists():
        final_dir.rename(old_dir)
    new_dir.rename(final_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
