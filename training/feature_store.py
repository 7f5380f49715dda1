"""Log-mel features kept on disk: computed once per audio file for every training run that reads it (a resumed run,
the other model's run, the next schedule), instead of once per run in that run's memory."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.features import feature_settings, log_mel


class FeatureStore:
    """(frames, n_mels) float16 log-mel of audio files, one .npy file each under `folder` (numpy, no pickle).

    A file's name is a hash of the feature settings and of the audio file's real path, size and modification time:
    changed audio or new settings get a new name, never stale features. Each is written under a temporary name and
    renamed, so runs sharing the folder never read half a file; one that cannot be read is computed again."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = json.dumps(feature_settings(), sort_keys=True)

    def path(self, audio_path: str | os.PathLike) -> Path:
        """Where the features of `audio_path` are kept."""
        stat = os.stat(audio_path)
        key = f"{self.settings}|{os.path.realpath(audio_path)}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def features(self, audio_path: str | os.PathLike) -> torch.Tensor:
        """(frames, n_mels) float16 log-mel of `audio_path`, computed and stored on first use."""
        target = self.path(audio_path)
        try:
            return torch.from_numpy(np.load(target, allow_pickle=False))
        except (OSError, ValueError):  # not there yet (or cut short by a full disk): compute it
            pass
        features = log_mel(load_audio(audio_path)).half()
        target.parent.mkdir(exist_ok=True)
        partial = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            np.save(f, features.numpy(), allow_pickle=False)
        os.replace(partial, target)
        return features
