"""The LSTM's gates, made visible: input, forget and output gate activations of one layer for one utterance.

nn.LSTM does not expose its gates, so they are recomputed exactly from the layer's weights, its input sequence and
its own hidden outputs: gates_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, split in PyTorch's order (i, f, g, o).
"""
from __future__ import annotations

import torch

from asr.model import AcousticModel


@torch.inference_mode()
def gate_activations(model: AcousticModel, features: torch.Tensor, layer: int = 0) -> dict[str, torch.Tensor]:
    """features: (frames, n_mels) log-mel of one utterance.

    Returns {"input", "forget", "output"}: (steps, hidden) sigmoid activations of `layer`'s forward direction, and
    "cell": (steps, hidden) its cell candidate (tanh), with steps = frames // stack.
    """
    if not 0 <= layer < model.dims.layers:
        raise ValueError(f"layer {layer} is outside 0..{model.dims.layers - 1}")
    x, _, _ = model.stack_frames(features[None], torch.tensor([len(features)]))
    if x.shape[1] == 0:
        raise ValueError(f"utterance too short: {len(features)} frames, need at least {model.dims.stack}")
    for i, lstm in enumerate(model.lstms[:layer]):
        x = model.layer_result(i, x, lstm(x)[0])
    lstm = model.lstms[layer]
    outputs, _ = lstm(x)
    hidden = model.dims.hidden
    h = outputs[0, :, :hidden]  # forward direction
    h_previous = torch.cat([torch.zeros(1, hidden), h[:-1]])
    gates = x[0] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h_previous @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    return {"input": i.sigmoid(), "forget": f.sigmoid(), "output": o.sigmoid(), "cell": g.tanh()}
