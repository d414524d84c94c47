"""Whole training runs at a tiny size: outputs, refusal to overwrite, exact resume, DDP."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from octattn.cli import main
from octattn.data.synth import write_phantom_tree
from octattn.inference.bundle import load_bundle
from tests.conftest import WRITES_RUNS

pytestmark = WRITES_RUNS

TINY = [
    "pretrained=false",
    # the paper's policy: AdamW's two moments for the last three blocks and the new layers only
    # (33 M of 60 M parameters), a 0.51 GB checkpoint, not 0.73 (two live at once while one is saved)
    "policy=paper",
    "optimizer=adamw",
    "lr_backbone=0.001",
    "lr_new=0.001",
    "weight_decay=0.01",
    "image_size=75",
    "batch_size=8",
    "num_workers=0",
    "threads=1",
    "val_fraction=0.25",
    "balance=none",
    "schedule=cosine",
    "amp=off",  # bit-exact comparisons below: fp32 whatever the CPU
]
NO_CHECKPOINT = ["keep_checkpoint=false"]
"""For tests that never resume: a one-epoch run then writes no checkpoint (0.5 GB of the suite's disk)."""


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_tree(root, {"train": 6, "test": 2}, seed=1, size=(96, 93))
    return root


def _run(args, env=None):
    command = [sys.executable, "-m", "octattn", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_run_writes_everything_and_refuses_to_overwrite(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    # One epoch: a second rewrites the 0.51 GB checkpoint beside the first (1.3 GB of disk at
    # once); the loop across epochs is the resume test's, below.
    assert main(["train", "--data", str(phantoms), "--out", str(run), "epochs=1", "bn_recalibrate=8", *TINY]) == 0
    out = capsys.readouterr().out
    assert "train: CNV" in out and "patient-grouped" in out
    for name in ("config.yaml", "split.json", "checkpoint.pt", "metrics.csv", "steps.csv"):
        assert (run / name).exists(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 2
    assert "masks (mean/contrast/moved): after_9 " in out
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and {"model", "optimizer", "scheduler", "scaler", "rng"} <= set(state)
    _, config = load_bundle(run)
    assert config.architecture["name"] == "inception_v4_attention" and config.preprocess.size == (75, 75)
    assert config.provenance["data"] == str(phantoms) and 0.05 <= config.temperature <= 20
    assert main(["train", "--data", str(phantoms), "--out", str(run), *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "--data", str(phantoms), "--out", str(run), "--overwrite", "epochs=1", *TINY]) == 0


def test_mask_health_is_logged_and_moves(phantoms, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(phantoms), "--out", str(run), "epochs=1", *TINY, "lr_new=0.03", *NO_CHECKPOINT]
    assert main(args) == 0
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    modules = ("after_9", "after_13", "after_17")
    for name in modules:
        for field in ("mean", "contrast", "channel_contrast", "moved"):
            assert f"mask_{name}_{field}" in rows[0], (name, field)
    (row,) = rows
    assert all(0 <= float(row[f"mask_{name}_moved"]) <= 1 for name in modules)
    assert all(0 < float(row[f"mask_{name}_mean"]) < 1 for name in modules)
    # Training changes the masks: in some module, channels moved away from where they started.
    assert any(float(row[f"mask_{n}_moved"]) > 0 for n in modules)
    plain = tmp_path / "plain"
    assert (
        main(
            [
                "train",
                "--data",
                str(phantoms),
                "--out",
                str(plain),
                "epochs=1",
                "model=inception_v4",
                *TINY,
                *NO_CHECKPOINT,
            ]
        )
        == 0
    )
    assert "mask_" not in (plain / "metrics.csv").read_text()


def test_an_unvalidated_epoch_reads_nan_and_the_last_is_always_validated(phantoms, tmp_path, monkeypatch):
    """``val_every: 3`` over 2 epochs validates epoch 2 only, as the last (which epochs a cadence
    validates: ``test_engine``): BatchNorm is re-estimated for it alone, epoch 1's row reads
    "nan" (its mask columns too, though the first row measured none), the best epoch is the
    validated one, and the report still draws the masks."""
    from octattn.reporting import plots
    from octattn.reporting.report import read_run
    from octattn.training import loop

    recalibrated: list[int] = []
    recalibrate = loop.recalibrate_batchnorm

    def counted(model, dataset, count, batch_size, info):
        recalibrated.append(count)
        recalibrate(model, dataset, count, batch_size, info)

    monkeypatch.setattr(loop, "recalibrate_batchnorm", counted)
    run = tmp_path / "run"
    args = ["train", "--data", str(phantoms), "--out", str(run), "epochs=2", "val_every=3", "bn_recalibrate=8"]
    assert main([*args, *TINY, *NO_CHECKPOINT, "ood_detector=false"]) == 0
    assert recalibrated == [8]  # epoch 2's, not epoch 1's
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["train_loss"]) > 0 for r in rows)
    unvalidated = {k: v for k, v in rows[0].items() if k.startswith(("val_", "mask_"))}
    assert "mask_after_9_mean" in unvalidated and set(unvalidated.values()) == {"nan"}
    assert 0 <= float(rows[1]["val_accuracy"]) <= 1 and 0 < float(rows[1]["mask_after_9_mean"]) < 1
    assert load_bundle(run / "model")[1].provenance["epoch"] == 2
    assert read_run(run).first_epoch_accuracy is None
    assert plots.mask_health(read_run(run).epochs, "run").startswith(b"\x89PNG")


def test_a_run_that_keeps_no_checkpoint_never_writes_its_last(phantoms, tmp_path, monkeypatch):
    """The last epoch's checkpoint would be deleted when the run ends: it is never written (a
    model's size three times over, and twice that while it replaced the one before)."""
    from octattn.training import loop

    saved: list[int] = []
    save = loop.save_checkpoint

    def recorded(path, state):
        saved.append(int(state["epoch"]))
        save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", recorded)
    run = tmp_path / "run"
    args = ["train", "--data", str(phantoms), "--out", str(run), "epochs=2", "model=inception_v3", *TINY]
    assert main([*args, *NO_CHECKPOINT]) == 0
    assert saved == [0]  # epoch 1's, for a crash in epoch 2; never the last
    assert not (run / "checkpoint.pt").exists() and (run / "model" / "model.safetensors").exists()


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(phantoms, tmp_path):
    # Inception-v3: resuming exactly is the loop's job, not the model's, and its checkpoints
    # are a third of the attention model's (three of them live at once here).
    tiny = [a for a in TINY if a != "batch_size=8"]
    args = ["train", "--data", str(phantoms), "epochs=2", "batch_size=2", "model=inception_v3", *tiny]
    reference = _run([*args, "--out", str(tmp_path / "reference")])
    assert reference.returncode == 0, reference.stderr

    victim = tmp_path / "victim"
    process = subprocess.Popen(
        [sys.executable, "-m", "octattn", *args, "--out", str(victim)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = victim / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the second epoch (each takes several seconds here)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 0  # only epoch 1 was saved

    resumed = _run([*args, "--out", str(victim), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    final = torch.load(checkpoint, weights_only=True)["model"]
    expected = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)["model"]
    for key, value in expected.items():
        assert torch.equal(final[key], value), key


def test_two_gloo_processes_match_one_process(phantoms, tmp_path):
    """torchrun, 2 CPU processes x batch 4 vs 1 process x batch 8. BatchNorm is frozen:
    torch's SyncBatchNorm runs only on GPUs, and per-process batch statistics would differ."""
    # SGD: Adam divides by the root of tiny second moments and magnifies float-order noise.
    args = [
        "train",
        "--data",
        str(phantoms),
        "epochs=1",
        "bn=frozen",
        *TINY,
        "optimizer=sgd",
        "lr_backbone=0.01",
        *NO_CHECKPOINT,
    ]
    single = _run([*args, "--out", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr
    one = {
        key: value.clone() for key, value in load_file(str(tmp_path / "one" / "model" / "model.safetensors")).items()
    }
    one_metrics = (tmp_path / "one" / "metrics.csv").read_text().splitlines()[1].split(",")
    shutil.rmtree(tmp_path / "one")  # what is compared is in memory: one run's disk at a time, not two
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = subprocess.run(
        [*launcher, "-m", "octattn", *args, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    two_metrics = (tmp_path / "two" / "metrics.csv").read_text().splitlines()[1].split(",")
    assert one_metrics[3:5] == two_metrics[3:5]  # validation accuracy and F1: every image once


def test_grad_checkpointing_trains_to_the_same_losses(phantoms, tmp_path):
    losses = []
    for flag in ("false", "true"):
        run = tmp_path / f"run-{flag}"
        flags = [f"grad_checkpointing={flag}", *NO_CHECKPOINT]
        args = ["train", "--data", str(phantoms), "--out", str(run), "epochs=1", *TINY, *flags]
        assert main(args) == 0
        with (run / "steps.csv").open() as handle:
            losses.append([float(row["loss"]) for row in csv.DictReader(handle)])
        shutil.rmtree(run)  # only the losses are compared: one run's 0.24 GB bundle on disk at a time
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
