import math

import pytest
import torch

from asr.model import AcousticModel, ModelDims, grow, look_ahead, widen


def small(bidirectional=False, normalization="global", residual_layers=0, lookahead=0):
    torch.manual_seed(0)
    dims = ModelDims(hidden=48, layers=3, stack=3, bidirectional=bidirectional, normalization=normalization,
                     residual_layers=residual_layers, lookahead=lookahead)
    return AcousticModel(dims).eval()


def test_shapes():
    model = small()
    features = torch.randn(2, 100, 80)
    log_probs, out_lengths, (h, c, norm) = model(features, torch.tensor([100, 61]))
    assert log_probs.shape == (2, 33, 29)
    assert out_lengths.tolist() == [33, 20]
    assert h.shape == c.shape == (3, 2, 48) and norm.shape == (1, 2, 81)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 33))


@pytest.mark.parametrize("normalization,residual_layers", [("global", 0), ("running", 0), ("running", 2)])
@pytest.mark.parametrize("chunk_frames", [3, 6, 21, 99])
def test_chunked_with_state_equals_whole(chunk_frames, normalization, residual_layers):
    model = small(normalization=normalization, residual_layers=residual_layers)
    features = torch.randn(1, 300, 80)
    whole, _, whole_state = model(features, torch.tensor([300]))
    state, outputs = model.init_state(1), []
    for start in range(0, 300, chunk_frames):
        chunk = features[:, start : start + chunk_frames]
        out, _, state = model(chunk, torch.tensor([chunk.shape[1]]), state)
        outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(state[0], whole_state[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(state[2], whole_state[2])


@pytest.mark.parametrize("normalization,residual_layers", [("global", 0), ("running", 0), ("running", 2)])
def test_padded_batch_gives_each_item_its_own_result_and_state(normalization, residual_layers):
    model = small(normalization=normalization, residual_layers=residual_layers)
    a, b = torch.randn(1, 90, 80), torch.randn(1, 45, 80)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, 0, 0, 45))])
    log_probs, _, (h, _, norm) = model(batch, torch.tensor([90, 45]))
    alone, _, (h_alone, _, norm_alone) = model(b, torch.tensor([45]))
    torch.testing.assert_close(log_probs[1, :15], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(h[:, 1], h_alone[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(norm[:, 1], norm_alone[:, 0])


def test_running_normalization_forgets_a_microphone_gain():
    """A gain of g on the audio adds log(g**2) to every log-mel bin. The running mean absorbs it: the difference
    left after t frames is the prior's share, offset * prior / (prior + t + 1), over the training std."""
    model = small(normalization="running")
    features = torch.randn(1, 1000, 80)
    lengths = torch.tensor([1000])
    offset = 2 * math.log(10.0)  # 20 dB louder
    quiet, _ = model.normalize(features, lengths)
    loud, _ = model.normalize(features + offset, lengths)
    prior = model.dims.norm_prior_frames
    expected = offset * prior / (prior + torch.arange(1, 1001.0))
    torch.testing.assert_close((loud - quiet)[0, :, 0], expected, atol=1e-4, rtol=1e-4)
    assert float((loud - quiet)[0, -1].abs().max()) < 0.1 * offset
    global_model = small(normalization="global")
    assert float((global_model.normalize(features + offset, lengths)[0]
                  - global_model.normalize(features, lengths)[0]).abs().min()) > 0.99 * offset


def test_bidirectional_refuses_state():
    model = small(bidirectional=True)
    log_probs, _, state = model(torch.randn(1, 30, 80), torch.tensor([30]))
    assert log_probs.shape == (1, 10, 29) and state is None
    with pytest.raises(ValueError, match="bidirectional"):
        model(torch.randn(1, 30, 80), torch.tensor([30]), model.init_state(1))


def test_too_few_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 frames"):
        small()(torch.randn(1, 2, 80), torch.tensor([2]))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_grown_model_starts_as_the_model_it_grew_from(bidirectional):
    model = small(bidirectional=bidirectional, normalization="running")
    grown = grow(model, 5).eval()
    assert (grown.dims.layers, grown.dims.residual_layers) == (5, 2)
    assert [grown.is_residual(i) for i in range(5)] == [False, False, False, True, True]
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 75])  # the shorter item takes the packed path
    torch.testing.assert_close(grown(features, lengths)[0], model(features, lengths)[0], atol=0, rtol=0)
    # and the new layers learn: their cell-candidate weights get gradients from the first step
    grown.train()
    grown(features, lengths)[0].logsumexp(-1).sum().backward()
    candidate = grown.lstms[4].weight_ih_l0.grad.chunk(4)[2]  # PyTorch's gate order: i, f, g, o
    assert candidate.abs().sum() > 0


def test_residual_layers_need_a_layer_below_them():
    with pytest.raises(ValueError, match="residual_layers 3 is outside 0..2"):
        ModelDims(layers=3, residual_layers=3)
    with pytest.raises(ValueError, match="cannot grow a 3-layer model to 3 layers"):
        grow(small(), 3)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_widened_model_starts_as_the_model_it_widened(bidirectional):
    model = small(bidirectional=bidirectional, normalization="running", residual_layers=1)
    wide = widen(model, 64).eval()
    assert wide.dims.hidden == 64 and wide.lstms[1].weight_hh_l0.shape == (4 * 64, 64)
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 75])
    torch.testing.assert_close(wide(features, lengths)[0], model(features, lengths)[0], atol=1e-5, rtol=1e-5)
    # the old units' zero columns on the new units learn from the first step
    wide.train()
    wide(features, lengths)[0].logsumexp(-1).sum().backward()
    assert wide.lstms[1].weight_ih_l0.grad[:48, 48:64].abs().sum() > 0
    assert wide.output.weight.grad[:, 48:64].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot widen a model of 48 hidden units to 48"):
        widen(model, 48)


