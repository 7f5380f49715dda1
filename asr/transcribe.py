"""Offline transcription of files in bounded memory.

The unidirectional model streams through a file with `StreamingRecognizer` (the same code the server runs, so both
give the same text). The bidirectional model reads overlapping windows: each window sees CONTEXT seconds of audio on
either side of the part whose outputs it keeps.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import torch

from asr.audio import SAMPLE_RATE, AudioError, StreamResampler, load_audio, resample
from asr.decoding import Transcript
from asr.features import FRAME_RATE, N_MELS, StreamingFeatures
from asr.lm_decoding import GREEDY, Decoding
from asr.model import AcousticModel
from asr.recognizer import Endpointing, StreamingRecognizer
from asr.second_pass import SecondPass

BLOCK_SECONDS = 10.0  # audio read per step
WINDOW_SECONDS = 30.0  # bidirectional model: outputs kept per window
CONTEXT_SECONDS = 3.0  # bidirectional model: audio seen on either side of a window


def audio_blocks(path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 16 kHz blocks of a file, read and resampled block by block where soundfile can read the format,
    else decoded whole (MP3 and the like through librosa). Raises AudioError naming the file."""
    path = os.fspath(path)
    try:
        handle = sf.SoundFile(path)
    except Exception:
        audio = load_audio(path)  # raises AudioError with the cause, or decodes what soundfile cannot
        step = int(block_seconds * SAMPLE_RATE)
        for start in range(0, len(audio), step):
            yield audio[start : start + step]
        return
    with handle:
        if handle.frames == 0:
            raise AudioError(f"{path}: holds no audio samples")
        resampler = StreamResampler(handle.samplerate) if handle.samplerate != SAMPLE_RATE else None
        block = max(1, int(block_seconds * handle.samplerate))
        try:
            for data in handle.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = data.mean(axis=1)
                yield resampler(mono) if resampler else mono
        except Exception as error:
            raise AudioError(f"{path}: cannot decode audio ({error})") from error
        if resampler:
            yield resampler(np.zeros(0, dtype=np.float32), last=True)


def transcribe_stream(model: AcousticModel, blocks: Iterator[np.ndarray], endpointing: Endpointing = Endpointing(),
                      progress: Callable[[float], None] | None = None, sample_rate: int = SAMPLE_RATE,
                      decoding: Decoding = GREEDY, second_pass: SecondPass | None = None) -> Transcript:
    """Unidirectional model: the streaming recognizer over the blocks (at `sample_rate`), state carried; utterances
    joined. The recognizer closes the last utterance itself once told that no more audio comes. With a second
    pass, each utterance the stream model's endpoints cut is transcribed again by the bidirectional model."""
    recognizer = StreamingRecognizer(model, sample_rate, endpointing, decoding, second_pass=second_pass)
    utterances = []
    for block in blocks:
        utterances += recognizer.accept_waveform(block)
        if progress:
            progress(len(block) / sample_rate)
    utterances += recognizer.finish()
    return Transcript.join(utterances)


def transcribe_windows(model: AcousticModel, blocks: Iterator[np.ndarray],
                       progress: Callable[[float], None] | None = None, decoding: Decoding = GREEDY) -> Transcript:
    """Bidirectional model over overlapping windows of the blocks' log-mel (`decode_windows`); memory stays
    bounded by the window size (and the beam search's by its pruning)."""
    extract = StreamingFeatures()

    def frames() -> Iterator[torch.Tensor]:
        for block in blocks:
            yield extract(block)
            if progress:
                progress(len(block) / SAMPLE_RATE)

    decoder = decoding.decoder(model.dims.frame_shift)
    decode_windows(model, frames(), decoder)
    return decoder.result()


@torch.inference_mode()
def decode_windows(model: AcousticModel, chunks: Iterable[torch.Tensor], decoder) -> None:
    """Feed `decoder` the bidirectional model's outputs over log-mel frames arriving in chunks, (frames, n_mels)
    each: windows of WINDOW_SECONDS whose outputs are kept, each seeing CONTEXT_SECONDS of frames on either side,
    normalised as one pass over all the frames would be. A recording shorter than one window is one model call."""
    stack = model.dims.stack
    window = int(WINDOW_SECONDS * FRAME_RATE) // stack * stack
    context = int(CONTEXT_SECONDS * FRAME_RATE) // stack * stack
    buffer, buffer_start, next_out = torch.zeros(0, N_MELS), 0, 0  # frames; absolute index of buffer[0]; next kept frame
    norm = None  # the running normalisation of every frame before buffer[0]: windows see the one-pass values

    def run(hi: int) -> None:
        """Decode the window that starts at buffer[0] (its left context, then the frames it keeps) and ends at hi."""
        nonlocal buffer, buffer_start, next_out, norm
        x = buffer[: hi - buffer_start]
        if len(x) >= stack:
            log_probs, _, _ = model(x[None], torch.tensor([len(x)]), norm=norm)
            first = (next_out - buffer_start) // stack
            decoder.feed(log_probs[0, first : first + window // stack])
        next_out += window
        dropped = min(max(next_out - context, buffer_start) - buffer_start, len(buffer))
        if dropped:
            _, norm = model.normalize(buffer[None, :dropped], torch.tensor([dropped]), norm)
        buffer, buffer_start = buffer[dropped:], buffer_start + dropped

    for chunk in chunks:
        buffer = torch.cat([buffer, chunk])
        while buffer_start + len(buffer) >= next_out + window + context:
            run(next_out + window + context)
    while buffer_start + len(buffer) > next_out:
        run(buffer_start + len(buffer))


def transcribe_file(model: AcousticModel, path: str | os.PathLike, endpointing: Endpointing = Endpointing(),
                    progress: Callable[[float], None] | None = None, decoding: Decoding = GREEDY,
                    second_pass: SecondPass | None = None, block_seconds: float = BLOCK_SECONDS) -> Transcript:
    """Transcribe one file with either kind of model (a unidirectional one with an optional second pass), reading it
    in blocks of `block_seconds`. Raises AudioError naming the file if it cannot be read."""
    blocks = audio_blocks(path, block_seconds)
    if model.streaming:
        return transcribe_stream(model, blocks, endpointing, progress, decoding=decoding, second_pass=second_pass)
    return transcribe_windows(model, blocks, progress, decoding)


def transcribe_audio(model: AcousticModel, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     endpointing: Endpointing = Endpointing(), decoding: Decoding = GREEDY,
                     second_pass: SecondPass | None = None) -> Transcript:
    """Transcribe a mono float32 signal (samples,) at `sample_rate` held in memory: whole audio -> recognizer ->
    transcript. A unidirectional model runs the very `StreamingRecognizer` the server runs (resampling as it
    streams), so this is the transcript a server stream of the same audio ends with, however it was chunked."""
    audio = np.asarray(audio, dtype=np.float32)
    if model.streaming:
        return transcribe_stream(model, iter([audio]), endpointing, sample_rate=sample_rate, decoding=decoding,
                                 second_pass=second_pass)
    if sample_rate != SAMPLE_RATE:
        audio = resample(audio, sample_rate)
    return transcribe_windows(model, iter([audio]), decoding=decoding)


def audio_duration(path: str | os.PathLike) -> float | None:
    """Seconds of audio in `path` from its header, or None when only decoding would tell."""
    try:
        info = sf.info(os.fspath(path))
        return info.frames / info.samplerate
    except Exception:
        return None
