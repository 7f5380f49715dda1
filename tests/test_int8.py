"""int8 models (`--precision int8`): the shipped models quantised, their words bounded against float32 on real speech
made by the tests, through the Python API, `asr transcribe` and a real server."""
import io

import jiwer
import pytest
import torch

import asr
from asr.audio import float_to_pcm16, load_audio
from asr.checkpoint import load_model
from asr.lm_decoding import GREEDY
from asr.tokenizer import normalize_text
from asr.transcribe import transcribe_file
from server.app import ServerThread
from server.settings import ServerSettings
from tests.helpers import SENTENCES
from tests.test_server import final_text, stream
from tests.test_transcribe import run_asr


def weight_bytes(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


@pytest.mark.parametrize("name", ["stream", "offline"])
def test_int8_words_stay_within_a_bound_of_float32(name, speech_dir, long_speech):
    float32, int8 = load_model(name), load_model(name, precision="int8")
    assert weight_bytes(int8) < 0.3 * weight_bytes(float32)
    files = [speech_dir / f"{key}.wav" for key in SENTENCES] + [long_speech]
    references = [normalize_text(text) for text in SENTENCES.values()] + [
        normalize_text(" ".join(list(SENTENCES.values()) * 2))]
    exact = [transcribe_file(float32, path, decoding=GREEDY).text for path in files]
    quantised = [transcribe_file(int8, path, decoding=GREEDY).text for path in files]
    # The bound: int8 changes few of the float32 model's characters and is as accurate on these sentences (on the
    # dev suite it moves WER by less than a point either way: the model card).
    assert jiwer.cer(exact, quantised) <= 0.05, (exact, quantised)
    assert jiwer.cer(references, quantised) <= jiwer.cer(references, exact) + 0.02, (exact, quantised)
    assert all(quantised)


def test_asr_transcribe_precision_int8(speech_wav):
    result = run_asr("transcribe", speech_wav, "--precision", "int8", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == asr.load_model("stream", precision="int8").transcribe(speech_wav).text

    result = run_asr("transcribe", speech_wav, "--precision", "int4", "-q")
    assert result.returncode == 2 and "'int4' is not one of float32, int8" in result.stderr


def test_bad_precisions_are_clear_errors():
    with pytest.raises(ValueError, match="int8 models run on the CPU, not cuda"):
        load_model("stream", device="cuda", precision="int8")
    with pytest.raises(ValueError, match="precision 'half' is not one of float32, int8"):
        load_model("stream", precision="half")
    with pytest.raises(ValueError, match="precision 'half'"):
        ServerSettings(precision="half")


def test_an_int8_server_streams_words_close_to_float32(speech_wav, stream_model):
    pcm = float_to_pcm16(load_audio(speech_wav))
    exact = asr.load_model("stream").transcribe(speech_wav).text  # float32, the server's default decoding
    with ServerThread(ServerSettings(port=0, precision="int8")) as server:
        assert server.server.model is not stream_model
        assert isinstance(server.server.model.output, torch.ao.nn.quantized.dynamic.Linear)
        streamed = final_text(stream(server.url, pcm, 3200))
    assert streamed and jiwer.cer(exact, streamed) <= 0.1, (exact, streamed)
