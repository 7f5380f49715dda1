"""The training configuration: one dataclass, the `asr train` argument parser built from it, and the way back.

    config = config_from_args(train_parser().parse_args())     # what `asr train` and `torchrun -m training.train` do

Model sizes are not copied here: `TrainConfig.model` is an `asr.model.ModelDims`, and its flags (--hidden, --layers,
...) come from that dataclass's fields. Every other flag is a field of `TrainConfig` with its help text beside it.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace

from asr.model import NORMALIZATIONS, ModelDims

USAGE = """Train an LSTM-CTC acoustic model on LibriSpeech-format corpora.

    asr train --train data/LibriSpeech/train-clean-100 --dev data/LibriSpeech/dev-clean --out runs/stream
    asr train --train A B C --dev D --out runs/offline --bidirectional
    asr train ... --out runs/stream --resume      # continue exactly where the last checkpoint stopped
    asr train ... --out runs/stream --init runs/stream/best.pt --teacher runs/offline/best.pt   # distillation

Multi-GPU or multi-node: the same flags under torchrun (DDP; only rank 0 logs, evaluates and saves):

    torchrun --standalone --nproc_per_node=4 -m training.train --train ... --dev ... --out runs/big --hidden 1024 --layers 5

Files in --out: last.pt (everything needed to resume, written atomically every --save-every steps), best.pt (the model
with the best dev WER, no optimizer state), metrics.csv (loss, learning rate, speed, dev WER/CER).
"""

TRAIN_MODEL = ModelDims(normalization="running")  # what a new run trains unless flags say otherwise


def option(default, help: str, **argparse_kwargs):
    """A config field with its command-line help (and any extra argparse settings). A boolean that is on by default
    gets a --no- flag; `off_help` says what that flag does where "no " + help would not read."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass
class TrainConfig:
    train: list[str] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    out: str = "runs/model"
    model: ModelDims = TRAIN_MODEL
    init: str = option("", "start from this checkpoint's weights (same dims; fine-tuning)", metavar="CHECKPOINT")
    exclude_utterances: str = option("", "leave out the training utterances whose ids this file lists (first "
                                     "column; e.g. the flagged.tsv of training.pseudo_label flag)", metavar="FILE")
    teacher: str = option("", "distil this trained model's outputs too (training.distill), e.g. the offline model "
                          "into the stream model", metavar="CHECKPOINT")
    distill_weight: float = option(0.5, "with --teacher: weight of the distillation loss beside CTC's")
    distill_shift: int = option(3, "with --teacher: model steps the teacher's outputs are delayed by")
    # optimisation
    steps: int = option(4000, "steps in the learning-rate schedule")
    lr: float = option(2e-3, "peak AdamW learning rate")
    warmup: int = option(300, "linear warmup steps")
    min_lr_ratio: float = option(0.05, "final learning rate as a fraction of --lr")
    weight_decay: float = option(0.01, "AdamW weight decay")
    clip: float = option(5.0, "gradient norm clip")
    batch_seconds: float = option(160.0, "padded audio seconds per batch and process")
    max_utterance_seconds: float = option(30.0, "skip longer utterances (and join no longer examples)")
    join_utterances: int = option(1, "join 1 to N utterances of one speaker into each training example, as a long "
                                  "recording is heard (1: each alone)", metavar="N")
    spec_augment: bool = option(True, "SpecAugment (frequency and time masks)")
    freq_warp: float = option(0.0, "vocal tract length perturbation: scale each example's frequencies by a factor "
                              "from 1 +- this (0: off)")
    trim_onsets: float = option(0.0, "probability of cutting an example's leading silence to 0-100 ms, so that the "
                                "model also hears recordings that start on the first word (trimmed prompts)")
    # bookkeeping
    eval_every: int = option(250, "steps between dev evaluations")
    save_every: int = option(100, "steps between checkpoints (last.pt)")
    log_every: int = option(25, "steps between metrics rows")
    dev_max_utterances: int = option(400, "dev utterances scored")
    max_minutes: float = option(0.0, "stop with a checkpoint after this much wall time (0: no limit)")
    seed: int = option(0, "random seed")
    threads: int = option(0, "torch CPU threads (0: torch's choice)")
    device: str = option("auto", "cpu, cuda, cuda:1 ... (auto: cuda if available)")
    resume: bool = option(False, "continue from OUT/last.pt")
    cache_features: bool = option(True, "keep features in memory instead of recomputing them every epoch",
                                  off_help="compute features again every epoch instead of keeping them in memory "
                                  "(about 60 MB a training hour saved, each epoch slower)")
    feature_store: str = option("", "keep features as float16 files in DIR instead of in memory: computed once for "
                                "every run that reads the same audio and kept across restarts (about 60 MB a "
                                "training hour)", metavar="DIR")

    def to_dict(self) -> dict:
        return asdict(self)