def test_steps_wait_for_their_lookahead_until_the_end():
    model = small(lookahead=4)
    lengths = torch.tensor([9, 10, 2, 7])
    assert model.steps(lengths, final=False).tolist() == [1, 2, 0, 1]
    assert model.steps(lengths, final=True).tolist() == [3, 3, 0, 2]
    assert model.steps(lengths, final=torch.tensor([True, False, False, True])).tolist() == [3, 2, 0, 2]
    assert small().steps(lengths, final=False).tolist() == [3, 3, 0, 2]  # no lookahead: nothing to wait for
    assert [model.steps(n, final=False) for n in (9, 10, 2)] == [1, 2, 0]  # one stream's buffer, as ints
    with pytest.raises(ValueError, match="at least 3 frames and 4 more unless final"):
        model(torch.randn(1, 5, 80), torch.tensor([5]), model.init_state(1), final=False)


@pytest.mark.parametrize("normalization", ["global", "running"])
@pytest.mark.parametrize("chunk_frames", [1, 5, 21, 99])
def test_lookahead_streams_as_one_pass(chunk_frames, normalization):
    """A stream's caller passes the frames it holds, keeps those of no step (`steps`) and passes them again with
    the next, and says `final` with the last: outputs and state are those of one pass over the whole input."""
    model = small(normalization=normalization, lookahead=5)
    features = torch.randn(300, 80)
    whole, _, whole_state = model(features[None], torch.tensor([300]))
    state, held, outputs = model.init_state(1), features[:0], []
    for start in range(0, 300, chunk_frames):
        held = torch.cat([held, features[start : start + chunk_frames]])
        final = start + chunk_frames >= 300
        if model.steps(len(held), final) == 0:
            continue
        out, steps, state = model(held[None], torch.tensor([len(held)]), state, final=final)
        outputs.append(out[0])
        held = held[int(steps[0]) * 3 :]
    torch.testing.assert_close(torch.cat(outputs), whole[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(state[0], whole_state[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(state[2], whole_state[2])


def test_lookahead_batch_of_final_and_waiting_items_gives_each_its_own_result():
    model = small(normalization="running", lookahead=5)
    a, b = torch.randn(1, 90, 80), torch.randn(1, 45, 80)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, 0, 0, 45))])
    log_probs, steps, (h, _, norm) = model(batch, torch.tensor([90, 45]), model.init_state(2),
                                           final=torch.tensor([True, False]))
    assert steps.tolist() == [30, 13]  # b waits for 5 frames after its 13th step
    for i, (item, final, n) in enumerate([(a, True, 30), (b, False, 13)]):
        alone, _, (_, _, norm_alone) = model(item, torch.tensor([item.shape[1]]), model.init_state(1), final=final)
        torch.testing.assert_close(log_probs[i, :n], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(norm[:, i], norm_alone[:, 0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_model_looking_further_ahead_starts_as_the_model_it_extends(bidirectional):
    model = small(bidirectional=bidirectional, normalization="running", lookahead=1)
    ahead = look_ahead(model, 4).eval()
    assert ahead.lstms[0].input_size == 80 * (3 + 4)
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 75])
    torch.testing.assert_close(ahead(features, lengths)[0], model(features, lengths)[0], atol=1e-6, rtol=0)
    # the frames added are read with zero weights that learn from the first step
    ahead.train()
    ahead(features, lengths)[0].logsumexp(-1).sum().backward()
    assert ahead.lstms[0].weight_ih_l0.grad[:, 80 * 4 :].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot extend a model's lookahead of 1 frames to 1"):
        look_ahead(model, 1)
