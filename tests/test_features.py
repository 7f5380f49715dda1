import librosa
import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.features import (
    HOP_LENGTH,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    StreamingFeatures,
    log_mel,
    num_frames,
    take_new_frames,
)


def test_log_mel_matches_librosa(speech_wav):
    audio = load_audio(speech_wav)
    ours = log_mel(audio).numpy()
    power = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT,
                                           window="hann", center=False, power=2.0, n_mels=N_MELS)
    reference = np.log(power + LOG_FLOOR).T
    assert ours.shape == reference.shape == (num_frames(len(audio)), N_MELS)
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)


def test_batched_equals_single(speech_wav):
    audio = torch.from_numpy(load_audio(speech_wav))
    batch = log_mel(torch.stack([audio, audio * 0.5]))
    assert batch.shape[0] == 2
    torch.testing.assert_close(batch[0], log_mel(audio))


@pytest.mark.parametrize("chunk", [1, 7, 161, 399, 400, 401, 3331, 32000])
def test_streaming_extractor_equals_whole(speech_wav, chunk):
    audio = load_audio(speech_wav)
    whole = log_mel(audio)
    extract = StreamingFeatures()
    frames = [extract(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    streamed = torch.cat(frames)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-5)


def test_streaming_extractor_random_chunks(speech_wav):
    audio = load_audio(speech_wav)
    rng = np.random.default_rng(3)
    extract, frames, i = StreamingFeatures(), [], 0
    while i < len(audio):
        n = int(rng.integers(0, 5000))
        frames.append(extract(audio[i : i + n]))
        i += n
    torch.testing.assert_close(torch.cat(frames), log_mel(audio), atol=1e-5, rtol=1e-5)


def test_streams_framed_together_equal_each_alone(speech_wav):
    """A server step frames every stream's audio in one batched call: each stream still gets its own frames."""
    audio = load_audio(speech_wav)
    rng = np.random.default_rng(5)
    streams = [StreamingFeatures() for _ in range(4)]
    signals = [audio[i * 1000 :] for i in range(4)]
    got, offsets = [[] for _ in streams], [0] * 4
    for _ in range(12):
        for k, stream in enumerate(streams):  # unequal chunks, one stream sometimes with nothing new
            n = int(rng.integers(0, 6000)) if k else 0
            stream.push(signals[k][offsets[k] : offsets[k] + n])
            offsets[k] += n
        for k, frames in enumerate(take_new_frames(streams)):
            got[k].append(frames)
    for k in range(4):
        expected = log_mel(signals[k][: offsets[k]])
        if k == 0:
            assert expected.shape[0] == 0 and all(f.shape == (0, N_MELS) for f in got[k])
            continue
        torch.testing.assert_close(torch.cat(got[k]), expected, atol=1e-5, rtol=1e-5)


def test_short_input_gives_no_frames():
    assert log_mel(np.zeros(N_FFT - 1, dtype=np.float32)).shape == (0, N_MELS)
    assert StreamingFeatures()(np.zeros(10, dtype=np.float32)).shape == (0, N_MELS)
