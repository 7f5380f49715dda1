"""Log-mel features: 80 bins, 25 ms window, 10 ms hop, computed with torch.stft and librosa's mel filterbank.

Frames are not centred: frame i covers samples [i * HOP_LENGTH, i * HOP_LENGTH + N_FFT). That is what lets the
streaming extractor produce exactly the frames of the whole-signal extractor for any chunking.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from asr.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
N_MELS = 80
FRAME_RATE = SAMPLE_RATE // HOP_LENGTH  # 100 frames per second
LOG_FLOOR = 1e-6


def feature_settings() -> dict:
    """The settings a checkpoint records so that a model is never fed features it was not trained on."""
    return {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
            "window": "hann", "center": False, "mel_norm": "slaney", "log_floor": LOG_FLOOR}


@lru_cache(maxsize=None)
def mel_filters() -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) Slaney-style mel filterbank, built once."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float()


@lru_cache(maxsize=None)
def mel_centres() -> torch.Tensor:
    """(n_mels,) centre frequency in Hz of each filter of `mel_filters`, computed once (read every training step
    with --freq-warp)."""
    import librosa

    return torch.from_numpy(librosa.mel_frequencies(N_MELS + 2, fmax=SAMPLE_RATE / 2)[1:-1]).float()


@lru_cache(maxsize=None)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True)


def num_frames(num_samples: int) -> int:
    """Frames the extractor yields for a signal of `num_samples` samples."""
    return 0 if num_samples < N_FFT else 1 + (num_samples - N_FFT) // HOP_LENGTH


def mel_power(audio: torch.Tensor) -> torch.Tensor:
    """audio: (batch, samples) float32 -> mel power spectrogram (batch, frames, n_mels)."""
    if audio.shape[-1] < N_FFT:
        return audio.new_zeros(audio.shape[0], 0, N_MELS)
    spec = torch.stft(audio, N_FFT, HOP_LENGTH, window=_window(), center=False, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (batch, n_fft // 2 + 1, frames)
    return (mel_filters() @ power).transpose(1, 2)


def log_mel(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """audio: (samples,) or (batch, samples) at 16 kHz -> log-mel (frames, n_mels) or (batch, frames, n_mels)."""
    audio = torch.as_tensor(audio, dtype=torch.float32)
    single = audio.dim() == 1
    feats = torch.log(mel_power(audio[None] if single else audio) + LOG_FLOOR)
    return feats[0] if single else feats


class StreamingFeatures:
    """Incremental log-mel: feed samples in chunks of any size, get exactly the frames `log_mel` gives the whole.

    Carries the samples not yet framed (at most N_FFT - 1 + HOP_LENGTH of them once taken) from one chunk to the
    next. `push` only buffers; `take_new_frames` computes the frames of many streams in one batched call (what a
    server step does: one small call per stream would cost more in call overhead than in arithmetic).
    """

    def __init__(self):
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> None:
        """chunk: (samples,) float32 at 16 kHz, buffered until the next `take_new_frames`."""
        self._pending = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32)])

    def __call__(self, chunk: np.ndarray) -> torch.Tensor:
        """chunk: (samples,) float32 at 16 kHz -> new frames (frames, n_mels), possibly zero of them."""
        self.push(chunk)
        return take_new_frames([self])[0]


def take_new_frames(extractors: list[StreamingFeatures]) -> list[torch.Tensor]:
    """Each extractor's frames that its buffered samples complete, (frames_i, n_mels), from one batched `log_mel`
    (shorter signals are zero-padded; frames are not centred, so padding never reaches a returned frame)."""
    counts = [num_frames(len(e._pending)) for e in extractors]
    out = [torch.zeros(0, N_MELS) for _ in extractors]
    busy = [i for i, n in enumerate(counts) if n]
    if not busy:
        return out
    batch = np.zeros((len(busy), (max(counts) - 1) * HOP_LENGTH + N_FFT), dtype=np.float32)
    for row, i in enumerate(busy):
        used = (counts[i] - 1) * HOP_LENGTH + N_FFT
        batch[row, :used] = extractors[i]._pending[:used]
        extractors[i]._pending = extractors[i]._pending[counts[i] * HOP_LENGTH:]
    frames = log_mel(torch.from_numpy(batch))
    for row, i in enumerate(busy):
        out[i] = frames[row, : counts[i]]
    return out
