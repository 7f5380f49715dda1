"""Reader for the official LibriSpeech layout and a cached manifest of its utterances.

    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac
    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt   ("SPEAKER-CHAPTER-UTT TRANSCRIPT" per line)

A manifest lists (id, path, duration, text) per utterance. It is built once per subset directory and cached as JSON
lines keyed by the directory's path and the newest transcript file's time, so re-reading 960 hours takes a second.
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
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
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
    key = hashlib.sha1(f"{subset_dir.resolve()}|{len(files)}|{stamp}".encode()).hexdigest()[:16]
    return CACHE_DIR / f"{subset_dir.name}-{key}.jsonl"


def load_manifest(subset_dir: str | os.PathLike, use_cache: bool = True) -> list[Utterance]:
    """All utterances of one subset directory with durations, from the cache when it is current."""
    subset_dir = Path(subset_dir)
    items = read_transcripts(subset_dir)
    cache = _cache_path(subset_dir)
    if use_cache and cache.exists():
        return [Utterance(**json.loads(line)) for line in cache.read_text().splitlines()]

    def duration(item):
        utt_id, path, text = item
        try:
            info = sf.info(str(path))
        except Exception as error:
            log.warning("%s: unreadable (%s), skipped", path, error)
            return None
        return Utterance(utt_id, str(path), info.frames / info.samplerate, text, utt_id.split("-")[0])

    with ThreadPoolExecutor(8) as pool:
        utterances = [u for u in pool.map(duration, items) if u is not None]
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # several processes may build the same manifest at once
        tmp.write_text("".join(json.dumps(asdict(u)) + "\n" for u in utterances))
        os.replace(tmp, cache)
    return utterances


def load_manifests(subset_dirs: list[str | os.PathLike]) -> list[Utterance]:
    """Utterances of several subset directories (e.g. train-clean-100 and train-clean-360), in order."""
    return [u for d in subset_dirs for u in load_manifest(d)]


def write_subset(subset_dir: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write `utterances` as a LibriSpeech-format subset: audio files linked (not copied) under their ids, one
    trans.txt per speaker and chapter. Replaces whatever `subset_dir` held, so writing is idempotent."""
    subset_dir = Path(subset_dir)
    if subset_dir.exists():
        shutil.rmtree(subset_dir)
    chapters: dict[Path, list[str]] = {}
    for utt in utterances:
        speaker, chapter_id, _ = utt.id.split("-")
        folder = subset_dir / speaker / chapter_id
        folder.mkdir(parents=True, exist_ok=True)
        source = Path(utt.path).resolve()
        (folder / f"{utt.id}{source.suffix}").symlink_to(source)
        chapters.setdefault(folder, []).append(f"{utt.id} {utt.text}\n")
    for folder, lines in chapters.items():
        speaker, chapter_id = folder.parent.name, folder.name
        (folder / f"{speaker}-{chapter_id}.trans.txt").write_text("".join(lines), encoding="utf-8")
