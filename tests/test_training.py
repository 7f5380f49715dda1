"""Training end to end on a tiny corpus that `asr synth` speaks: loss falls, resume is exact, DDP runs, eval scores,
distillation pulls a student toward its teacher."""
import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr.checkpoint import load_checkpoint, model_from_checkpoint
from training.data import UtteranceDataset
from training.distill import Teacher, shift_divergence
from training.feature_store import FeatureStore
from training.librispeech import load_manifests

TINY = ["--hidden", "48", "--layers", "2", "--batch-seconds", "12", "--warmup", "5", "--lr", "3e-3",
        "--eval-every", "1000", "--log-every", "5", "--threads", "1", "--seed", "3"]


def run(*args, timeout=600, env=None):
    result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    run("asr", "synth", root, "--subset", "train", "--utterances", "24", "--engines", "espeak", "--seed", "1")
    run("asr", "synth", root, "--subset", "dev", "--utterances", "6", "--engines", "espeak", "--seed", "2")
    return root


def losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row["loss"]]


def test_loss_falls_and_eval_scores(corpus, tmp_path):
    out = tmp_path / "run"
    run("asr", "train", "--train", corpus / "train", "--dev", corpus / "dev", "--out", out, "--steps", "60", *TINY)
    curve = losses(out)
    assert len(curve) == 12
    assert sum(curve[-3:]) / 3 < 0.75 * sum(curve[:2]) / 2, curve
    best = load_checkpoint(out / "best.pt")
    assert "optimizer" not in best and best["training"]["progress"]["step"] == 60
    assert best["training"]["progress"]["dev_wer"] is not None

    jsonl = tmp_path / "dev.jsonl"
    result = run("asr", "eval", "--data", corpus / "dev", "--model", out / "best.pt", "--jsonl", jsonl)
    scores = json.loads(result.stdout.splitlines()[-1])
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert scores["utterances"] == 6 and len(records) == 6
    assert {"id", "reference", "hypothesis", "wer", "cer"} <= set(records[0])
    # the corpus rates are averages over the utterances, weighted by their length
    assert min(r["cer"] for r in records) <= scores["cer"] <= max(r["cer"] for r in records)
    assert min(r["wer"] for r in records) <= scores["wer"] <= max(r["wer"] for r in records)


def test_average_of_two_runs_scores(corpus, tmp_path):
    """`asr average` of two short runs of different seeds: a checkpoint `asr eval` scores; a bad input is one line."""
    runs = [tmp_path / "seed3", tmp_path / "seed4"]
    for i, out in enumerate(runs):
        run("asr", "train", "--train", corpus / "train", "--out", out, "--steps", "4", *TINY[:-1], str(3 + i))
    soup = tmp_path / "soup.pt"
    run("asr", "average", runs[0] / "last.pt", runs[1] / "last.pt", "--out", soup)
    a, b = (load_checkpoint(r / "last.pt")["model"] for r in runs)
    averaged = load_checkpoint(soup)
    for key in a:
        torch.testing.assert_close(averaged["model"][key], (a[key] + b[key]) / 2)
    scores = json.loads(run("asr", "eval", "--data", corpus / "dev", "--model", soup).stdout.splitlines()[-1])
    assert scores["utterances"] == 6 and scores["failed"] == 0

    missing = tmp_path / "missing.pt"
    result = subprocess.run([sys.executable, "-m", "asr", "average", str(soup), str(missing), "--out",
                             str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"asr average: {missing}: no such checkpoint") and result.stderr.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()
    result = subprocess.run([sys.executable, "-m", "asr", "average", str(soup), "--out", str(soup / "x.pt")],
                            capture_output=True, text=True, timeout=300)  # a file where a folder should be
    assert result.returncode == 1 and result.stderr.startswith(f"asr average: cannot write {soup / 'x.pt'}: ")


def test_resume_continues_exactly(corpus, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["--train", corpus / "train", "--steps", "16", "--save-every", "4", "--trim-onsets", "0.5",
              "--freq-warp", "0.1", *TINY]
    run("asr", "train", "--out", straight, *common)
    run("asr", "train", "--out", resumed, *common, "--max-minutes", "0.0001")  # stops after its first step
    assert load_checkpoint(resumed / "last.pt")["training"]["progress"]["step"] == 1
    # resumed with its features on disk instead of in memory: the same float16 values, the same run
    run("asr", "train", "--out", resumed, *common, "--resume", "--feature-store", tmp_path / "features")
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["training"]["progress"]["step"] == b["training"]["progress"]["step"] == 16
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-6, rtol=0)
    assert len(list((tmp_path / "features").glob("*/*.npy"))) == 24


def test_the_feature_store_computes_each_file_once_and_never_serves_stale_features(corpus, tmp_path):
    utterances = load_manifests([corpus / "train"])[:3]
    in_memory = UtteranceDataset(utterances, stack=3)
    store = FeatureStore(tmp_path / "features")
    first = UtteranceDataset(utterances, stack=3, store=store)
    for i in range(3):
        torch.testing.assert_close(first.utterance_features(i), in_memory.utterance_features(i), atol=0, rtol=0)
    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "features").glob("*/*.npy")}
    assert len(written) == 3
    second = UtteranceDataset(utterances, stack=3, store=FeatureStore(tmp_path / "features"))  # another run
    torch.testing.assert_close(second.features(1), first.features(1), atol=0, rtol=0)
    assert {path: path.stat().st_mtime_ns for path in written} == written  # read, not computed again
    # a file cut short (a full disk) is computed again
    damaged = store.path(utterances[0].path)
    for cut in (100, 0):
        damaged.write_bytes(damaged.read_bytes()[:cut])
        torch.testing.assert_close(second.utterance_features(0), in_memory.utterance_features(0), atol=0, rtol=0)
    # changed audio gets a new name, so its old features are never served
    copy = tmp_path / "copy.wav"
    copy.write_bytes(Path(utterances[1].path).read_bytes())
    before = store.path(copy)
    copy.write_bytes(Path(utterances[2].path).read_bytes())
    assert store.path(copy) != before
    torch.testing.assert_close(store.features(copy), store.features(utterances[2].path), atol=0, rtol=0)



