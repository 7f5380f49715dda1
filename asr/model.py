"""The acoustic model: normalised log-mel -> frame stacking -> LSTM layers -> per-frame log-probabilities over the
character vocabulary, trained with CTC.

Unidirectional models stream: `forward` takes and returns every layer's `(h, c)`, so running any chunking of an
input with the state carried gives the outputs of one pass over the whole input.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.features import FRAME_RATE, N_MELS
from asr.tokenizer import VOCAB

# (h, c, norm): h and c (layers, batch, hidden); norm (1, batch, n_mels + 1) float64, the running sum of the
# feature frames seen so far and their count (see `AcousticModel.normalize`). Every part has batch on dim 1.
State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
NORMALIZATIONS = ("global", "running")
PRECISIONS = ("float32", "int8")  # of a loaded model's weights (`quantized`)


@dataclass(frozen=True)
class ModelDims:
    """Sizes of an AcousticModel; saved in every checkpoint."""

    n_mels: int = N_MELS
    stack: int = 3  # consecutive 10 ms frames stacked into one model step (3 -> 30 ms, 33 steps per second)
    hidden: int = 320
    layers: int = 3
    bidirectional: bool = False
    vocab: int = len(VOCAB)
    dropout: float = 0.1
    # "global": fixed training-set mean and std. "running": each stream's own running mean (a prior of
    # `norm_prior_frames` frames at the training-set mean, then every frame so far), divided by the training std.
    normalization: str = "global"
    norm_prior_frames: int = 100
    # The top `residual_layers` layers add their input to their output. Layers grown onto a trained model (`grow`)
    # are residual: with zero weights a layer outputs zeros, so the grown model starts as the trained one.
    residual_layers: int = 0
    # Feature frames after a step's own that its input holds as well (10 ms each, zeros past the end of the audio):
    # each output sees that far ahead, and a stream's words come that much later.
    lookahead: int = 0

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization {self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        if not 0 <= self.residual_layers < self.layers:
            raise ValueError(f"residual_layers {self.residual_layers} is outside 0..{self.layers - 1} (the first "
                             f"layer's input is the stacked features, not a layer's output)")
        if self.lookahead < 0:
            raise ValueError(f"lookahead {self.lookahead} is negative")

    @property
    def frame_shift(self) -> float:
        """Seconds between two output frames."""
        return self.stack / FRAME_RATE

    def to_dict(self) -> dict:
        return asdict(self)


def stack_states(states: list[State]) -> State:
    """Many streams' states, each of batch 1, -> one state of batch len(states) (concatenated on dim 1)."""
    return tuple(torch.cat(parts, dim=1) for parts in zip(*states))


def unstack_states(state: State) -> list[State]:
    """The inverse of `stack_states`: one state of batch B -> B states of batch 1 (copies, not views)."""
    return [tuple(part[:, b : b + 1].clone() for part in state) for b in range(state[0].shape[1])]


