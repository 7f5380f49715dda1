"""training.plot_curves: one image of the loss and dev WER of several runs, from their metrics.csv."""
import subprocess
import sys


def write_metrics(run, rows):
    run.mkdir()
    lines = ["step,epoch,wall_seconds,loss,lr,audio_seconds_per_second,dev_wer,dev_cer"]  # as training.train writes
    lines += [f"{step},0,{step * 1.5},{loss},1e-3,60.0,{wer},{wer and wer / 2}" for step, loss, wer in rows]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_curves_of_two_runs_make_one_png(tmp_path):
    from training.plot_curves import read_metrics

    write_metrics(tmp_path / "a", [(25, 3.0, ""), (50, 2.0, 0.9), (75, 1.5, ""), (100, 1.2, 0.7)])
    write_metrics(tmp_path / "b", [(25, 1.1, ""), (50, 1.0, 0.6)])
    assert read_metrics(tmp_path / "a") == {"loss": [(25, 3.0), (50, 2.0), (75, 1.5), (100, 1.2)],
                                            "dev_wer": [(50, 0.9), (100, 0.7)]}
    out = tmp_path / "docs" / "curves.png"
    result = subprocess.run([sys.executable, "-m", "training.plot_curves", str(tmp_path / "a"), str(tmp_path / "b"),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_a_directory_without_metrics_is_one_clear_line(tmp_path):
    write_metrics(tmp_path / "a", [(25, 3.0, 0.9)])
    result = subprocess.run([sys.executable, "-m", "training.plot_curves", str(tmp_path / "a"), str(tmp_path / "gone"),
                             "--out", str(tmp_path / "c.png")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"no metrics.csv in {tmp_path / 'gone'}: give the run directories `asr train --out` wrote"
    assert not (tmp_path / "c.png").exists()
