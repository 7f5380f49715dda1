from dataclasses import replace

import pytest
import torch

from asr.checkpoint import (
    CheckpointError,
    average_checkpoints,
    checkpoint_dict,
    export_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from asr.model import AcousticModel, ModelDims


def test_round_trip(tmp_path):
    model = AcousticModel(ModelDims(hidden=32, layers=2, bidirectional=True))
    model.feature_mean.fill_(-3.0)
    save_checkpoint(checkpoint_dict(model, {"note": "test"}, optimizer={"lr": 1.0}), tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.dims == model.dims and not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    export_model(tmp_path / "m.pt", tmp_path / "small.pt")
    exported = load_checkpoint(tmp_path / "small.pt")
    assert "optimizer" not in exported and exported["training"] == {"note": "test"}


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_cannot_run_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "lstm-asr", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(path)


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an lstm-asr checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_average_is_the_mean_of_the_weights(tmp_path):
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = AcousticModel(ModelDims(hidden=32, layers=2, bidirectional=True))
        paths.append(tmp_path / f"m{seed}.pt")
        save_checkpoint(checkpoint_dict(model, {"progress": {"step": seed}}, optimizer={"lr": 1.0}), paths[-1])
    averaged = average_checkpoints(paths)
    sources = [load_checkpoint(p)["model"] for p in paths]
    for key, value in averaged["model"].items():
        torch.testing.assert_close(value, (sources[0][key] + sources[1][key] + sources[2][key]) / 3)
    assert "optimizer" not in averaged
    assert [s["progress"]["step"] for s in averaged["training"]["averaged"]] == [0, 1, 2]
    save_checkpoint(averaged, tmp_path / "soup.pt")
    assert load_model(tmp_path / "soup.pt").dims == ModelDims(hidden=32, layers=2, bidirectional=True)


def test_average_refuses_other_shapes(tmp_path):
    for name, hidden in (("a.pt", 32), ("b.pt", 48)):
        save_checkpoint(checkpoint_dict(AcousticModel(ModelDims(hidden=hidden, layers=2))), tmp_path / name)
    with pytest.raises(CheckpointError, match=r"b.pt: not the model shape of .*a.pt \(hidden 48 vs 32\)"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([])


def test_average_takes_an_older_checkpoint_and_another_dropout(tmp_path):
    dims = ModelDims(hidden=32, layers=2)
    old = checkpoint_dict(AcousticModel(dims))
    del old["dims"]["lookahead"]  # written before the field existed: it reads as the default
    save_checkpoint(old, tmp_path / "old.pt")
    save_checkpoint(checkpoint_dict(AcousticModel(replace(dims, dropout=0.3))), tmp_path / "new.pt")
    for paths in (["old.pt", "new.pt"], ["new.pt", "old.pt"]):
        averaged = average_checkpoints([tmp_path / p for p in paths])
        assert ModelDims(**averaged["dims"]) == replace(dims, dropout=load_checkpoint(tmp_path / paths[0])["dims"]["dropout"])
