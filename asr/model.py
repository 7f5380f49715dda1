"""The acoustic model: normalised log-mel -> frame stacking -> LSTM layers -> per-frame log-probabilities over the
character vocabulary, trained with CTC.

Unidirectional models stream: `forward` takes and returns every layer's `(h, c)`, so running any chunking of an
input with the state carried gives the outputs of one pass over the whole input.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.features import FRAME_RATE, N_MELS
from asr.tokenizer import VOCAB

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, batch, hidden)


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

    @property
    def frame_shift(self) -> float:
        """Seconds between two output frames."""
        return self.stack / FRAME_RATE

    def to_dict(self) -> dict:
        return asdict(self)


class AcousticModel(nn.Module):
    """LSTM-CTC acoustic model. One nn.LSTM per layer so that each layer's gates can be inspected (asr.gates)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        # Fixed feature statistics (set from training data, saved with the weights): streaming-safe normalisation.
        self.register_buffer("feature_mean", torch.zeros(dims.n_mels))
        self.register_buffer("feature_std", torch.ones(dims.n_mels))
        directions = 2 if dims.bidirectional else 1
        sizes = [dims.n_mels * dims.stack] + [dims.hidden * directions] * (dims.layers - 1)
        self.lstms = nn.ModuleList(
            nn.LSTM(size, dims.hidden, batch_first=True, bidirectional=dims.bidirectional) for size in sizes
        )
        self.dropout = nn.Dropout(dims.dropout)
        self.output = nn.Linear(dims.hidden * directions, dims.vocab)

    @property
    def streaming(self) -> bool:
        return not self.dims.bidirectional

    def init_state(self, batch: int = 1) -> State:
        """Zero `(h, c)`, each (layers, batch, hidden)."""
        zeros = torch.zeros(self.dims.layers, batch, self.dims.hidden, device=self.feature_mean.device)
        return zeros, zeros.clone()

    def stack_frames(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise and stack. features: (batch, frames, n_mels) -> (batch, frames // stack, n_mels * stack).

        Trailing frames that do not fill a whole stack are dropped (a streaming caller keeps them for later).
        """
        stack = self.dims.stack
        batch, frames, n_mels = features.shape
        steps = frames // stack
        x = (features[:, : steps * stack] - self.feature_mean) / self.feature_std
        out_lengths = torch.div(lengths, stack, rounding_mode="floor")
        x = x.reshape(batch, steps, n_mels * stack)
        padding = torch.arange(steps, device=x.device)[None, :] >= out_lengths.to(x.device)[:, None]
        return x.masked_fill(padding[..., None], 0.0), out_lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, state: State | None = None):
        """features: (batch, frames, n_mels) log-mel; lengths: (batch,) valid frames per item;
        state: `(h, c)` each (layers, batch, hidden), or None for zeros (unidirectional models only).

        Returns log_probs (batch, frames // stack, vocab), out_lengths (batch,), and the new state
        (None for bidirectional models). Items with fewer than `stack` frames are an error.

        In eval mode a batch of unequal lengths is packed, so every item's outputs and state are exactly those of
        the item alone. In training mode it is not (packed LSTMs are several times slower to train on CPU): padding
        is zeroed after normalisation, outputs of unidirectional models are still exact, the backward direction of
        a bidirectional model sees the few padded steps that length bucketing leaves.
        """
        if state is not None and self.dims.bidirectional:
            raise ValueError("a bidirectional model cannot carry state across chunks; use a unidirectional model")
        x, out_lengths = self.stack_frames(features, lengths)
        if int(out_lengths.min()) < 1:
            raise ValueError(f"every item needs at least {self.dims.stack} frames (got lengths {lengths.tolist()})")
        steps = x.shape[1]
        packed = not self.training and bool((out_lengths != steps).any())
        if packed:
            x = pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        new_h, new_c = [], []
        for i, lstm in enumerate(self.lstms):
            layer_state = None if state is None else (state[0][i : i + 1].contiguous(), state[1][i : i + 1].contiguous())
            x, (h, c) = lstm(x, layer_state)
            new_h.append(h)
            new_c.append(c)
            if packed:
                x = x._replace(data=self.dropout(x.data))
            else:
                x = self.dropout(x)
        if packed:
            x, _ = pad_packed_sequence(x, batch_first=True, total_length=steps)
        log_probs = self.output(x).log_softmax(dim=-1)
        new_state = None if self.dims.bidirectional else (torch.cat(new_h), torch.cat(new_c))
        return log_probs, out_lengths, new_state
