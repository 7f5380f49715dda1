"""The training loop: a `Trainer` holds one run's data, model, optimizer and progress; `train` is the loop over its
named steps (train step, log, evaluate, save). Usage: `asr train --help` (training.config.USAGE), or under torchrun:

    torchrun --standalone --nproc_per_node=4 -m training.train --train ... --dev ... --out runs/big
"""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from asr.checkpoint import (
    CheckpointError,
    checkpoint_dict,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from asr.model import AcousticModel, grow, look_ahead, widen
from training.config import TrainConfig, config_from_args, train_parser
from training.data import (Batch, UtteranceDataset, bucket_batches, spec_augment, trim_onsets,
                           warp_frequencies)
from training.distill import Teacher, distillation_loss
from training.evaluate import evaluate_dataset
from training.feature_store import FeatureStore, FeatureStoreError
from training.librispeech import Utterance, load_manifests

log = logging.getLogger("training")


def get_lr(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr at `steps` (and flat after)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _without(utterances: list[Utterance], exclude_file: str) -> list[Utterance]:
    """The utterances whose ids the file's first column does not list (all of them without a file)."""
    if not exclude_file:
        return utterances
    try:
        lines = Path(exclude_file).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SystemExit(f"--exclude-utterances {exclude_file}: {error.strerror}") from None
    excluded = {line.split("\t")[0].strip() for line in lines if line.strip() and not line.startswith("#")}
    kept = [u for u in utterances if u.id not in excluded]
    log.info("--exclude-utterances: %d of %d training utterances left out", len(utterances) - len(kept),
             len(utterances))
    return kept


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
            dist.barrier()  # rank 0 may still be saving: a rank that tears gloo down under a busy peer can abort
            dist.destroy_process_group()


class MetricsLog:
    """Append-only CSV of training metrics (readable by pandas, plotted by training/plot_curves.py)."""

    COLUMNS = ["step", "epoch", "wall_seconds", "loss", "lr", "audio_seconds_per_second", "dev_wer", "dev_cer"]

    def __init__(self, path: Path, resumed_step: int | None = None):
        """`resumed_step`: the step of the checkpoint a run resumes from; rows logged after it (by the run that
        stopped) are dropped, since the resumed run logs those steps again."""
        self.path = path
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(self.COLUMNS)
        elif resumed_step is not None:
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
            kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= resumed_step]
            with path.open("w", newline="") as f:
                csv.writer(f).writerows(kept)

    def write(self, **row) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.COLUMNS])


