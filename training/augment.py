"""Random, seeded changes to synthetic speech so that a few dozen voices sound like more speakers and rooms.

    aug = draw_augmentation(rng, kinds=("speed", "noise", "reverb"), probability=0.5)
    audio = apply_augmentation(audio, aug, rng)        # 16 kHz float32 in and out

- speed: resampling by 0.9..1.1 (tempo and pitch together, like Kaldi's speed perturbation);
- pitch: a factor of 2**(+-2/12); espeak and flite take it as a synthesis parameter (see `voices.synthesize`),
  other engines get a phase-vocoder pitch shift here;
- noise: white, pink or brown noise made with numpy at 10..30 dB SNR;
- reverb: a synthetic room: a direct path plus exponentially decaying noise with RT60 0.15..0.8 s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.audio import SAMPLE_RATE

AUGMENTATIONS = ("speed", "pitch", "noise", "reverb")
SPEED_RANGE = (0.9, 1.1)
PITCH_SEMITONES = 2.0                 # shifts are drawn from -2..+2 semitones
SNR_DB_RANGE = (10.0, 30.0)
NOISE_COLOURS = ("white", "pink", "brown")
RT60_RANGE_S = (0.15, 0.8)
DIRECT_TO_REVERB_DB_RANGE = (0.0, 12.0)


@dataclass(frozen=True)
class Augmentation:
    """What to do to one utterance; the default does nothing."""

    speed: float = 1.0
    pitch: float = 1.0       # factor on the fundamental frequency
    noise: str = ""          # colour, "" for none
    snr_db: float = 0.0
    rt60: float = 0.0        # seconds, 0 for no reverb
    drr_db: float = 0.0      # direct-to-reverberant ratio

    def describe(self) -> str:
        parts = []
        if self.speed != 1.0:
            parts.append(f"speed={self.speed:.3f}")
        if self.pitch != 1.0:
            parts.append(f"pitch={self.pitch:.3f}")
        if self.noise:
            parts.append(f"noise={self.noise}@{self.snr_db:.1f}dB")
        if self.rt60:
            parts.append(f"reverb={self.rt60:.2f}s@{self.drr_db:.1f}dB")
        return ",".join(parts) or "none"


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """"speed,noise" -> ("speed", "noise"); "" / "none" / None -> (); "all" -> every kind."""
    if not text or text == "none":
        return ()
    if text == "all":
        return AUGMENTATIONS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    return kinds


def draw_augmentation(rng: np.random.Generator, kinds, probability: float) -> Augmentation:
    """With `probability`, an augmentation using each of `kinds` with chance 1/2 (at least one of them)."""
    if not kinds or rng.random() >= probability:
        return Augmentation()
    chosen = [k for k in kinds if rng.random() < 0.5] or [kinds[rng.integers(len(kinds))]]
    values = {}
    if "speed" in chosen:
        values["speed"] = float(rng.uniform(*SPEED_RANGE))
    if "pitch" in chosen:
        values["pitch"] = float(2.0 ** (rng.uniform(-PITCH_SEMITONES, PITCH_SEMITONES) / 12))
    if "noise" in chosen:
        values["noise"] = NOISE_COLOURS[rng.integers(len(NOISE_COLOURS))]
        values["snr_db"] = float(rng.uniform(*SNR_DB_RANGE))
    if "reverb" in chosen:
        values["rt60"] = float(rng.uniform(*RT60_RANGE_S))
        values["drr_db"] = float(rng.uniform(*DIRECT_TO_REVERB_DB_RANGE))
    return Augmentation(**values)


def change_speed(audio: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play `factor` times faster (and higher): resample as if recorded at sample_rate * factor."""
    import soxr
    if factor == 1.0:
        return audio
    return soxr.resample(audio, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def shift_pitch(audio: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Raise the pitch by `factor` at the same tempo (phase vocoder)."""
    import librosa
    if factor == 1.0:
        return audio
    return librosa.effects.pitch_shift(audio, sr=sample_rate, n_steps=12 * np.log2(factor)).astype(np.float32)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of unit-RMS white, pink (1/f power) or brown (1/f^2 power) noise."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; choose from {', '.join(NOISE_COLOURS)}")
    from scipy.fft import irfft, next_fast_len, rfft
    m = next_fast_len(n, real=True)                  # an FFT of a prime length is slow
    spectrum = rfft(rng.standard_normal(m))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    noise = irfft(spectrum / f**exponent, m)[:n]
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, colour: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix in noise `snr_db` below the power of the loud (speech) part of `audio`."""
    power = np.mean(audio**2)
    loud = audio[np.abs(audio) > 0.01 * np.max(np.abs(audio))] if np.any(audio) else audio
    speech_power = np.mean(loud**2) if len(loud) else power
    gain = np.sqrt(speech_power / 10 ** (snr_db / 10))
    return (audio + gain * coloured_noise(len(audio), colour, rng)).astype(np.float32)


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A direct path, a few ms of silence, then Gaussian noise decaying by 60 dB in `rt60` seconds."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)        # ln(1000) = 6.9078: -60 dB at rt60
    tail[: int(0.003 * sample_rate)] = 0.0
    tail *= 10 ** (-drr_db / 20) / (np.sqrt(np.sum(tail**2)) + 1e-12)  # energy relative to the direct path
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir`; the output is longer by the reverb tail."""
    from scipy.signal import fftconvolve
    return fftconvolve(audio, rir).astype(np.float32)


def apply_augmentation(audio: np.ndarray, aug: Augmentation, rng: np.random.Generator, pitch_done: bool = False,
                       sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speed, pitch (unless the voice already spoke at that pitch), reverb, then noise."""
    audio = change_speed(audio, aug.speed, sample_rate)
    if not pitch_done:
        audio = shift_pitch(audio, aug.pitch, sample_rate)
    if aug.rt60:
        audio = reverberate(audio, room_impulse_response(aug.rt60, aug.drr_db, rng, sample_rate))
    if aug.noise:
        audio = add_noise(audio, aug.noise, aug.snr_db, rng)
    return audio
