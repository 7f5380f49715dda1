"""Train an LSTM-CTC acoustic model on LibriSpeech-format corpora.

    asr train --train data/LibriSpeech/train-clean-100 --dev data/LibriSpeech/dev-clean --out runs/stream
    asr train --train A B C --dev D --out runs/offline --bidirectional
    asr train ... --out runs/stream --resume      # continue exactly where the last checkpoint stopped

Multi-GPU or multi-node: the same flags under torchrun (DDP; only rank 0 logs, evaluates and saves):

    torchrun --standalone --nproc_per_node=4 -m training.train --train ... --dev ... --out runs/big --hidden 1024 --layers 5

Files in --out: last.pt (everything needed to resume, written atomically every --save-every steps), best.pt (the model
with the best dev WER, no optimizer state), metrics.csv (loss, learning rate, speed, dev WER/CER).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from asr.checkpoint import (
    checkpoint_dict,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from asr.model import AcousticModel, ModelDims
from training.data import UtteranceDataset, bucket_batches, spec_augment
from training.evaluate import evaluate_dataset
from training.librispeech import load_manifests

log = logging.getLogger("training")


@dataclass
class TrainConfig:
    train: list[str] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    out: str = "runs/model"
    # model
    hidden: int = 320
    layers: int = 3
    stack: int = 3
    bidirectional: bool = False
    dropout: float = 0.1
    normalization: str = "running"
    # optimisation
    steps: int = 4000  # length of the learning-rate schedule
    lr: float = 2e-3
    warmup: int = 300
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    clip: float = 5.0
    batch_seconds: float = 160.0  # padded audio seconds per batch (per process)
    max_utterance_seconds: float = 30.0
    spec_augment: bool = True
    # bookkeeping
    eval_every: int = 250
    save_every: int = 100
    log_every: int = 25
    dev_max_utterances: int = 400
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time; 0 = no limit
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    device: str = "auto"
    resume: bool = False
    cache_features: bool = True
    init: str = ""  # start from this checkpoint's weights (fine-tuning); ignored when resuming

    def dims(self) -> ModelDims:
        return ModelDims(stack=self.stack, hidden=self.hidden, layers=self.layers,
                         bidirectional=self.bidirectional, dropout=self.dropout,
                         normalization=self.normalization)


def get_lr(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr at `steps` (and flat after)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def feature_statistics(dataset: UtteranceDataset, max_utterances: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and std of log-mel over up to `max_utterances` training utterances (fixed, streaming-safe)."""
    indices = random.Random(0).sample(range(len(dataset)), min(max_utterances, len(dataset)))
    frames = torch.cat([dataset.features(i) for i in indices])
    return frames.mean(dim=0), frames.std(dim=0).clamp_min(1e-3)


class Distributed:
    """Rank and world size from torchrun's environment; a single process otherwise."""

    def __init__(self, device: str):
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device == "auto":
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world_size > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


class MetricsLog:
    """Append-only CSV of training metrics (readable by pandas, plotted by training/plot_curves.py)."""

    COLUMNS = ["step", "epoch", "wall_seconds", "loss", "lr", "audio_seconds_per_second", "dev_wer", "dev_cer"]

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(self.COLUMNS)

    def write(self, **row) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.COLUMNS])


