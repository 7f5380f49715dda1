"""Random, seeded changes to speech: synthetic voices sound like more speakers and rooms, clean recordings sound
like other microphones, rooms, phones and codecs.

    aug = draw_augmentation(rng, kinds=("speed", "noise", "reverb"), probability=0.5)
    audio = apply_augmentation(audio, aug, rng)        # 16 kHz float32 in and out

- speed: resampling by 0.9..1.1 (tempo and pitch together, like Kaldi's speed perturbation);
- pitch: a factor of 2**(+-2/12); espeak and flite take it as a synthesis parameter (see `voices.synthesize`),
  other engines get a phase-vocoder pitch shift here;
- noise: white, pink or brown noise made with numpy at 10..30 dB SNR;
- reverb: a synthetic room: a direct path plus exponentially decaying noise with RT60 0.15..0.8 s.

`draw_recording` and `apply_recording` add what a recording chain does (gain, band limits, telephone, lossy codecs)
and `augment_corpus` writes augmented copies of a whole LibriSpeech-format corpus.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


# --- recording chains: what a microphone, a phone line or a codec does to clean speech ------------------------------
CHANNELS = ("none", "bandlimit", "telephone", "codec")
CHANNEL_WEIGHTS = (0.25, 0.3, 0.2, 0.25)
CODECS = (("libmp3lame", "mp3", (16, 48)), ("libopus", "ogg", (8, 24)), ("libgsm", "gsm", (13, 13)))
GAIN_DB_RANGE = (-25.0, 6.0)
RECORDING_SNR_DB_RANGE = (5.0, 30.0)


@dataclass(frozen=True)
class Recording:
    """One recording chain: speed, room, noise, then the channel (band limit, telephone or codec) and a gain."""

    room: Augmentation = Augmentation()
    channel: str = "none"
    low_hz: float = 0.0        # bandlimit: high-pass corner
    high_hz: float = 8000.0    # bandlimit: low-pass corner
    codec: str = ""            # codec: ffmpeg encoder
    kbps: int = 0
    gain_db: float = 0.0

    def describe(self) -> str:
        parts = [self.room.describe()] if self.room != Augmentation() else []
        if self.channel == "bandlimit":
            parts.append(f"band={self.low_hz:.0f}-{self.high_hz:.0f}Hz")
        elif self.channel == "telephone":
            parts.append("telephone")
        elif self.channel == "codec":
            parts.append(f"{self.codec}@{self.kbps}k")
        parts.append(f"gain={self.gain_db:.1f}dB")
        return ",".join(parts)


def draw_recording(rng: np.random.Generator) -> Recording:
    """A random recording chain: speed 1/2, reverb 1/3, noise 2/5 of the time, a channel, a gain."""
    room = {}
    if rng.random() < 0.5:
        room["speed"] = float(rng.uniform(*SPEED_RANGE))
    if rng.random() < 1 / 3:
        room["rt60"] = float(rng.uniform(*RT60_RANGE_S))
        room["drr_db"] = float(rng.uniform(*DIRECT_TO_REVERB_DB_RANGE))
    if rng.random() < 0.4:
        room["noise"] = NOISE_COLOURS[rng.integers(len(NOISE_COLOURS))]
        room["snr_db"] = float(rng.uniform(*RECORDING_SNR_DB_RANGE))
    channel = CHANNELS[rng.choice(len(CHANNELS), p=CHANNEL_WEIGHTS)]
    values = {"room": Augmentation(**room), "channel": channel, "gain_db": float(rng.uniform(*GAIN_DB_RANGE))}
    if channel == "bandlimit":
        values["low_hz"] = float(rng.uniform(50, 400))
        values["high_hz"] = float(rng.uniform(3000, 7500))
    elif channel == "codec":
        encoder, _, (low, high) = CODECS[rng.integers(len(CODECS))]
        values["codec"], values["kbps"] = encoder, int(rng.integers(low, high + 1))
    return Recording(**values)


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """4th-order Butterworth band-pass, as a cheap microphone or a narrow channel."""
    from scipy.signal import butter, sosfilt
    sos = butter(4, [max(low_hz, 1.0), min(high_hz, sample_rate / 2 - 1)], btype="bandpass", fs=sample_rate,
                 output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def telephone(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A G.711 phone line: 300-3400 Hz, 8 kHz, 8-bit mu-law, back to `sample_rate`."""
    import soxr
    narrow = soxr.resample(band_limit(audio, 300, 3400, sample_rate), sample_rate, 8000)
    mu = 255.0
    x = np.clip(narrow, -1, 1)
    encoded = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(encoded) * ((1 + mu) ** np.abs(encoded) - 1) / mu
    return soxr.resample(decoded.astype(np.float32), 8000, sample_rate).astype(np.float32)


