"""`asr plot`: one picture of how the model hears an utterance: log-mel, CTC posteriors with the recognised
characters, and the mean input, forget and output gate activations of one LSTM layer over time."""
from __future__ import annotations

import os

import torch

from asr.audio import load_audio
from asr.decoding import ctc_greedy
from asr.features import FRAME_RATE, log_mel
from asr.gates import gate_activations
from asr.model import AcousticModel
from asr.tokenizer import BLANK, VOCAB

GATE_COLOURS = {"input": "tab:green", "forget": "tab:blue", "output": "tab:red"}


@torch.inference_mode()
def plot_utterance(model: AcousticModel, path: str | os.PathLike, out: str | os.PathLike, layer: int = 0) -> None:
    """Render the three panels for the audio file at `path` into the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = log_mel(load_audio(path))
    if len(features) < model.dims.stack:
        raise ValueError(f"{path}: too short to plot ({len(features)} frames)")
    log_probs, _, _ = model(features[None], torch.tensor([len(features)]))
    posteriors = log_probs[0].exp()  # (steps, vocab)
    transcript = ctc_greedy(log_probs[0], model.dims.frame_shift)
    gates = gate_activations(model, features, layer)
    duration = len(features) / FRAME_RATE
    step_times = (torch.arange(len(posteriors)) + 0.5) * model.dims.frame_shift

    fig, (ax_mel, ax_ctc, ax_gates) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                                  gridspec_kw={"height_ratios": [2, 2, 1.5]})
    ax_mel.imshow(features.T.numpy(), origin="lower", aspect="auto", extent=(0, duration, 0, features.shape[1]),
                  cmap="magma")
    ax_mel.set_ylabel("mel bin")
    ax_mel.set_title(f"{os.path.basename(str(path))}: \"{transcript.text}\"", fontsize=10)

    ax_ctc.plot(step_times, posteriors[:, BLANK], color="lightgrey", label="blank", linewidth=1)
    best = posteriors.argmax(dim=-1)
    for label in sorted(set(best.tolist()) - {BLANK}):
        ax_ctc.plot(step_times, posteriors[:, label], linewidth=1)
    previous = BLANK
    for t, label in enumerate(best.tolist()):
        if label not in (BLANK, previous):
            ax_ctc.annotate(VOCAB[label] if VOCAB[label] != " " else "␣", (float(step_times[t]), float(posteriors[t, label])),
                            textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        previous = label
    ax_ctc.set_ylim(0, 1.12)
    ax_ctc.set_ylabel("CTC posterior")
    ax_ctc.legend(loc="upper right", fontsize=8)

    for name, colour in GATE_COLOURS.items():
        ax_gates.plot(step_times, gates[name].mean(dim=-1), color=colour, label=f"{name} gate")
    ax_gates.set_ylim(0, 1)
    ax_gates.set_ylabel(f"mean activation\n(layer {layer})")
    ax_gates.set_xlabel("time (s)")
    ax_gates.legend(loc="upper right", fontsize=8, ncol=3)
    for word in transcript.words:
        for ax in (ax_ctc, ax_gates):
            ax.axvspan(word.start, word.end, color="khaki", alpha=0.25, linewidth=0)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
