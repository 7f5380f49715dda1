"""Real-speech training set and dev suite from the shared real-speech corpora (LibriSpeech layout, any audio format).

    python -m training.real_speech --real ../shared/data/real --out data/real [--asterisk] [--augment-copies 2]

Writes LibriSpeech-format subset directories under OUT (audio is linked, never copied; transcripts are written):

    train/             speechocean762 ch. 1, AN4 ch. 1, LJ Speech, phone numbers, Common Voice train speakers
    dev/cv             Common Voice speakers held out (split by speaker, not by clip), for tuning
    test/cv            other held-out Common Voice speakers, reported only
    dev/an4            AN4's test chapter (10 speakers never in training)
    dev/so762          4 utterances per speaker of speechocean762's test chapter (speakers never in training)
    dev/so762-unseen   the part of dev/so762 whose sentences never occur in training
    dev/asterisk       Debian's asterisk-core-sounds-en prompts (one more speaker, another domain; --asterisk)
    dev/libri, test/libri    LibriSpeech train-clean-5 readers held out (split by reader)
    dev/cv2, test/cv2  Common Voice 18-20 deltas and early clips, speakers held out (split by client id)
    test/commands      Speech Commands' official test and validation clips (single words, speakers never in training)
    train-more         the newer corpora's training speakers: LibriSpeech readers, Common Voice 18-20 / early,
                       cathy (CMU ARCTIC), VCTK, and at most WORDS_PER_CORPUS single-word clips of each wake-word
                       or command corpus (many microphones, few words: heard sparingly)
    dev/an4-long, dev/cv-long, dev/so762-long
                       the same recordings joined per speaker into one file each (15-95 s): what a long recording
                       or a microphone session is heard as, utterance boundaries unknown to the recognizer
    train-aug1, ...    --augment-copies: copies of train/ through random recording chains (training.augment:
                       speed, room, noise, band limits, telephone, codecs, gain), written once and kept
    train-more-aug1, ...   the same copies of train-more/
    heldout_sentences.txt   every dev and test sentence, to keep out of language-model text and synthetic corpora

Training utterances whose sentence occurs in a Common Voice dev or test clip are left out. Idempotent: a rerun
rewrites the same files.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from asr.audio import load_audio, write_flac
from asr.tokenizer import normalize_text
from training.augment import augment_corpus
from training.librispeech import Utterance, load_manifest, write_subset

log = logging.getLogger(__name__)

CV = "commonvoice_cv13_delta"
CV_HELDOUT_FRACTION = 0.4  # of Common Voice speakers (by a hash of the id), half dev and half test
LIBRI_HELDOUT_FRACTION = 0.25  # of LibriSpeech train-clean-5's 28 readers (by a hash of the id), half dev, half test
CV_NEWER = ("commonvoice_deltas_18_20", "commonvoice_early")
MORE_CORPORA = ("rhasspy_cathy", "vctk_p239", "vctk_samples")
WORD_CORPORA = ("picovoice_wakewords", "mycroft_wakewords", "speech_commands_sample")
WORDS_PER_CORPUS = 300
CV_MAX_HELDOUT_CLIPS = 40   # speakers with more clips than this always train (a few read 150-190 clips)
SO762_DEV_PER_SPEAKER = 4  # of its 20 test prompts per speaker: 500 utterances keep the suite quick to score
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def chapter(utt: Utterance) -> str:
    return utt.id.split("-")[1]


def speaker_bucket(speaker: str) -> float:
    """A stable number in [0, 1) per speaker id."""
    return int(hashlib.sha1(speaker.encode()).hexdigest()[:8], 16) / 2**32


def split_by_speaker(utterances: list[Utterance], heldout_fraction: float = CV_HELDOUT_FRACTION,
                     max_heldout_clips: int = CV_MAX_HELDOUT_CLIPS,
                     identity=lambda speaker: speaker) -> dict[str, list[Utterance]]:
    """train / dev / test by a hash of each speaker's identity (`identity` maps the speaker number to it: a Common
    Voice client id, so that one person in two folders falls on one side); prolific speakers always train."""
    by_speaker = defaultdict(list)
    for utt in utterances:
        by_speaker[utt.speaker].append(utt)
    parts = {"train": [], "dev": [], "test": []}
    for speaker, utts in sorted(by_speaker.items()):
        bucket = speaker_bucket(identity(speaker))
        if len(utts) > max_heldout_clips or bucket >= heldout_fraction:
            parts["train"] += utts
        else:
            parts["dev" if bucket < heldout_fraction / 2 else "test"] += utts
    return parts


def split_common_voice(utterances: list[Utterance]) -> dict[str, list[Utterance]]:
    return split_by_speaker(utterances)


def original_speakers(corpus: Path) -> dict[str, str]:
    """speaker number -> the source's own speaker id (a Common Voice client id, a LibriSpeech reader), SPEAKERS.tsv."""
    rows = [line.split("\t") for line in (corpus / "SPEAKERS.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return {row[0]: row[1] for row in rows if len(row) > 1}


def asterisk_words(text: str) -> str:
    """What a prompt of core-sounds-en.txt says, normalised: notes in parentheses ("(simple tone sound plays)",
    "(10 seconds of silence)") are not spoken, a lone digit is read as its word ("Press 1 for" -> PRESS ONE FOR).
    "" when it says nothing or a number whose reading is unsure ("H.323", "28.8", "1234", "3D")."""
    text = re.sub(r"\([^)]*\)", " ", text)
    text = re.sub(r"(?<![\w.])(\d)(?!\w|\.\d)", lambda m: f" {DIGIT_WORDS[int(m[1])]} ", text)
    return "" if re.search(r"\d", text) else normalize_text(text)


def asterisk_prompts(out: Path) -> list[Utterance]:
    """The G.722 prompts of asterisk-core-sounds-en-g722 decoded to 16 kHz FLAC under `out` (speaker 99001)."""
    if not ASTERISK_TRANSCRIPTS.exists() or not ASTERISK_SOUNDS.is_dir():
        raise SystemExit("--asterisk: install the prompts first: apt-get install asterisk-core-sounds-en "
                         "asterisk-core-sounds-en-g722")
    texts = {}
    for line in gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not name.startswith(("#", ";")) and (words := asterisk_words(text)):
            texts[name.strip()] = words
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for number, name in enumerate(sorted(texts)):
        source = ASTERISK_SOUNDS / f"{name}.g722"
        if not source.exists():
            continue
        target = audio_dir / f"{name.replace('/', '_')}.flac"
        if not target.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", str(source),
                            "-ar", "16000", "-ac", "1", str(target)], check=True)
        utterances.append(Utterance(f"99001-1-{number:04d}", str(target), 0.0, texts[name], "99001"))
    return utterances


