
import pytest
import torch

from asr.checkpoint import (
    CheckpointError,
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