def train(config: TrainConfig) -> dict:
    """Run (or resume) training. Returns the final training metadata (also saved in the checkpoints)."""
    env = Distributed(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if env.main:
        out.mkdir(parents=True, exist_ok=True)

    train_set = UtteranceDataset(load_manifests(config.train), config.stack, config.max_utterance_seconds,
                                 cache=config.cache_features)
    if len(train_set) == 0:
        raise SystemExit(f"no usable training utterances in {config.train}")
    dev_utts = load_manifests(config.dev)[: config.dev_max_utterances] if config.dev else []
    dev_set = UtteranceDataset(dev_utts, config.stack, cache=config.cache_features) if dev_utts else None

    resume = None
    if config.resume and last_path.exists():
        resume = load_checkpoint(last_path)
        model = model_from_checkpoint(resume)
        if model.dims != config.dims():
            log.warning("resuming with the checkpoint's model dims %s (flags asked for %s)", model.dims, config.dims())
    else:
        if config.resume and env.main:
            log.warning("--resume: no %s yet, starting afresh", last_path)
        torch.manual_seed(config.seed)
        model = AcousticModel(config.dims())
        if config.init:
            init = model_from_checkpoint(load_checkpoint(config.init))
            if init.dims != model.dims:
                raise SystemExit(f"--init {config.init}: its model dims {init.dims} differ from {model.dims}")
            model.load_state_dict(init.state_dict())
        else:
            mean, std = feature_statistics(train_set)
            model.feature_mean.copy_(mean)
            model.feature_std.copy_(std)
    model.to(env.device)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if env.world_size > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    use_amp = env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    augment_rng = torch.Generator().manual_seed(config.seed + env.rank)

    meta = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "audio_seconds": 0.0, "wall_seconds": 0.0,
            "best_dev_wer": None, "dev_wer": None, "dev_cer": None}
    if resume:
        optimizer.load_state_dict(resume["optimizer"])
        meta.update(resume["training"]["progress"])
        torch.set_rng_state(resume["rng"]["torch"])
        augment_rng.set_state(resume["rng"]["augment"])
        random.setstate(_to_random_state(resume["rng"]["python"]))
        log.info("resumed from %s at step %d", last_path, meta["step"])

    train_hours = sum(u.duration for u in train_set.utterances) / 3600
    if env.main:
        log.info("model %s, %.2fM parameters; %d training utterances (%.2f h), %d dev; device %s x%d",
                 config.dims(), sum(p.numel() for p in model.parameters()) / 1e6, len(train_set), train_hours,
                 len(dev_set) if dev_set else 0, env.device, env.world_size)
    metrics = MetricsLog(out / "metrics.csv") if env.main else None

    def metadata() -> dict:
        return {"config": asdict(config), "progress": dict(meta), "train_hours": round(train_hours, 3),
                "skipped": train_set.skipped, "world_size": env.world_size}

    def save(path: Path, with_resume_state: bool) -> None:
        extra = {}
        if with_resume_state:
            extra = {"optimizer": optimizer.state_dict(),
                     "rng": {"torch": torch.get_rng_state(), "augment": augment_rng.get_state(),
                             "python": _from_random_state(random.getstate())}}
        save_checkpoint(checkpoint_dict(model, metadata(), **extra), path)

    started, session_audio, window_loss, window_steps = time.time(), 0.0, 0.0, 0
    wall_at_start = meta["wall_seconds"]
    durations = [u.duration for u in train_set.utterances]
    model.train()
    progress = None
    if env.main:
        from tqdm import tqdm

        progress = tqdm(total=config.steps, initial=meta["step"], unit="step", file=sys.stderr, dynamic_ncols=True,
                        mininterval=1 if sys.stderr.isatty() else 60)
    stop = False
    while meta["step"] < config.steps and not stop:
        batches = bucket_batches(durations, config.batch_seconds, config.seed, meta["epoch"], env.rank, env.world_size)
        for indices in batches[meta["batch_in_epoch"] :]:
            batch = train_set.batch(indices)
            features = batch.features
            if config.spec_augment:
                features = spec_augment(features, batch.feature_lengths, augment_rng)
            lr = get_lr(meta["step"], config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(env.device.type, dtype=torch.float16, enabled=use_amp):
                log_probs, out_lengths, _ = wrapped(features.to(env.device), batch.feature_lengths.to(env.device))
            loss = F.ctc_loss(log_probs.float().transpose(0, 1), batch.labels.to(env.device), out_lengths,
                              batch.label_lengths.to(env.device), blank=0, reduction="mean", zero_infinity=True)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            scaler.step(optimizer)
            scaler.update()

            meta["step"] += 1
            meta["batch_in_epoch"] += 1
            seconds = batch.audio_seconds * env.world_size
            meta["audio_seconds"] += seconds
            session_audio += seconds
            window_loss += loss.item()
            window_steps += 1
            elapsed = time.time() - started
            meta["wall_seconds"] = wall_at_start + elapsed
            if progress:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", audio_x=f"{session_audio / elapsed:.0f}")
            step = meta["step"]
            if env.main and step % config.log_every == 0:
                metrics.write(step=step, epoch=meta["epoch"], wall_seconds=round(meta["wall_seconds"], 1),
                              loss=round(window_loss / window_steps, 4), lr=f"{lr:.3e}",
                              audio_seconds_per_second=round(session_audio / elapsed, 1))
                window_loss, window_steps = 0.0, 0
            if env.main and dev_set and (step % config.eval_every == 0 or step == config.steps):
                scores = evaluate_dataset(model, dev_set)
                meta["dev_wer"], meta["dev_cer"] = scores["wer"], scores["cer"]
                metrics.write(step=step, epoch=meta["epoch"], wall_seconds=round(meta["wall_seconds"], 1),
                              dev_wer=round(scores["wer"], 4), dev_cer=round(scores["cer"], 4))
                log.info("step %d: dev WER %.2f%% CER %.2f%%", step, 100 * scores["wer"], 100 * scores["cer"])
                if meta["best_dev_wer"] is None or scores["wer"] < meta["best_dev_wer"]:
                    meta["best_dev_wer"] = scores["wer"]
                    save(best_path, with_resume_state=False)
            out_of_time = config.max_minutes and elapsed > config.max_minutes * 60
            if env.world_size > 1:
                flag = torch.tensor([float(bool(out_of_time))], device=env.device)
                dist.all_reduce(flag)
                out_of_time = bool(flag.item())
            done = step >= config.steps or out_of_time
            if env.main and (step % config.save_every == 0 or done):
                save(last_path, with_resume_state=True)
            if done:
                stop = True
                break
        else:
            meta["epoch"] += 1
            meta["batch_in_epoch"] = 0
    if progress:
        progress.close()
    if env.main and meta["best_dev_wer"] is None:  # no dev set (or no evaluation yet): the last model is the best
        save(best_path, with_resume_state=False)
    env.close()
    return metadata()


def _from_random_state(state) -> list:
    """Python's random state as nested lists of ints (storable under weights_only)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _to_random_state(stored) -> tuple:
    version, internal, gauss = stored
    return version, tuple(internal), gauss


def config_from_args(args) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})


if __name__ == "__main__":  # torchrun -m training.train ...
    from training.cli import train_parser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train(config_from_args(train_parser().parse_args()))