class AcousticModel(nn.Module):
    """LSTM-CTC acoustic model. One nn.LSTM per layer so that each layer's gates can be inspected (asr.gates)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        # Fixed feature statistics (set from training data, saved with the weights): streaming-safe normalisation.
        self.register_buffer("feature_mean", torch.zeros(dims.n_mels))
        self.register_buffer("feature_std", torch.ones(dims.n_mels))
        directions = 2 if dims.bidirectional else 1
        sizes = [dims.n_mels * (dims.stack + dims.lookahead)] + [dims.hidden * directions] * (dims.layers - 1)
        self.lstms = nn.ModuleList(
            nn.LSTM(size, dims.hidden, batch_first=True, bidirectional=dims.bidirectional) for size in sizes
        )
        self.dropout = nn.Dropout(dims.dropout)
        self.output = nn.Linear(dims.hidden * directions, dims.vocab)

    @property
    def streaming(self) -> bool:
        return not self.dims.bidirectional

    def is_residual(self, layer: int) -> bool:
        """Whether layer `layer` (0-based) adds its input to its output."""
        return layer >= self.dims.layers - self.dims.residual_layers

    def layer_result(self, layer: int, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """What layer `layer` passes on: its outputs, plus its inputs where it is residual. (..., features)"""
        return outputs + inputs if self.is_residual(layer) else outputs

    def init_state(self, batch: int = 1) -> State:
        """The state of `batch` new streams: zero `(h, c)`, each (layers, batch, hidden), and no frames seen."""
        device = self.feature_mean.device
        zeros = torch.zeros(self.dims.layers, batch, self.dims.hidden, device=device)
        norm = torch.zeros(1, batch, self.dims.n_mels + 1, dtype=torch.float64, device=device)
        return zeros, zeros.clone(), norm

    def normalize(self, features: torch.Tensor, lengths: torch.Tensor, norm: torch.Tensor | None = None,
                  consumed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (batch, frames, n_mels); lengths: (batch,) valid frames; norm: (1, batch, n_mels + 1) running
        sum and count carried from earlier chunks, or None for none; consumed: (batch,) frames the returned norm
        counts (default `lengths`; fewer where a stream's caller keeps the later ones to pass again). Returns
        normalised features and the new norm (passed through unchanged by "global" normalisation).

        The running mean at frame t covers the prior and frames 0..t only, so any chunking gives the same values.
        """
        batch, frames, n_mels = features.shape
        if norm is None:
            norm = features.new_zeros(1, batch, n_mels + 1, dtype=torch.float64)
        if self.dims.normalization == "global":
            return (features - self.feature_mean) / self.feature_std, norm
        valid = (torch.arange(frames, device=features.device)[None, :] < lengths.to(features.device)[:, None])
        valid = valid.double()[..., None]  # (batch, frames, 1)
        sums = torch.cumsum(features.double() * valid, dim=1) + norm[0, :, None, :n_mels]
        counts = torch.cumsum(valid, dim=1) + norm[0, :, None, n_mels:]
        prior = self.dims.norm_prior_frames
        mean = (sums + prior * self.feature_mean.double()) / (counts + prior)
        normalized = ((features.double() - mean) / self.feature_std.double()).float()
        # (batch, 1 + frames, n_mels + 1): the sum and count before any of these frames, then after each
        totals = torch.cat([norm[0, :, None], torch.cat([sums, counts], dim=-1)], dim=1)
        consumed = lengths if consumed is None else consumed
        return normalized, totals[torch.arange(batch), consumed.to(features.device)][None]

    def steps(self, lengths: torch.Tensor | int, final: torch.Tensor | bool = True) -> torch.Tensor | int:
        """The model steps that `lengths` feature frames make ((batch,), or an int for one stream, as a stream's
        buffer asks without building tensors). A step needs its `stack` frames, and `lookahead` frames after them
        unless `final` (bool or (batch,) bool: no more frames come after these)."""
        if isinstance(final, torch.Tensor):
            ahead = torch.where(final, 0, self.dims.lookahead)
        else:
            ahead = 0 if final else self.dims.lookahead
        steps = (lengths - ahead) // self.dims.stack
        return steps.clamp(min=0) if isinstance(steps, torch.Tensor) else max(steps, 0)

    def stack_frames(self, features: torch.Tensor, lengths: torch.Tensor, norm: torch.Tensor | None = None,
                     final: torch.Tensor | bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Normalise and stack. features: (batch, frames, n_mels) -> x (batch, steps, n_mels * (stack + lookahead)),
        out_lengths (batch,) as `steps(lengths, final)`, and the running normalisation's state after the frames of
        those steps (see `normalize`). Step t holds frames stack*t .. stack*(t+1) + lookahead - 1, frames past an
        item's length as zeros.

        Frames that make no step (part of a stack, or another step's lookahead) are left out of the state: a
        streaming caller keeps them and passes them again with the next frames.
        """
        stack, ahead = self.dims.stack, self.dims.lookahead
        batch, frames, n_mels = features.shape
        out_lengths = self.steps(lengths, final)
        steps = int(out_lengths.max()) if batch else 0
        x, norm = self.normalize(features, lengths, norm, out_lengths * stack)
        padding = torch.arange(frames, device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        x = x.masked_fill(padding[..., None], 0.0)
        needed = max(steps, 1) * stack + ahead  # (unfold needs one window even where there are no steps)
        x = nn.functional.pad(x[:, :needed], (0, 0, 0, max(0, needed - frames)))
        windows = x.unfold(1, stack + ahead, stack)[:, :steps]  # (batch, steps, n_mels, stack + ahead)
        x = windows.transpose(2, 3).reshape(batch, steps, (stack + ahead) * n_mels)  # frame after frame
        padding = torch.arange(steps, device=x.device)[None, :] >= out_lengths.to(x.device)[:, None]
        return x.masked_fill(padding[..., None], 0.0), out_lengths, norm

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, state: State | None = None,
                norm: torch.Tensor | None = None, final: torch.Tensor | bool = True):
        """features: (batch, frames, n_mels) log-mel; lengths: (batch,) valid frames per item;
        state: `(h, c, norm)` as from `init_state`, or None for a fresh start (unidirectional models only);
        norm: without state, the running normalisation's sum and count of the frames before these (see `normalize`;
        a bidirectional model's window of a longer recording); final: bool or (batch,) bool, whether more frames
        come after these (a stream's caller passes them again with the next, see `stack_frames`).

        Returns log_probs (batch, steps, vocab), out_lengths (batch,) as `steps(lengths, final)`, and the new state
        (None for bidirectional models). An item that makes no step is an error.

        In eval mode a batch of unequal lengths is packed, so every item's outputs and state are exactly those of
        the item alone. In training mode it is not (packed LSTMs are several times slower to train on CPU): padding
        is zeroed after normalisation, outputs of unidirectional models are still exact, the backward direction of
        a bidirectional model sees the few padded steps that length bucketing leaves.
        """
        if state is not None and self.dims.bidirectional:
            raise ValueError("a bidirectional model cannot carry state across chunks; use a unidirectional model")
        x, out_lengths, norm = self.stack_frames(features, lengths, norm if state is None else state[2], final)
        if int(out_lengths.min()) < 1:
            ahead = f" and {self.dims.lookahead} more unless final" if self.dims.lookahead else ""
            raise ValueError(f"every item needs at least {self.dims.stack} frames{ahead} (got lengths "
                             f"{lengths.tolist()})")
        steps = x.shape[1]
        packed = not self.training and bool((out_lengths != steps).any())
        if packed:
            x = pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        new_h, new_c = [], []
        for i, lstm in enumerate(self.lstms):
            layer_state = None if state is None else (state[0][i : i + 1].contiguous(), state[1][i : i + 1].contiguous())
            out, (h, c) = lstm(x, layer_state)
            new_h.append(h)
            new_c.append(c)
            data = self.layer_result(i, x.data if packed else x, self.dropout(out.data if packed else out))
            x = out._replace(data=data) if packed else data
        if packed:
            x, _ = pad_packed_sequence(x, batch_first=True, total_length=steps)
        log_probs = self.output(x).log_softmax(dim=-1)
        new_state = None if self.dims.bidirectional else (torch.cat(new_h), torch.cat(new_c), norm)
        return log_probs, out_lengths, new_state


def grow(model: AcousticModel, layers: int) -> AcousticModel:
    """A copy of `model` with residual layers of zero weights added on top up to `layers` layers. A zero-weight LSTM
    outputs zeros (its cell candidate tanh(0) is 0), so the grown model computes exactly what `model` does; training
    then fits the new layers (their cell-candidate weights get gradients at once, the gates' follow)."""
    extra = layers - model.dims.layers
    if extra < 1:
        raise ValueError(f"cannot grow a {model.dims.layers}-layer model to {layers} layers")
    dims = replace(model.dims, layers=layers, residual_layers=model.dims.residual_layers + extra)
    grown = AcousticModel(dims)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("lstms.") for name in missing), (missing, unexpected)
    with torch.no_grad():
        for lstm in grown.lstms[model.dims.layers:]:
            for weight in lstm.parameters():
                weight.zero_()
    return grown


def widen(model: AcousticModel, hidden: int) -> AcousticModel:
    """A copy of `model` with `hidden` LSTM units per direction instead of `model.dims.hidden`, computing what
    `model` does. The old units keep their weights and read nothing from the new ones (zero columns in every
    layer's input and recurrent weights and in the output layer); the new units start as a fresh model's, so their
    outputs differ from zero and the zero columns get gradients from the first step."""
    old = model.dims.hidden
    if hidden <= old:
        raise ValueError(f"cannot widen a model of {old} hidden units to {hidden}")
    wide = AcousticModel(replace(model.dims, hidden=hidden))
    directions = 2 if model.dims.bidirectional else 1
    # where each old unit of a layer's output sits in the wide layer's output: (directions * old,)
    kept = torch.cat([torch.arange(old) + d * hidden for d in range(directions)])
    gate_rows = torch.cat([torch.arange(old) + g * hidden for g in range(4)])  # PyTorch's gates i, f, g, o
    with torch.no_grad():
        for layer, (narrow_lstm, wide_lstm) in enumerate(zip(model.lstms, wide.lstms)):
            inputs = torch.arange(narrow_lstm.input_size) if layer == 0 else kept
            for name, weight in wide_lstm.named_parameters():
                narrow_weight = getattr(narrow_lstm, name)
                if name.startswith("bias"):
                    weight[gate_rows] = narrow_weight
                    continue
                columns = inputs if name.startswith("weight_ih") else torch.arange(old)
                weight[gate_rows] = 0  # the old units read only the old units
                weight[gate_rows[:, None], columns[None, :]] = narrow_weight
        wide.output.weight.zero_()
        wide.output.weight[:, kept] = model.output.weight
        wide.output.bias.copy_(model.output.bias)
        wide.feature_mean.copy_(model.feature_mean)
        wide.feature_std.copy_(model.feature_std)
    return wide


def look_ahead(model: AcousticModel, lookahead: int) -> AcousticModel:
    """A copy of `model` whose steps hold `lookahead` feature frames after their own, computing what `model` does:
    the first layer reads the frames added with zero weights (they get gradients from the first step)."""
    old = model.dims.lookahead
    if lookahead <= old:
        raise ValueError(f"cannot extend a model's lookahead of {old} frames to {lookahead}")
    ahead = AcousticModel(replace(model.dims, lookahead=lookahead))
    state = model.state_dict()
    added = (lookahead - old) * model.dims.n_mels  # the new input columns come after the old ones (later frames)
    for name in [name for name in state if name.startswith("lstms.0.weight_ih")]:
        state[name] = nn.functional.pad(state[name], (0, added))
    ahead.load_state_dict(state)
    return ahead


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS; else a ValueError that names it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def quantized(model: AcousticModel) -> AcousticModel:
    """An int8 copy of `model` for CPU inference: dynamic quantisation (torch.ao) of the LSTM and output weights.

    A quarter of the weights' memory and faster steps (README, Benchmarks), for words that differ a little (the model
    card). Activations stay float32 and are scaled to int8 per call and batch, so a stream's outputs depend slightly
    on how its audio is chunked and which streams share its batch (a float32 model's are exact). The gates
    (asr.gates) need the float32 model. Raises ValueError where this torch build cannot run int8 on this CPU."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        quantize_dynamic = None
    engines = [engine for engine in torch.backends.quantized.supported_engines if engine != "none"]
    if quantize_dynamic is None or not engines:
        raise ValueError(f"torch {torch.__version__} cannot run int8 models here (no dynamic quantisation or no "
                         "quantised engine for this CPU); use precision float32")
    with warnings.catch_warnings():  # torch.ao's quantisation is deprecated in favour of torchao; it still works
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
