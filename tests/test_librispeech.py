import numpy as np
import pytest
import soundfile as sf

from training.librispeech import CorpusError, load_manifest, load_manifests


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