def joined_per_speaker(utterances: list[Utterance], audio_dir: Path) -> list[Utterance]:
    """One recording per speaker: their utterances in id order, end to end (each keeps its own leading and
    trailing silence), written once as 16 kHz FLAC under `audio_dir`; the transcript is theirs joined."""
    by_speaker = defaultdict(list)
    for utt in sorted(utterances, key=lambda u: u.id):
        by_speaker[utt.speaker].append(utt)
    audio_dir.mkdir(parents=True, exist_ok=True)
    joined = []
    for speaker, utts in sorted(by_speaker.items()):
        target = audio_dir / f"{speaker}.flac"
        if not target.exists():
            write_flac(target, np.concatenate([load_audio(u.path) for u in utts]))
        joined.append(Utterance(f"{speaker}-{chapter(utts[0])}-0000", str(target), 0.0,
                                " ".join(u.text for u in utts), speaker))
    return joined


def prepare(real: Path, out: Path, with_asterisk: bool) -> dict[str, list[Utterance]]:
    corpora = {name: load_manifest(real / name) for name in
               ("speechocean762", CV, "an4", "ljspeech_part1", "alphanumeric_numbers")}
    cv = split_common_voice(corpora[CV])
    newer_cv = [u for name in CV_NEWER for u in load_manifest(real / name)]
    clients = {k: v for name in CV_NEWER for k, v in original_speakers(real / name).items()}
    cv2 = split_by_speaker(newer_cv, identity=lambda speaker: clients.get(speaker, speaker))
    libri = split_by_speaker(load_manifest(real / "librispeech_train_clean_5"), LIBRI_HELDOUT_FRACTION, 10**6)
    more = libri["train"] + cv2["train"] + [u for name in MORE_CORPORA for u in load_manifest(real / name)]
    for name in WORD_CORPORA:
        words = [u for u in load_manifest(real / name) if chapter(u) == "1"]
        more += sorted(words, key=lambda u: speaker_bucket(u.id))[:WORDS_PER_CORPUS]
    heldout_cv = {u.text for u in cv["dev"] + cv["test"] + cv2["dev"] + cv2["test"]}
    train = ([u for u in corpora["speechocean762"] if chapter(u) == "1"]
             + [u for u in corpora["an4"] if chapter(u) == "1"]
             + corpora["ljspeech_part1"] + corpora["alphanumeric_numbers"] + cv["train"])
    dropped = [u for u in train + more if u.text in heldout_cv]
    train = [u for u in train if u.text not in heldout_cv]
    so762_test, per_speaker = [], defaultdict(int)
    for utt in corpora["speechocean762"]:
        if chapter(utt) == "2" and per_speaker[utt.speaker] < SO762_DEV_PER_SPEAKER:
            per_speaker[utt.speaker] += 1
            so762_test.append(utt)
    train_sentences = {u.text for u in train}
    subsets = {
        "train": train,
        "dev/cv": cv["dev"],
        "test/cv": cv["test"],
        "dev/an4": [u for u in corpora["an4"] if chapter(u) == "2"],
        "dev/so762": so762_test,
        "dev/so762-unseen": [u for u in so762_test if u.text not in train_sentences],
        "dev/libri": libri["dev"],
        "test/libri": libri["test"],
        "dev/cv2": cv2["dev"],
        "test/cv2": cv2["test"],
        "test/commands": [u for u in load_manifest(real / "speech_commands_sample") if chapter(u) == "2"],
        "train-more": [u for u in more if u.text not in heldout_cv],
    }
    for part in ("an4", "cv", "so762"):
        subsets[f"dev/{part}-long"] = joined_per_speaker(subsets[f"dev/{part}"], out / "long" / part)
    if with_asterisk:
        subsets["dev/asterisk"] = asterisk_prompts(out / "asterisk")
    for name, utterances in subsets.items():
        write_subset(out / name, utterances)
        hours = sum(u.duration for u in load_manifest(out / name)) / 3600
        log.info("%-18s %5d utterances %6.2f h %4d speakers", name, len(utterances), hours,
                 len({u.speaker for u in utterances}))
    log.info("left %d training utterances out: their sentence is read in a Common Voice dev/test clip", len(dropped))
    heldout = sorted({u.text for name, utts in subsets.items() if not name.startswith("train") for u in utts})
    (out / "heldout_sentences.txt").write_text("".join(s + "\n" for s in heldout), encoding="utf-8")
    return subsets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.real_speech", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=Path("../shared/data/real"), help="the real-speech corpora")
    parser.add_argument("--out", type=Path, default=Path("data/real"), help="where the subsets are written")
    parser.add_argument("--asterisk", action="store_true", help="add the Asterisk prompts as dev/asterisk")
    parser.add_argument("--augment-copies", type=int, default=0, metavar="N",
                        help="write N augmented copies of train/ and train-more/ (train-aug1 ... train-augN, "
                             "train-more-aug1 ...)")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the augmented copies (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not args.real.is_dir():
        parser.error(f"--real {args.real}: no such directory (the shared real-speech corpora)")
    prepare(args.real, args.out, args.asterisk)
    for copy in range(1, args.augment_copies + 1):
        for subset in ("train", "train-more"):
            written = augment_corpus(args.out / subset, args.out / f"{subset}-aug{copy}", copy, jobs=args.jobs)
            log.info("%s-aug%d: %d files written now", subset, copy, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
