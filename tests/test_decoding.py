import pytest
import torch

from asr.decoding import GreedyCTCDecoder, ctc_greedy
from asr.tokenizer import VOCAB


def posteriors(labels: str) -> torch.Tensor:
    """One-hot-ish log-probs spelling `labels`, '_' = blank."""
    ids = [0 if ch == "_" else VOCAB.index(ch) for ch in labels]
    probs = torch.full((len(ids), len(VOCAB)), 0.01)
    for t, i in enumerate(ids):
        probs[t, i] = 0.9
    return (probs / probs.sum(-1, keepdim=True)).log()


def test_greedy_collapses_repeats_and_blanks_with_times():
    result = ctc_greedy(posteriors("_HH_E_LL_L_O__ __WW_O_RLD_"), frame_shift=0.03)
    assert result.text == "HELLO WORLD"
    hello, world = result.words
    assert hello.word == "HELLO" and world.word == "WORLD"
    assert abs(hello.start - 0.03) < 1e-9 and hello.end <= world.start
    assert hello.conf == pytest.approx(0.9 / (0.9 + 0.01 * (len(VOCAB) - 1)))


def test_any_chunking_gives_same_result():
    log_probs = posteriors("_HH_E_LL_L_O__ __WW_O_RLD_")
    whole = ctc_greedy(log_probs, 0.03)
    for size in (1, 2, 5):
        decoder = GreedyCTCDecoder(0.03)
        for start in range(0, len(log_probs), size):
            decoder.feed(log_probs[start : start + size])
        assert decoder.result() == whole


def test_clear_keeps_absolute_time():
    decoder = GreedyCTCDecoder(0.1)
    decoder.feed(posteriors("_A_"))
    decoder.clear()
    decoder.feed(posteriors("__B"))
    (word,) = decoder.result().words
    assert word.word == "B" and abs(word.start - 0.5) < 1e-9
