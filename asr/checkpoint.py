"""The one checkpoint format of the project: a plain dict that `torch.load(weights_only=True)` reads.

    {"format": "lstm-asr", "version": 1,
     "dims": ModelDims as dict, "vocab": [...], "features": feature_settings(),
     "model": state_dict, "training": {metadata: steps, audio hours, dev WER, recipe, ...}
                                      (or {"averaged": [each source's path and progress]}, see average_checkpoints),
     optional for resuming: "optimizer", "scheduler", "step", "rng", ...}

Shipped models live in asr/models/NAME.pt and are loaded by name ("stream", "offline") or any path.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from asr.features import feature_settings
from asr.model import AcousticModel, ModelDims, check_precision, quantized
from asr.tokenizer import VOCAB

FORMAT = "lstm-asr"
VERSION = 1
MODELS_DIR = Path(__file__).parent / "models"
MODEL_NAMES = ("stream", "offline")
DEFAULT_MODEL = "stream"
HEADER = ("format", "version", "dims", "vocab", "features")  # what makes a checkpoint self-describing


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe to load, or not of this project's format."""


def model_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped model name ("stream", "offline") or a checkpoint path -> the file's path."""
    if str(name_or_path) in MODEL_NAMES:
        path = MODELS_DIR / f"{name_or_path}.pt"
        if not path.exists():
            raise CheckpointError(f"shipped model {name_or_path!r} is missing from {MODELS_DIR} (run training/recipe.sh)")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (give a path or one of {', '.join(MODEL_NAMES)})")
    return path


def checkpoint_dict(model: AcousticModel, training: dict | None = None, **resume_state) -> dict:
    """Everything needed to rebuild `model` without this project's training code, plus optional resume state."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "dims": model.dims.to_dict(), "vocab": list(VOCAB),
            "features": feature_settings(), "model": state, "training": training or {}, **resume_state}


def save_checkpoint(checkpoint: dict, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(name_or_path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint dict. Never runs code from the file (weights_only=True)."""
    path = model_path(name_or_path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an {FORMAT} checkpoint")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {checkpoint.get('version')} is not supported (want {VERSION})")
    if checkpoint["vocab"] != list(VOCAB):
        raise CheckpointError(f"{path}: vocabulary differs from this version's tokenizer")
    if checkpoint["features"] != feature_settings():
        raise CheckpointError(f"{path}: feature settings {checkpoint['features']} differ from {feature_settings()}")
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> AcousticModel:
    model = AcousticModel(ModelDims(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model"])
    return model


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str = "cpu",
               precision: str = "float32") -> AcousticModel:
    """A model ready for inference (eval mode) from a shipped name or a checkpoint path; precision "int8" quantises
    its weights (CPU only, see `asr.model.quantized`)."""
    if check_precision(precision) == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 models run on the CPU, not {device}")
    model = model_from_checkpoint(load_checkpoint(name_or_path)).to(device).eval()
    return quantized(model) if precision == "int8" else model


def average_checkpoints(paths: list[str | os.PathLike]) -> dict:
    """The element-wise mean of the weights of checkpoints of one model shape, as a checkpoint without resume state.

    Schedules fine-tuned from a common ancestor land near each other; their mean (a "model soup", Wortsman et al.
    2022) often scores better than any one of them. Its "training" entry lists each source and its progress.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    checkpoints = [load_checkpoint(path) for path in paths]
    first = checkpoints[0]
    # Dims as the model reads them (fields an older checkpoint lacks take their defaults); dropout acts in training only.
    dims = [ModelDims(**c["dims"]).to_dict() | {"dropout": first["dims"]["dropout"]} for c in checkpoints]
    for path, other in zip(paths[1:], dims[1:]):
        differ = [f"{k} {v} vs {dims[0][k]}" for k, v in other.items() if v != dims[0][k]]
        if differ:
            raise CheckpointError(f"{path}: not the model shape of {paths[0]} ({', '.join(differ)})")
    model = {name: torch.stack([c["model"][name] for c in checkpoints]).mean(0) if tensor.is_floating_point()
             else tensor for name, tensor in first["model"].items()}
    sources = [{"checkpoint": str(path), "progress": c["training"].get("progress"),
                "train_hours": c["training"].get("train_hours")} for path, c in zip(paths, checkpoints)]
    return {**{k: first[k] for k in HEADER}, "dims": dims[0], "model": model, "training": {"averaged": sources}}


def export_model(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a training checkpoint without its resume state (optimizer, RNG): the small file that ships."""
    checkpoint = load_checkpoint(src)
    save_checkpoint({k: checkpoint[k] for k in (*HEADER, "model", "training")}, dst)
