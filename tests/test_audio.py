import subprocess

import numpy as np
import pytest
import soundfile as sf

from asr.audio import (
    AudioError,
    StreamResampler,
    check_sample_rate,
    float_to_pcm16,
    load_audio,
    pcm16_to_float,
    pcm_to_float,
    resample,
)


def tone(seconds=1.0, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate,subtype,suffix", [(8000, "PCM_16", ".wav"), (44100, "PCM_24", ".flac"),
                                                 (48000, "VORBIS", ".ogg"), (22050, "FLOAT", ".wav")])
def test_any_rate_and_format_to_16k_mono(tmp_path, rate, subtype, suffix):
    stereo = np.stack([tone(1.0, rate), tone(1.0, rate) * 0.5], axis=1)
    path = tmp_path / f"x{suffix}"
    sf.write(path, stereo, rate, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 2
    assert 0.2 < np.abs(audio).max() < 0.9


def test_mp3_through_ffmpeg(tmp_path):
    wav = tmp_path / "x.wav"
    sf.write(wav, tone(), 16000)
    mp3 = tmp_path / "x.mp3"
    if subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(mp3)]).returncode != 0:
        pytest.skip("ffmpeg cannot write MP3 here")
    assert abs(len(load_audio(mp3)) - 16000) < 1200


def test_bad_files_name_the_file_and_cause(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: file is empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.flac").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.flac: cannot decode"):
        load_audio(tmp_path / "junk.flac")


def test_stream_resampler_matches_whole():
    signal = tone(2.0, 44100)
    whole = resample(signal, 44100)
    stream = StreamResampler(44100)
    parts = [stream(signal[i : i + 999]) for i in range(0, len(signal), 999)] + [stream(np.zeros(0, np.float32), last=True)]
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole)) - 200
    assert np.abs(streamed[200:n] - whole[200:n]).max() < 1e-3


def test_pcm16_round_trip_and_rate_checks():
    audio = tone(0.1)
    np.testing.assert_allclose(pcm16_to_float(float_to_pcm16(audio)), audio, atol=1 / 32768)
    with pytest.raises(AudioError, match="3 bytes is not whole frames"):
        pcm16_to_float(b"abc")
    assert check_sample_rate(8000) == 8000
    with pytest.raises(ValueError, match="4000 is outside 8000..48000"):
        check_sample_rate(4000)
    with pytest.raises(ValueError, match="not a whole number"):
        check_sample_rate("16000")


def test_pcm_of_any_width_and_channels_to_mono_float():
    """Wyoming clients declare their PCM: 1-byte unsigned, 2- and 4-byte signed, any number of channels."""
    assert pcm_to_float(bytes([0, 128, 255]), width=1).tolist() == [-1.0, 0.0, 127 / 128]
    ints = np.array([-2**31, 0, 2**30], dtype="<i4")
    assert pcm_to_float(ints.tobytes(), width=4).tolist() == [-1.0, 0.0, 0.5]
    stereo = np.array([[1000, 3000], [-32768, 32767]], dtype="<i2")  # two frames, left and right
    np.testing.assert_allclose(pcm_to_float(stereo.tobytes(), 2, 2), [2000 / 32768, -0.5 / 32768])
    audio = tone(0.1)
    np.testing.assert_array_equal(pcm_to_float(float_to_pcm16(audio)), pcm16_to_float(float_to_pcm16(audio)))
    with pytest.raises(ValueError, match="not whole frames"):
        pcm_to_float(b"\0\0\0", 2, 1)
    with pytest.raises(ValueError, match="3 bytes a sample"):
        pcm_to_float(b"\0\0\0", 3, 1)