def through_codec(audio: np.ndarray, encoder: str, kbps: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encode with ffmpeg's `encoder` at `kbps` and decode back: the artefacts of a lossy codec."""
    import subprocess
    fmt = {encoder_name: container for encoder_name, container, _ in CODECS}[encoder]
    rate = 8000 if encoder == "libgsm" else sample_rate
    raw = ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1"]
    encode = ["ffmpeg", "-nostdin", "-loglevel", "error", *raw, "-i", "-", "-ar", str(rate), "-c:a", encoder,
              *([] if encoder == "libgsm" else ["-b:a", f"{kbps}k"]), "-f", fmt, "-"]
    compressed = subprocess.run(encode, input=np.ascontiguousarray(audio, np.float32).tobytes(),
                                capture_output=True, check=True).stdout
    decode = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", fmt, "-i", "-", *raw, "-"]
    out = np.frombuffer(subprocess.run(decode, input=compressed, capture_output=True, check=True).stdout, np.float32)
    return out.copy()


def apply_recording(audio: np.ndarray, recording: Recording, rng: np.random.Generator) -> np.ndarray:
    """16 kHz float32 in and out; peaks are kept below full scale after the gain."""
    audio = apply_augmentation(audio, recording.room, rng)
    if recording.channel == "bandlimit":
        audio = band_limit(audio, recording.low_hz, recording.high_hz)
    elif recording.channel == "telephone":
        audio = telephone(audio)
    elif recording.channel == "codec":
        audio = through_codec(audio, recording.codec, recording.kbps)
    audio = audio * np.float32(10 ** (recording.gain_db / 20))
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    return audio / np.float32(peak / 0.99) if peak > 0.99 else audio


def _augment_one(job: tuple) -> str | None:
    from asr.audio import load_audio, write_flac
    utt_id, source, target, seed = job
    if Path(target).exists():
        return None
    rng = np.random.default_rng(seed)
    recording = draw_recording(rng)
    audio = apply_recording(load_audio(source), recording, rng)
    write_flac(target, audio)
    return f"{utt_id}\t{recording.describe()}"


def augment_corpus(src_dir: str | os.PathLike, out_dir: str | os.PathLike, copy: int, seed: int = 0,
                   jobs: int = 2) -> int:
    """Write copy number `copy` of the LibriSpeech-format corpus `src_dir` to `out_dir`, every utterance through a
    random recording chain seeded by (seed, copy, utterance id). Files already written are kept, so a rerun finishes
    an interrupted one. Returns the number of files written now."""
    import multiprocessing
    import zlib

    from training.librispeech import load_manifest
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    jobs_list, chapters = [], {}
    for utt in load_manifest(src_dir):
        speaker, chapter, _ = utt.id.split("-")
        folder = out_dir / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        chapters.setdefault(folder, []).append(f"{utt.id} {utt.text}\n")
        utt_seed = [seed, copy, zlib.crc32(utt.id.encode())]
        jobs_list.append((utt.id, utt.path, str(folder / f"{utt.id}.flac"), utt_seed))
    written = 0
    with multiprocessing.Pool(jobs) as pool, (out_dir / "recordings.tsv").open("a", encoding="utf-8") as log_file:
        for line in pool.imap_unordered(_augment_one, jobs_list, chunksize=16):
            if line:
                log_file.write(line + "\n")
                written += 1
    for folder, lines in chapters.items():  # transcripts last: a half-written corpus is never mistaken for whole
        (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("".join(lines), encoding="utf-8")
    return written
