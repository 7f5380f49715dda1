"""Audio in: any file soundfile or librosa can read, any rate, any channel count -> mono float32 at 16 kHz;
and out, as FLAC."""
from __future__ import annotations

import os
import warnings

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


class AudioError(ValueError):
    """A file or buffer that cannot be turned into audio. The message names the input and the cause."""


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` as mono float32 in [-1, 1] at `sample_rate`. Returns shape (samples,).

    soundfile reads FLAC/WAV/OGG directly; anything else (MP3, M4A, ...) goes through librosa's audioread/ffmpeg path.
    Raises AudioError naming the file when it is missing, empty, corrupt or holds no samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except Exception as sf_error:  # not a format libsndfile knows: try librosa (ffmpeg/audioread)
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                audio, rate = librosa.load(path, sr=None, mono=True, dtype=np.float32)
            if audio.size == 0:
                raise AudioError("no samples decoded")
        except Exception as error:
            raise AudioError(f"{path}: cannot decode audio ({sf_error}; {type(error).__name__}: {error})") from error
    if audio.size == 0:
        raise AudioError(f"{path}: holds no audio samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: holds NaN or infinite samples")
    return resample(np.ascontiguousarray(audio, dtype=np.float32), int(rate), sample_rate)


def write_flac(path: str | os.PathLike, audio: np.ndarray) -> None:
    """Write mono float32 audio at 16 kHz as 16-bit FLAC, atomically: a file at `path` is always whole."""
    tmp = f"{path}.tmp.flac"
    sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)


def resample(audio: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole signal (samples,) with soxr's high-quality filter."""
    if from_rate == to_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


class StreamResampler:
    """Chunk-by-chunk resampler that carries its filter state, for streams whose rate is not 16 kHz."""

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE):
        check_sample_rate(from_rate)
        self.passthrough = from_rate == to_rate
        self._stream = None if self.passthrough else soxr.ResampleStream(from_rate, to_rate, 1, "float32", "HQ")

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        """chunk: (samples,) float32 at the input rate -> (samples',) at the output rate."""
        if self.passthrough:
            return chunk
        return self._stream.resample_chunk(chunk, last=last)


def check_sample_rate(rate) -> int:
    """Validate a client-given sample rate; returns it as int or raises ValueError saying what is allowed."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != int(rate):
        raise ValueError(f"sample_rate {rate!r} is not a whole number")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    return int(rate)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Signed 16-bit little-endian mono PCM bytes (even length) -> float32 (samples,) in [-1, 1)."""
    return pcm_to_float(data)


def pcm_to_float(data: bytes, width: int = 2, channels: int = 1) -> np.ndarray:
    """Interleaved little-endian PCM (`width` bytes a sample: 1 unsigned, 2 or 4 signed) -> mono float32 in [-1, 1],
    shape (frames,); channels are averaged. Raises AudioError (a ValueError) when `data` is not whole frames."""
    if width not in (1, 2, 4) or channels < 1:
        raise AudioError(f"cannot read PCM of {width} bytes a sample and {channels} channels")
    if len(data) % (width * channels):
        raise AudioError(f"PCM buffer of {len(data)} bytes is not whole frames of {channels} channel(s) x "
                         f"{width} byte(s)")
    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        kind = "<i2" if width == 2 else "<i4"
        samples = np.frombuffer(data, dtype=kind).astype(np.float32) / float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """float32 (samples,) in [-1, 1] -> signed 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()