class Trainer:
    """One training run's data, model, optimizer and progress, with each part of a step as a method."""

    def __init__(self, config: TrainConfig, env: Distributed):
        self.config, self.env = config, env
        self.out = Path(config.out)
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        if env.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if config.join_utterances < 1:
            raise SystemExit(f"--join-utterances {config.join_utterances}: give 1 (each utterance alone) or more")
        if not 0.0 <= config.trim_onsets <= 1.0 or (config.trim_onsets and config.teacher):
            raise SystemExit(f"--trim-onsets {config.trim_onsets}: give a probability from 0 to 1, and 0 with --teacher "
                             "(the teacher's outputs are frame-aligned with the untrimmed audio)")
        if not 0.0 <= config.freq_warp < 0.5:
            raise SystemExit(f"--freq-warp {config.freq_warp}: give a fraction from 0 (off) to below 0.5")
        try:
            store = FeatureStore(config.feature_store) if config.feature_store else None
        except FeatureStoreError as error:
            raise SystemExit(f"--feature-store {error}") from None
        self.train_set = UtteranceDataset(_without(load_manifests(config.train), config.exclude_utterances),
                                          config.model.stack, config.max_utterance_seconds,
                                          cache=config.cache_features, join=config.join_utterances, seed=config.seed,
                                          store=store)
        if len(self.train_set) == 0:
            raise SystemExit(f"no usable training utterances in {config.train}")
        dev_utts = load_manifests(config.dev)[: config.dev_max_utterances] if config.dev else []
        self.dev_set = UtteranceDataset(dev_utts, config.model.stack, cache=config.cache_features, store=store) \
            if dev_utts else None
        self.train_hours = sum(u.duration for u in self.train_set.utterances) / 3600
        self.progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "audio_seconds": 0.0, "wall_seconds": 0.0,
                         "best_dev_wer": None, "dev_wer": None, "dev_cer": None}
        checkpoint = self._last_checkpoint() if config.resume else None
        self.model = model_from_checkpoint(checkpoint) if checkpoint else self._new_model()
        self.model.to(env.device)
        self.wrapped = torch.nn.parallel.DistributedDataParallel(self.model) if env.world_size > 1 else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.use_amp = env.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.augment_rng = torch.Generator().manual_seed(config.seed + env.rank)
        self.teacher = Teacher(config.teacher, self.model, self.train_set, config.distill_shift) \
            if config.teacher else None
        if checkpoint:
            self._restore(checkpoint)
        self.metrics = MetricsLog(self.out / "metrics.csv", self.progress["step"] if checkpoint else None) \
            if env.main else None
        self.started, self.wall_at_start = time.time(), self.progress["wall_seconds"]
        self.session_audio, self.window_loss, self.window_steps = 0.0, 0.0, 0

    # --- setup ------------------------------------------------------------------------------------------------------
    def _last_checkpoint(self) -> dict | None:
        if not self.last_path.exists():
            if self.env.main:
                log.warning("--resume: no %s yet, starting afresh", self.last_path)
            return None
        try:
            checkpoint = load_checkpoint(self.last_path)
            if "optimizer" not in checkpoint or "progress" not in checkpoint.get("training", {}):
                raise CheckpointError(f"{self.last_path}: holds no resume state (optimizer, progress)")
        except CheckpointError as error:
            raise CheckpointError(f"--resume: {error}. Move it away to start afresh, or resume from a copy "
                                  f"of a good checkpoint.") from None
        if model_from_checkpoint(checkpoint).dims != self.config.model and self.env.main:
            log.warning("resuming with the checkpoint's model dims %s (flags asked for %s)",
                        checkpoint["dims"], self.config.model)
        return checkpoint

    def _new_model(self) -> AcousticModel:
        torch.manual_seed(self.config.seed)
        model = AcousticModel(self.config.model)
        if self.config.init:
            try:
                init = model_from_checkpoint(load_checkpoint(self.config.init))
            except CheckpointError as error:
                raise CheckpointError(f"--init: {error}") from None
            if model.dims.hidden > init.dims.hidden:  # wider: new units the old ones do not read yet
                init = widen(init, model.dims.hidden)
            if model.dims.layers > init.dims.layers:  # deeper: residual layers of zero weights on top
                init = grow(init, model.dims.layers)
            if model.dims.lookahead > init.dims.lookahead:  # further ahead: zero weights on the frames added
                init = look_ahead(init, model.dims.lookahead)
            # The weights carry over; how features are normalised and the dropout are the new model's own choice.
            same_weights = replace(init.dims, normalization=model.dims.normalization,
                                   norm_prior_frames=model.dims.norm_prior_frames, dropout=model.dims.dropout)
            if same_weights != model.dims:
                raise SystemExit(f"--init {self.config.init}: its model dims {init.dims} differ from {model.dims}")
            model.load_state_dict(init.state_dict())
        mean, std = feature_statistics(self.train_set)
        model.feature_mean.copy_(mean)
        model.feature_std.copy_(std)
        return model

    def _restore(self, checkpoint: dict) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.progress.update(checkpoint["training"]["progress"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        self.augment_rng.set_state(checkpoint["rng"]["augment"])
        random.setstate(_to_random_state(checkpoint["rng"]["python"]))
        log.info("resumed from %s at step %d", self.last_path, self.progress["step"])

    # --- the loop's parts -------------------------------------------------------------------------------------------
    def batches(self) -> Iterator[Batch]:
        """Training batches from where the progress says, epoch after epoch, without end."""
        while True:
            epoch = bucket_batches(self.train_set.durations, self.config.batch_seconds, self.config.seed,
                                   self.progress["epoch"], self.env.rank, self.env.world_size)
            for indices in epoch[self.progress["batch_in_epoch"]:]:
                self.progress["batch_in_epoch"] += 1
                yield self.train_set.batch(indices)
            self.progress["epoch"] += 1
            self.progress["batch_in_epoch"] = 0

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on `batch`; returns its loss (CTC, plus the weighted distillation loss with a teacher)."""
        features, lengths = batch.features, batch.feature_lengths
        if self.config.trim_onsets:
            lengths = trim_onsets(features, lengths, batch.labels, batch.label_lengths, self.model.dims.stack,
                                  self.augment_rng, self.config.trim_onsets)
        if self.config.freq_warp:
            features = warp_frequencies(features, self.augment_rng, self.config.freq_warp)
        if self.config.spec_augment:
            features = spec_augment(features, lengths, self.augment_rng)
        self.lr = get_lr(self.progress["step"], self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        device = self.env.device
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.use_amp):
            log_probs, out_lengths, _ = self.wrapped(features.to(device), lengths.to(device))
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), batch.labels.to(device), out_lengths,
                          batch.label_lengths.to(device), blank=0, reduction="mean", zero_infinity=True)
        if self.teacher:
            targets = self.teacher.batch(batch.indices, log_probs.shape[1]).to(device)
            loss = loss + self.config.distill_weight * distillation_loss(log_probs.float(), targets, out_lengths)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

        seconds = batch.audio_seconds * self.env.world_size
        self.progress["step"] += 1
        self.progress["audio_seconds"] += seconds
        self.progress["wall_seconds"] = self.wall_at_start + self.elapsed
        self.session_audio += seconds
        self.window_loss += loss.item()
        self.window_steps += 1
        return loss.item()

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    @property
    def audio_speed(self) -> float:
        """Audio seconds trained per wall second in this session."""
        return self.session_audio / max(self.elapsed, 1e-9)

    def log_metrics(self) -> None:
        self.metrics.write(step=self.progress["step"], epoch=self.progress["epoch"],
                           wall_seconds=round(self.progress["wall_seconds"], 1),
                           loss=round(self.window_loss / self.window_steps, 4), lr=f"{self.lr:.3e}",
                           audio_seconds_per_second=round(self.audio_speed, 1))
        self.window_loss, self.window_steps = 0.0, 0

    def evaluate(self) -> None:
        """Dev WER and CER; best.pt when the WER is the best so far."""
        scores = evaluate_dataset(self.model, self.dev_set)
        step = self.progress["step"]
        self.progress["dev_wer"], self.progress["dev_cer"] = scores["wer"], scores["cer"]
        self.metrics.write(step=step, epoch=self.progress["epoch"], wall_seconds=round(self.progress["wall_seconds"], 1),
                           dev_wer=round(scores["wer"], 4), dev_cer=round(scores["cer"], 4))
        log.info("step %d: dev WER %.2f%% CER %.2f%%", step, 100 * scores["wer"], 100 * scores["cer"])
        if self.progress["best_dev_wer"] is None or scores["wer"] < self.progress["best_dev_wer"]:
            self.progress["best_dev_wer"] = scores["wer"]
            self.save(self.best_path, with_resume_state=False)

    def out_of_time(self) -> bool:
        """--max-minutes reached (on any rank: all of them stop at the same step)."""
        out = bool(self.config.max_minutes) and self.elapsed > self.config.max_minutes * 60
        if self.env.world_size > 1:
            flag = torch.tensor([float(out)], device=self.env.device)
            dist.all_reduce(flag)
            out = bool(flag.item())
        return out

    def metadata(self) -> dict:
        return {"config": self.config.to_dict(), "progress": dict(self.progress),
                "train_hours": round(self.train_hours, 3), "skipped": self.train_set.skipped,
                "world_size": self.env.world_size}

    def save(self, path: Path, with_resume_state: bool) -> None:
        extra = {}
        if with_resume_state:
            extra = {"optimizer": self.optimizer.state_dict(),
                     "rng": {"torch": torch.get_rng_state(), "augment": self.augment_rng.get_state(),
                             "python": _from_random_state(random.getstate())}}
        save_checkpoint(checkpoint_dict(self.model, self.metadata(), **extra), path)


def train(config: TrainConfig) -> dict:
    """Run (or resume) training. Returns the final training metadata (also saved in the checkpoints)."""
    env = Distributed(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    trainer = Trainer(config, env)
    main = env.main
    if main:
        log.info("model %s, %.2fM parameters; %d training utterances (%.2f h), %d dev; device %s x%d",
                 trainer.model.dims, sum(p.numel() for p in trainer.model.parameters()) / 1e6, len(trainer.train_set),
                 trainer.train_hours, len(trainer.dev_set) if trainer.dev_set else 0, env.device, env.world_size)
    bar = None
    if main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=trainer.progress["step"], unit="step", file=sys.stderr,
                   dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 60)
    batches = trainer.batches() if trainer.progress["step"] < config.steps else iter(())
    for batch in batches:
        loss = trainer.train_step(batch)
        step = trainer.progress["step"]
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{trainer.lr:.2e}", audio_x=f"{trainer.audio_speed:.0f}")
        if main and step % config.log_every == 0:
            trainer.log_metrics()
        done = step >= config.steps or trainer.out_of_time()
        if main and trainer.dev_set and (step % config.eval_every == 0 or done):  # a run stopped by time is scored too
            trainer.evaluate()
        if main and (step % config.save_every == 0 or done):
            trainer.save(trainer.last_path, with_resume_state=True)
        if done:
            break
    if bar:
        bar.close()
    if main and trainer.progress["best_dev_wer"] is None:  # no dev set (or no evaluation yet): the last is the best
        trainer.save(trainer.best_path, with_resume_state=False)
    env.close()
    return trainer.metadata()


def _from_random_state(state) -> list:
    """Python's random state as nested lists of ints (storable under weights_only)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _to_random_state(stored) -> tuple:
    version, internal, gauss = stored
    return version, tuple(internal), gauss


if __name__ == "__main__":  # torchrun -m training.train ...
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train(config_from_args(train_parser(prog="training.train").parse_args()))