def test_a_feature_store_that_cannot_keep_features_is_one_clear_line_or_a_warning(corpus, tmp_path, caplog):
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    args = ["asr", "train", "--train", corpus / "train", "--out", tmp_path / "run", "--steps", "1", *TINY,
            "--feature-store", occupied / "features"]
    result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"--feature-store {occupied / 'features'}: cannot keep features " \
                                                     "there (Not a directory)"
    # where a file cannot be written (a full disk), training goes on with the features computed
    utterance = load_manifests([corpus / "train"])[0]
    store = FeatureStore(tmp_path / "features")
    store.path(utterance.path).parent.write_text("")  # its folder cannot be made
    features = store.features(utterance.path)
    torch.testing.assert_close(features.float(), UtteranceDataset([utterance], 3).utterance_features(0))
    assert "cannot keep features" in caplog.text and not store.path(utterance.path).parent.is_dir()


def test_a_run_stopped_by_time_scores_its_last_weights(corpus, tmp_path):
    """--max-minutes ends a run between evaluations: its last weights are scored, so best.pt can be them."""
    out = tmp_path / "timed"
    run("asr", "train", "--train", corpus / "train", "--dev", corpus / "dev", "--out", out, "--steps", "50",
        *TINY, "--max-minutes", "0.0001")
    best = load_checkpoint(out / "best.pt")["training"]["progress"]
    assert best["step"] == 1 and best["dev_wer"] is not None


def test_crash_mid_training_resumes_from_last_checkpoint(corpus, tmp_path):
    out = tmp_path / "crash"
    args = [sys.executable, "-m", "asr", "train", "--train", str(corpus / "train"), "--out", str(out),
            "--steps", "400", "--save-every", "3", *TINY]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    reached = load_checkpoint(out / "last.pt")["training"]["progress"]["step"]
    assert 3 <= reached < 400
    run("asr", "train", "--train", corpus / "train", "--out", out, "--steps", str(reached + 3), "--resume", *TINY[:-4])
    assert load_checkpoint(out / "last.pt")["training"]["progress"]["step"] == reached + 3


