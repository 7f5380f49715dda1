"""Log-mel features kept on disk: computed once per audio file for every training run that reads it (a resumed run,
the other model's run, the next schedule), instead of once per run in that run's memory."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.features import feature_settings, log_mel

log = logging.getLogger(__name__)


class FeatureStoreError(Exception):
    """The store's folder cannot be made."""


class FeatureStore:
    """(frames, n_mels) float16 log-mel of audio files, one .npy file each under `folder` (numpy, no pickle).

    A file's name is a hash of the feature settings and of the audio file's real path, size and modification time:
    changed audio or new settings get a new name, never stale features. Each is written under a temporary name and
    renamed, so runs sharing the folder never read half a file; one that cannot be read is computed again."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FeatureStoreError(f"{folder}: cannot keep features there ({error.strerror or error})") from None
        self.settings = json.dumps(feature_settings(), sort_keys=True)
        self.warned = False

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
        except (OSError, ValueError, EOFError):  # not there yet (or cut short by a full disk): compute it
            pass
        features = log_mel(load_audio(audio_path)).half()
        partial = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(exist_ok=True)
            with open(partial, "wb") as f:
                np.save(f, features.numpy(), allow_pickle=False)
            os.replace(partial, target)
        except OSError as error:  # a full disk: training goes on, computing what it cannot keep
            with contextlib.suppress(OSError):
                partial.unlink()
            if not self.warned:
                log.warning("%s: cannot keep features (%s); they are computed again when needed", self.folder,
                            error.strerror or error)
                self.warned = True
        return features
