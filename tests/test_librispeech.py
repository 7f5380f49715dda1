from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.librispeech import CorpusError, load_manifest, load_manifests, write_subset


def make_subset(root, speakers=2, chapters=2, utterances=3):
    for s in range(speakers):
        for c in range(chapters):
            folder = root / str(100 + s) / str(200 + c)
            folder.mkdir(parents=True)
            lines = []
            for u in range(utterances):
                utt = f"{100 + s}-{200 + c}-{u:04d}"
                sf.write(folder / f"{utt}.flac", np.zeros(1600 * (u + 1), dtype=np.float32), 16000)
                lines.append(f"{utt} WORD NUMBER {u}")
            (folder / f"{100 + s}-{200 + c}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_reads_official_layout_with_durations(tmp_path, monkeypatch):
    monkeypatch.setattr("training.librispeech.CACHE_DIR", tmp_path / "cache")
    subset = make_subset(tmp_path / "train-clean-5")
    manifest = load_manifest(subset)
    assert len(manifest) == 12
    first = manifest[0]
    assert first.id == "100-200-0000" and first.speaker == "100" and first.text == "WORD NUMBER"
    assert first.duration == pytest.approx(0.1)
    assert (tmp_path / "cache").exists()
    assert load_manifest(subset) == manifest  # from the cache
    assert len(load_manifests([subset, subset])) == 24


def test_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no such directory"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="trans.txt"):
        load_manifest(tmp_path / "empty")


def test_damaged_audio_is_named_counted_and_left_out(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("training.librispeech.CACHE_DIR", tmp_path / "cache")
    subset = make_subset(tmp_path / "train", speakers=10, chapters=2, utterances=5)  # 100 files
    truncated = subset / "100" / "200" / "100-200-0004.flac"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level("WARNING"):
        manifest = load_manifest(subset)
    assert len(manifest) == 99 and all(u.id != "100-200-0004" for u in manifest)
    assert "100-200-0004.flac" in caplog.text and "1 of 100 audio files left out" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert load_manifest(subset) == manifest  # the cache remembers the verdict and says so again
    assert "100-200-0004.flac" in caplog.text


def test_too_many_damaged_files_refuse_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setattr("training.librispeech.CACHE_DIR", tmp_path / "cache")
    subset = make_subset(tmp_path / "train", speakers=1, chapters=1, utterances=4)
    for path in list((subset / "100" / "200").glob("*.flac"))[:2]:
        path.write_bytes(b"RIFF not really audio")
    with pytest.raises(CorpusError, match="2 of 4 audio files are damaged"):
        load_manifest(subset)


def test_transcript_that_is_not_utf8_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr("training.librispeech.CACHE_DIR", tmp_path / "cache")
    subset = make_subset(tmp_path / "train", speakers=1, chapters=1, utterances=3)
    trans = subset / "100" / "200" / "100-200.trans.txt"
    trans.write_bytes(b"100-200-0000 HELLO\n100-200-0001 CAF\xe9 AU LAIT\n")
    with pytest.raises(CorpusError, match=r"100-200.trans.txt:2: not UTF-8 text \(byte 0xe9 at column 17\)"):
        load_manifest(subset)


def test_write_subset_links_audio_and_rewrites_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr("training.librispeech.CACHE_DIR", tmp_path / "cache")
    source = load_manifest(make_subset(tmp_path / "source", speakers=1, chapters=1))
    out = tmp_path / "out" / "dev" / "part"
    write_subset(out, source[:2])
    first = load_manifest(out)
    assert [u.text for u in first] == [u.text for u in source[:2]]
    assert all(Path(u.path).is_symlink() and Path(u.path).resolve() == Path(s.path).resolve()
               for u, s in zip(first, source))
    retold = [replace(u, text="OTHER WORDS") for u in source]
    write_subset(out, retold)
    assert [u.text for u in load_manifest(out)] == ["OTHER WORDS"] * 3
    assert Path(first[0].path).exists(), "a path read before the rewrite still names the audio"
    assert sorted(p.name for p in out.parent.iterdir()) == ["part"], "no half-written or old copy is left"
