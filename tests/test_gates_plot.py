import subprocess
import sys

import torch

from asr.audio import load_audio
from asr.features import log_mel
from asr.gates import gate_activations
from asr.model import AcousticModel, ModelDims


def test_gates_reproduce_the_lstm_outputs():
    """The recomputed gates are the LSTM's own: rebuilding c and h from them gives nn.LSTM's hidden outputs."""
    torch.manual_seed(0)
    model = AcousticModel(ModelDims(hidden=32, layers=2)).eval()
    features = torch.randn(90, 80)
    for layer in (0, 1):
        gates = gate_activations(model, features, layer)
        c = torch.zeros(32)
        rebuilt = []
        for t in range(len(gates["input"])):
            c = gates["forget"][t] * c + gates["input"][t] * gates["cell"][t]
            rebuilt.append(gates["output"][t] * torch.tanh(c))
        x, _, _ = model.stack_frames(features[None], torch.tensor([90]))
        for lstm in model.lstms[: layer + 1]:
            x, _ = lstm(x)
        torch.testing.assert_close(torch.stack(rebuilt), x[0], atol=1e-5, rtol=0)


def test_plot_renders_png(speech_wav, tmp_path, stream_model):
    out = tmp_path / "gates.png"
    result = subprocess.run([sys.executable, "-m", "asr", "plot", str(speech_wav), "--out", str(out), "--layer", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    features = log_mel(load_audio(speech_wav))
    gates = gate_activations(stream_model, features, layer=1)
    steps = len(features) // stream_model.dims.stack
    for name in ("input", "forget", "output"):
        assert gates[name].shape == (steps, stream_model.dims.hidden)
        assert float(gates[name].mean(dim=1).std()) > 0.005, f"the {name} gate does not follow the audio"


def test_plot_rejects_a_missing_layer(speech_wav, tmp_path):
    result = subprocess.run([sys.executable, "-m", "asr", "plot", str(speech_wav), "--layer", "9",
                             "--out", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "layer 9 is outside" in result.stderr