# Model flags: the ModelDims fields a user sets (n_mels and vocab follow from the features and the tokenizer).
MODEL_FLAGS = {
    "hidden": "LSTM units per direction (--init from a narrower model widens it by units it does not read yet)",
    "layers": "LSTM layers",
    "stack": "10 ms frames stacked per model step",
    "dropout": "dropout between layers",
    "normalization": f"feature normalisation: {' or '.join(NORMALIZATIONS)} (a stream's own running mean)",
    "norm_prior_frames": "running normalisation: weight of the training mean, in frames",
    "residual_layers": "top layers that add their input to their output (--init from a model with fewer layers "
                       "grows it by residual layers that start at zero)",
    "lookahead": "10 ms frames after each step's own that its input holds: a stream's words come as much later "
                 "(--init from a model with fewer reads the frames added with zero weights at first)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", nargs="+", required=True, metavar="DIR", help="LibriSpeech-format subset dirs")
    parser.add_argument("--dev", nargs="*", default=[], metavar="DIR", help="dev subset dirs (WER while training)")
    parser.add_argument("--out", required=True, help="run directory: last.pt, best.pt, metrics.csv")
    model = parser.add_argument_group("model")
    for f in fields(ModelDims):
        if f.name in MODEL_FLAGS:
            default = getattr(TRAIN_MODEL, f.name)
            kwargs = {"choices": NORMALIZATIONS} if f.name == "normalization" else {"type": type(default)}
            model.add_argument(_flag(f.name), dest=f.name, help=f"{MODEL_FLAGS[f.name]} (default {default})", **kwargs)
    model.add_argument("--bidirectional", action="store_true", default=None, help="offline model (cannot stream)")
    groups = {"steps": parser.add_argument_group("optimisation"), "eval_every": parser.add_argument_group("run")}
    group = parser
    for f in fields(TrainConfig):
        group = groups.get(f.name, group)
        if "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        if isinstance(f.default, bool):
            if f.default:  # a feature that is on: the flag turns it off
                group.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                   default=None, help=meta.get("off_help", f"no {help_text}"))
            else:
                group.add_argument(_flag(f.name), dest=f.name, action="store_true", default=None, help=help_text)
            continue
        shown = f" (default {f.default})" if f.default != "" else ""
        group.add_argument(_flag(f.name), dest=f.name, type=type(f.default), help=help_text + shown, **meta)


def train_parser(prog: str = "asr train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Flags given on the command line override the dataclass defaults; flags left out keep them."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    dims = replace(TRAIN_MODEL, **{f.name: given[f.name] for f in fields(ModelDims) if f.name in given})
    values = {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given and f.name != "model"}
    return TrainConfig(model=dims, **values)


def config_from_dict(stored: dict) -> TrainConfig:
    """The TrainConfig a checkpoint recorded (`TrainConfig.to_dict`)."""
    stored = dict(stored)
    model = ModelDims(**stored.pop("model")) if isinstance(stored.get("model"), dict) else TRAIN_MODEL
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(model=model, **{k: v for k, v in stored.items() if k in known})

