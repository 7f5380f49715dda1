"""`asr synth`: speak English sentences with offline TTS voices into a LibriSpeech-format corpus.

    OUT_DIR/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-0000.flac       16 kHz mono 16-bit FLAC
    OUT_DIR/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt       "SPEAKER-CHAPTER-0000 TRANSCRIPT" per line
    OUT_DIR/SUBSET.synth.tsv                                       utterance, seconds, voice and augmentation

Every voice configuration is a speaker (`training.voices`); the chapter number is derived from the subset name and
the seed, so runs with different seeds add chapters instead of overwriting each other. The same seed gives the same
files with the same transcripts and, for espeak, flite and hibari, the same audio (piper's noise is not seedable;
pico's output can differ in scattered samples at about -80 dB).
"""
from __future__ import annotations

import itertools
import multiprocessing
import sys
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE
from training import texts
from training.augment import (
    Augmentation,
    apply_augmentation,
    draw_augmentation,
)
from training.voices import (
    ENGINES,
    TTS_PITCH_ENGINES,
    Voice,
    synthesize,
)

PAD_RANGE_S = (0.1, 0.3)          # silence kept before and after the trimmed speech
TRIM_TOP_DB = 50                  # what counts as silence, below the loudest frame (flite hisses at -60 dB)
PEAK_DBFS_RANGE = (-9.0, -1.0)    # each utterance is scaled to a random peak level
DITHER = 1e-4                     # about 3 LSB of 16-bit noise floor, so no stretch is digital silence
SECONDS_PER_WORD = 0.4            # a rough length, for --dry-run with --hours


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: everything needed to render it in any process, in any order."""

    utt_id: str          # SPEAKER-CHAPTER-NNNN
    text: str            # normalised transcript; the voice is given exactly this text (lower-cased)
    voice: Voice
    augmentation: Augmentation
    seed: int

    def path(self, subset_dir: Path) -> Path:
        speaker, chapter, _ = self.utt_id.split("-")
        return subset_dir / speaker / chapter / f"{self.utt_id}.flac"


def chapter_id(subset: str, seed: int) -> int:
    """A six-digit chapter number, the same for the same subset name and seed."""
    return 100000 + zlib.crc32(f"{subset}:{seed}".encode()) % 900000


def parse_engine_weights(text: str | None, engines) -> dict[str, float]:
    """"espeak=1,piper=2" -> weights for `engines` (unlisted engines get 1)."""
    weights = {e: 1.0 for e in engines}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        if name not in ENGINES:
            raise ValueError(f"--engine-weights: unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        if name in weights:
            weights[name] = float(value)
    return weights


def _shuffled_cycle(items: list, seed):
    """items in a shuffled order, again and again, each round shuffled anew."""
    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(items)):
            yield items[i]


def plan_utterances(sentences: list[str], voices: list[Voice], subset: str, seed: int, engine_weights=None,
                    augment=(), augment_probability: float = 0.5):
    """Endless deterministic plan: sentence i goes to a voice of an engine drawn by `engine_weights` (default
    equal), cycling through that engine's voices in a shuffled order so speakers get similar amounts."""
    by_engine: dict[str, list[Voice]] = defaultdict(list)
    for v in sorted(voices, key=lambda v: v.id):
        by_engine[v.engine].append(v)
    engines = [e for e in ENGINES if e in by_engine]
    weights = np.array([(engine_weights or {}).get(e, 1.0) for e in engines], dtype=np.float64)
    if not len(engines) or weights.sum() <= 0:
        raise ValueError("no voices to speak with (check --engines, --engine-weights and --voices)")
    rng = np.random.default_rng([seed, 1])
    cycles = {e: _shuffled_cycle(by_engine[e], [seed, 2, ENGINES.index(e)]) for e in engines}
    chapter = chapter_id(subset, seed)
    counts: dict[int, int] = defaultdict(int)
    for index, text in enumerate(texts.iter_sentences(sentences, seed)):
        voice = next(cycles[engines[rng.choice(len(engines), p=weights / weights.sum())]])
        aug = draw_augmentation(np.random.default_rng([seed, 3, index]), augment, augment_probability)
        utt_id = f"{voice.speaker}-{chapter}-{counts[voice.speaker]:04d}"
        counts[voice.speaker] += 1
        yield Utterance(utt_id, text, voice, aug, seed=int(np.random.default_rng([seed, 4, index]).integers(2**31)))


