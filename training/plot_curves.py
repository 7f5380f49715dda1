"""Draw training curves (loss and dev WER against step) of one or more runs from their metrics.csv.

    python -m training.plot_curves runs/stream runs/offline --out docs/training_curves.png
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    curves = {"loss": [], "dev_wer": []}
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for name in curves:
                if row[name]:
                    curves[name].append((int(row["step"]), float(row[name])))
    return curves


def plot_runs(run_dirs: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.get_cmap("tab20").colors  # tab10's 10 colours repeat beyond 10 runs
    for i, run_dir in enumerate(run_dirs):
        curves = read_metrics(run_dir)
        for ax, name in ((ax_loss, "loss"), (ax_wer, "dev_wer")):
            if curves[name]:
                steps, values = zip(*curves[name])
                scale = 100 if name == "dev_wer" else 1
                ax.plot(steps, [v * scale for v in values], label=run_dir.name, marker="o" if name == "dev_wer" else None,
                        markersize=3, color=colors[i % len(colors)])
    ax_loss.set(title="training CTC loss", xlabel="step", ylabel="loss", yscale="log")
    ax_wer.set(title="dev WER (greedy)", xlabel="step", ylabel="WER %", yscale="log")
    for ax in (ax_loss, ax_wer):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding metrics.csv")
    parser.add_argument("--out", type=Path, default=Path("docs/training_curves.png"))
    args = parser.parse_args()
    missing = [str(run) for run in args.runs if not (run / "metrics.csv").is_file()]
    if missing:
        sys.exit(f"no metrics.csv in {', '.join(missing)}: give the run directories `asr train --out` wrote")
    plot_runs(args.runs, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