def test_two_process_ddp_with_gloo(corpus, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run("torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training.train",
        "--train", corpus / "train", "--out", out, "--steps", "6", "--device", "cpu", *TINY, env=env)
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["training"]["world_size"] == 2 and checkpoint["training"]["progress"]["step"] == 6


def test_resumed_run_does_not_repeat_metric_rows(corpus, tmp_path):
    """A run that stopped after logging past its last checkpoint (a crash) logs those steps again on resume:
    the rows of the lost steps are dropped, not repeated."""
    out = tmp_path / "rows"
    common = ["--train", corpus / "train", "--out", out, *TINY, "--log-every", "2"]
    run("asr", "train", *common, "--steps", "6", "--save-every", "6")
    checkpoint_at_6 = (out / "last.pt").read_bytes()
    run("asr", "train", *common, "--steps", "10", "--resume")
    (out / "last.pt").write_bytes(checkpoint_at_6)  # as if the run had died after logging steps 8 and 10
    run("asr", "train", *common, "--steps", "10", "--resume")
    with open(out / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row["loss"]]
    assert steps == [2, 4, 6, 8, 10]


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_a_damaged_checkpoint_is_one_clear_line(corpus, tmp_path, damage):
    out = tmp_path / damage
    args = ["asr", "train", "--train", corpus / "train", "--out", out, *TINY]
    run(*args, "--steps", "2")
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    result = subprocess.run([sys.executable, "-m", *map(str, args), "--steps", "4", "--resume"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("asr train: --resume: ") and str(out / "last.pt") in last_line
    assert "not a loadable checkpoint" in last_line and "start afresh" in last_line


@pytest.fixture(scope="module")
def untrained_teacher(corpus, tmp_path_factory):
    """An untrained offline model (--steps 0): its near-uniform outputs are far from what CTC alone teaches."""
    out = tmp_path_factory.mktemp("teacher")
    run("asr", "train", "--train", corpus / "train", "--out", out, "--steps", "0", "--bidirectional", *TINY)
    return out / "best.pt"


def test_distillation_pulls_the_student_toward_the_teacher(corpus, untrained_teacher, tmp_path):
    common = ["--train", corpus / "train", "--steps", "20", *TINY]
    run("asr", "train", "--out", tmp_path / "plain", *common)
    run("asr", "train", "--out", tmp_path / "taught", *common, "--teacher", untrained_teacher, "--distill-weight", "10")
    assert load_checkpoint(tmp_path / "taught" / "last.pt")["training"]["config"]["teacher"] == str(untrained_teacher)
    teacher = model_from_checkpoint(load_checkpoint(untrained_teacher)).eval()
    dataset = UtteranceDataset(load_manifests([corpus / "train"]), teacher.dims.stack)
    kl = {name: shift_divergence(teacher, model_from_checkpoint(load_checkpoint(tmp_path / name / "best.pt")).eval(),
                                 dataset, range(3, 4))[3] for name in ("plain", "taught")}
    assert kl["taught"] < 0.5 * kl["plain"], kl


def test_the_teachers_outputs_are_delayed_by_the_shift(corpus, untrained_teacher):
    model = model_from_checkpoint(load_checkpoint(untrained_teacher)).eval()
    dataset = UtteranceDataset(load_manifests([corpus / "train"]), model.dims.stack)
    features = dataset.features(0)[None]
    with torch.inference_mode():
        direct = model(features, torch.tensor([features.shape[1]]))[0][0]
    delayed = Teacher(str(untrained_teacher), model, dataset, shift=3).log_probs(0)
    torch.testing.assert_close(delayed[3:], direct[:-3], atol=2e-3, rtol=0)  # float16 storage
    torch.testing.assert_close(delayed[:3], direct[:1].expand(3, -1), atol=2e-3, rtol=0)  # the first one repeated


def test_the_delay_measurement_finds_a_model_in_step_with_itself(corpus, tmp_path):
    run("asr", "train", "--train", corpus / "train", "--out", tmp_path, "--steps", "20", *TINY)
    result = run("training.distill", "--teacher", tmp_path / "best.pt", "--student", tmp_path / "best.pt",
                 "--data", corpus / "train", "--utterances", "3", "--max-shift", "2")
    kl = [float(line.split("KL ")[1]) for line in result.stdout.splitlines()]
    assert len(kl) == 3 and kl[0] == 0.0 and min(kl[1:]) > 0, result.stdout


def test_a_teacher_with_other_outputs_is_one_clear_line(corpus, tmp_path):
    teacher = tmp_path / "stack2"
    run("asr", "train", "--train", corpus / "train", "--out", teacher, "--steps", "1", *TINY, "--stack", "2")
    args = ["asr", "train", "--train", corpus / "train", "--out", tmp_path / "student", "--steps", "1", *TINY,
            "--teacher", teacher / "best.pt"]
    result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"--teacher {teacher / 'best.pt'}: its outputs (stack 2, vocab 29) do not match the model's "
        f"(stack 3, vocab 29)")


@pytest.mark.parametrize("flag, value, message", [("--trim-onsets", "1.5", "--trim-onsets 1.5: give a probability from 0 to 1"),
                                                  ("--freq-warp", "0.5", "--freq-warp 0.5: give a fraction from 0")])
def test_an_augmentation_setting_out_of_range_is_one_clear_line(corpus, tmp_path, flag, value, message):
    args = ["asr", "train", "--train", corpus / "train", "--out", tmp_path / "run", "--steps", "1", *TINY, flag, value]
    result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_init_from_a_smaller_model_grows_it_by_residual_layers_and_units(corpus, tmp_path):
    common = ["--train", corpus / "train", *TINY]
    run("asr", "train", "--out", tmp_path / "two", "--steps", "10", *common)
    two = tmp_path / "two" / "best.pt"
    run("asr", "train", "--out", tmp_path / "start", "--steps", "0", *common, "--init", two,
        "--layers", "3", "--residual-layers", "1")
    run("asr", "train", "--out", tmp_path / "wide", "--steps", "0", *common, "--init", two, "--hidden", "64",
        "--dropout", "0.3")
    run("asr", "train", "--out", tmp_path / "three", "--steps", "10", *common, "--init", two,
        "--layers", "3", "--residual-layers", "1")
    models = {name: model_from_checkpoint(load_checkpoint(path)).eval() for name, path in
              [("two", two), ("start", tmp_path / "start" / "best.pt"), ("three", tmp_path / "three" / "best.pt"),
               ("wide", tmp_path / "wide" / "best.pt")]}
    assert models["three"].dims.layers == 3 and models["three"].dims.residual_layers == 1
    assert models["wide"].dims.hidden == 64 and models["wide"].dims.dropout == 0.3  # dropout: the new model's own
    features = UtteranceDataset(load_manifests([corpus / "train"]), 3).features(0)[None]
    with torch.inference_mode():
        outputs = {name: model(features, torch.tensor([features.shape[1]]))[0] for name, model in models.items()}
    torch.testing.assert_close(outputs["start"], outputs["two"], atol=0, rtol=0)  # grown: the same function
    torch.testing.assert_close(outputs["wide"], outputs["two"], atol=1e-5, rtol=1e-5)  # widened: the same up to sums
    assert models["three"].lstms[2].weight_ih_l0.abs().max() > 0  # trained: the new layer left zero

    args = ["asr", "train", "--out", tmp_path / "forgot", "--steps", "1", *common, "--init", two, "--layers", "3"]
    result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "residual_layers=1" in result.stderr.strip().splitlines()[-1]


def test_train_help_shows_each_default_it_has():
    from training.config import train_parser
    text = " ".join(train_parser().format_help().split())
    assert "--init CHECKPOINT start from" in text and "(default )" not in text
    assert "(default 0.5)" in text  # --distill-weight


def test_joined_examples_are_the_utterances_end_to_end(corpus, tmp_path):
    # every synthetic utterance has its own voice: make them three speakers' recordings
    utterances = [dataclasses.replace(u, speaker=str(i % 3)) for i, u in enumerate(load_manifests([corpus / "train"]))]
    alone = UtteranceDataset(utterances, stack=3)
    joined = UtteranceDataset(utterances, stack=3, join=3, seed=4)
    assert len(joined) < len(alone)
    batch = joined.batch([i for i, example in enumerate(joined.examples) if len(example) > 1][:2])
    for b, index in enumerate(batch.indices):
        parts = joined.examples[index]
        assert batch.texts[b] == " ".join(utterances[i].text for i in parts)
        expected = torch.cat([alone.features(i) for i in parts])
        assert int(batch.feature_lengths[b]) == len(expected)
        torch.testing.assert_close(batch.features[b, : len(expected)], expected)
        assert int(batch.label_lengths[b]) == len(joined.tokenizer.encode(batch.texts[b]))
    out = tmp_path / "joined"
    run("asr", "train", "--train", corpus / "train", "--out", out, "--steps", "8", "--join-utterances", "3", *TINY)
    assert load_checkpoint(out / "last.pt")["training"]["config"]["join_utterances"] == 3