def render(utt: Utterance, subset_dir: Path) -> float:
    """Speak, resample to 16 kHz, trim, pad, augment, level and write one FLAC; returns its length in seconds."""
    import librosa
    import soundfile as sf

    from asr.audio import resample

    rng = np.random.default_rng(utt.seed)
    aug = utt.augmentation
    pitch_by_tts = utt.voice.engine in TTS_PITCH_ENGINES
    audio, sample_rate = synthesize(utt.voice, utt.text, pitch=aug.pitch if pitch_by_tts else 1.0, seed=utt.seed)
    audio = resample(audio, sample_rate, SAMPLE_RATE)
    audio, _ = librosa.effects.trim(audio, top_db=TRIM_TOP_DB, frame_length=512, hop_length=128)
    if len(audio) == 0 or not np.any(audio):
        raise RuntimeError(f"{utt.voice.id} produced no audio for {utt.text!r}")
    pad = (rng.uniform(*PAD_RANGE_S, size=2) * SAMPLE_RATE).astype(int)
    audio = np.concatenate([np.zeros(pad[0], np.float32), audio, np.zeros(pad[1], np.float32)])
    audio = apply_augmentation(audio, aug, rng, pitch_done=pitch_by_tts, sample_rate=SAMPLE_RATE)
    audio = audio * (10 ** (rng.uniform(*PEAK_DBFS_RANGE) / 20) / np.max(np.abs(audio)))
    audio = np.clip(audio + DITHER * rng.standard_normal(len(audio)), -1.0, 1.0)
    path = utt.path(subset_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def _render_job(job):
    return render(*job)


def synthesize_corpus(out_dir, subset: str, sentences: list[str], voices: list[Voice], seed: int = 0,
                      utterances: int | None = None, hours: float | None = None, engine_weights=None,
                      augment=(), augment_probability: float = 0.5, jobs: int = 2, progress: bool = True):
    """Render `utterances` utterances, or as many as it takes to reach `hours` of audio, into
    out_dir/subset and write the transcripts. Returns [(Utterance, seconds)] in plan order."""
    if (utterances is None) == (hours is None):
        raise ValueError("give exactly one of utterances and hours")
    subset_dir = Path(out_dir) / subset
    plan = plan_utterances(sentences, voices, subset, seed, engine_weights, augment, augment_probability)
    target = hours * 3600 if hours is not None else None
    done: list[tuple[Utterance, float]] = []
    total = 0.0
    chunk_size = max(64, 32 * jobs)
    from tqdm import tqdm
    bar = tqdm(total=utterances if target is None else round(target), disable=not progress, mininterval=2,
               unit=" utt" if target is None else " s audio", file=sys.stderr)
    pool = multiprocessing.Pool(jobs) if jobs > 1 else None
    try:
        while (target is None and len(done) < utterances) or (target is not None and total < target):
            n = chunk_size if target is not None else min(chunk_size, utterances - len(done))
            chunk = list(itertools.islice(plan, n))
            work = [(utt, subset_dir) for utt in chunk]
            results = pool.imap(_render_job, work, chunksize=4) if pool else map(_render_job, work)
            for utt, seconds in zip(chunk, results):
                if target is not None and total >= target:   # rendered past the target: not part of the corpus
                    utt.path(subset_dir).unlink()
                    continue
                done.append((utt, seconds))
                total += seconds
                bar.update(1 if target is None else min(round(total), bar.total) - bar.n)
    finally:
        bar.close()
        if pool:
            pool.terminate()
    write_transcripts(subset_dir, [utt for utt, _ in done])
    return done


def write_transcripts(subset_dir: Path, utterances) -> None:
    """SPEAKER-CHAPTER.trans.txt in each chapter folder, lines sorted by utterance id."""
    chapters: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for utt in utterances:
        speaker, chapter, _ = utt.utt_id.split("-")
        chapters[speaker, chapter].append(utt)
    for (speaker, chapter), utts in chapters.items():
        lines = sorted(f"{u.utt_id} {u.text}\n" for u in utts)
        (subset_dir / speaker / chapter / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))


def write_manifest(path: Path, done, command: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# utterance\tseconds\tvoice\taugmentation\n")
        for utt, seconds in sorted(done, key=lambda d: d[0].utt_id):
            f.write(f"{utt.utt_id}\t{seconds:.3f}\t{utt.voice.id}\t{utt.augmentation.describe()}\n")
