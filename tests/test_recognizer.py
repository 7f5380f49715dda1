"""The streaming recognizer on real speech with the shipped stream model."""
import jiwer
import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.decoding import Transcript
from asr.model import look_ahead
from asr.recognizer import Endpointing, StreamingRecognizer, decode_streams
from asr.transcribe import transcribe_audio, transcribe_file
from tests.helpers import SENTENCES


@pytest.fixture(scope="module")
def ahead_model(stream_model):
    """The shipped model reading 60 ms more past each step, on those frames with random weights (`look_ahead`
    starts them at zero, which would hide a lookahead streamed wrong)."""
    model = look_ahead(stream_model, stream_model.dims.lookahead + 6).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model.lstms[0].weight_ih_l0[:, -6 * 80 :].normal_(std=0.05)
    return model


def stream_in_chunks(model, audio, chunk):
    recognizer = StreamingRecognizer(model)
    finals = []
    for start in range(0, len(audio), chunk):
        finals += recognizer.accept_waveform(audio[start : start + chunk])
    return Transcript.join(finals + recognizer.finish())


def test_recognizes_real_speech(stream_model, speech_wav):
    # The shipped model is trained mostly on real speech and hears espeak-ng's robotic voice as a foreign accent:
    # greedy letters get most characters of the sentence right, not yet most words.
    text = transcribe_file(stream_model, speech_wav).text
    assert jiwer.cer(SENTENCES["hello"].upper(), text) < 0.5, text


@pytest.mark.parametrize("chunk", [16, 333, 3200, 32000])
@pytest.mark.parametrize("model_name", ["stream_model", "ahead_model"])
def test_any_chunking_gives_the_file_transcript(request, model_name, long_speech, chunk):
    model = request.getfixturevalue(model_name)
    whole = transcribe_file(model, long_speech)
    streamed = stream_in_chunks(model, load_audio(long_speech), chunk)
    assert streamed.text == whole.text
    assert [w.word for w in streamed.words] == [w.word for w in whole.words]
    for a, b in zip(streamed.words, whole.words):
        assert a.start == pytest.approx(b.start) and a.end == pytest.approx(b.end)


def test_endpoints_split_utterances_with_absolute_times(stream_model, long_speech):
    recognizer = StreamingRecognizer(stream_model, endpointing=Endpointing(silence=0.5))
    audio = load_audio(long_speech)
    finals = []
    for start in range(0, len(audio), 1600):
        finals += recognizer.accept_waveform(audio[start : start + 1600])
    finals += [f for f in recognizer.finish() if f.text]
    assert len(finals) >= 4, [f.text for f in finals]  # six sentences separated by 1 s of silence
    starts = [f.words[0].start for f in finals if f.words]
    assert starts == sorted(starts) and starts[-1] > 10.0  # absolute stream time, not per utterance


@pytest.mark.parametrize("model_name", ["stream_model", "ahead_model"])
def test_batched_step_equals_separate_streams(request, model_name, speech_dir):
    stream_model = request.getfixturevalue(model_name)
    audios = [load_audio(speech_dir / f"{name}.wav") for name in SENTENCES]
    alone = [stream_in_chunks(stream_model, a, 4000).text for a in audios]
    recognizers = [StreamingRecognizer(stream_model) for _ in audios]
    finals = [[] for _ in audios]
    longest = max(len(a) for a in audios)
    rng = np.random.default_rng(0)
    position = [0] * len(audios)
    while min(position) < longest:
        for i, audio in enumerate(audios):  # every stream gets a different chunk size each round
            n = int(rng.integers(100, 6000))
            recognizers[i].accept_audio(audio[position[i] : position[i] + n])
            position[i] += n
        for i, new in enumerate(decode_streams(stream_model, recognizers)):
            finals[i] += new
    batched = [Transcript.join(f + r.finish()).text for f, r in zip(finals, recognizers)]
    assert batched == alone


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampled_stream(stream_model, speech_dir, speech_wav, rate):
    """Any client rate is resampled chunk by chunk with the filter state carried: the result is that of the whole
    signal at that rate in one piece. At 44.1 kHz the model hears what it hears at 16 kHz: nearly the same letters
    (a resampled signal is not the same signal: a letter here and there may change, a word boundary may move), where
    a rate mistake garbles most of them. At 8 kHz it need not be: the shipped models were trained on wideband speech
    only."""
    from asr.audio import resample

    audio = resample(load_audio(speech_wav), 16000, rate)

    def recognize(chunk):
        recognizer = StreamingRecognizer(stream_model, sample_rate=rate)
        finals = []
        for start in range(0, len(audio), chunk):
            finals += recognizer.accept_waveform(audio[start : start + chunk])
        return Transcript.join(finals + recognizer.finish()).text

    chunked = recognize(555)
    assert chunked == recognize(len(audio))
    if rate > 16000:  # the letters of every test sentence, pooled
        letters = lambda text: text.replace(" ", "") or "-"
        references, resampled, mistaken = [], [], []
        for wav in sorted(speech_dir.glob("*.wav")):
            signal = resample(load_audio(wav), 16000, rate)
            references.append(letters(transcribe_file(stream_model, wav).text))
            resampled.append(letters(transcribe_audio(stream_model, signal, sample_rate=rate).text))
            mistaken.append(letters(transcribe_audio(stream_model, signal, sample_rate=16000).text))
        assert jiwer.cer(references, resampled) <= 0.1, (resampled, references)
        assert jiwer.cer(references, mistaken) >= 0.5, (mistaken, references)


def test_bidirectional_model_cannot_stream(offline_model):
    with pytest.raises(ValueError, match="unidirectional"):
        StreamingRecognizer(offline_model)
