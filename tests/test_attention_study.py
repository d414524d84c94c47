"""The attention study's code path, at a tiny size (the study itself is a benchmark, not a test)."""

import json
import re
import subprocess
import sys

from benchmarks.attention_study import diverged, grid, worse_than_chance

from tests.conftest import WRITES_RUNS


def test_divergence_is_a_loss_above_its_first_epoch_for_more_than_one_epoch():
    assert not diverged([0.8, 0.5, 0.9, 0.4])  # one epoch above the first: tolerated
    assert diverged([0.77, 2.09, 3.85])  # the first try of the transfer stand-in
    assert diverged([0.8, float("nan")])
    assert not diverged([1.0])
    assert not diverged([10.21, 4.49, 1.89, 1.78]) and worse_than_chance([10.21, 4.49, 1.89, 1.78])  # paper-sgd
    assert not worse_than_chance([0.6, 0.35, 0.29])


def test_grid_compares_every_start_under_the_chosen_recipe_with_two_seeds():
    runs = grid(quick=False)
    chosen = {(r.start, r.seed) for r in runs if r.recipe == "adamw" and r.model == "attention"}
    assert chosen == {(s, seed) for s in ("identity", "gentle", "he", "nomask", "fastmask") for seed in (0, 1)}
    ablation = next(r for r in runs if r.start == "nomask")
    assert "attention_mask=false" in ablation.overrides()
    lever = next(r for r in runs if r.start == "fastmask")
    assert "attention_init=identity" in lever.overrides() and "lr_mask_factor=10.0" in lever.overrides()
    assert {r.recipe for r in runs} == {"paper-sgd", "sgd-clip", "adamw"}
    assert all(any(p.model == "plain" and p.recipe == r.recipe and p.seed == r.seed for p in runs) for r in runs)


@WRITES_RUNS
def test_quick_study_writes_json_and_table(tmp_path):
    command = [
        sys.executable,
        "-m",
        "benchmarks.attention_study",
        "--quick",
        "--work",
        str(tmp_path / "work"),
        "--results",
        str(tmp_path / "results"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results" / "attention_study.json").read_text())
    runs = {r["run"]: r for r in results["runs"]}
    assert set(runs) == {"adamw-attention-identity-s0", "adamw-plain-s0"}
    assert not list((tmp_path / "work").rglob("checkpoint.pt"))  # finished runs keep bundles, not 0.7 GB checkpoints
    attention = runs["adamw-attention-identity-s0"]
    assert "mask_after_9_moved" in attention["epochs"][0] and 0 <= attention["test"]["accuracy"] <= 1
    assert {"attention_after_9_weighted", "gradcam"} <= set(attention["localisation"]["hard"])
    assert "gradcam" in runs["adamw-plain-s0"]["localisation"]["standard"]
    assert "McNemar" in " ".join(results["comparisons"][0]["lines"])
    table = (tmp_path / "results" / "attention_study.md").read_text()
    # one epoch cannot rise; a tiny run may well stay above chance
    assert re.search(r"\| adamw-attention-identity-s0 \| no \| (yes|no) \|", table) and "above chance" in table
    for block in table.split("\n\n"):  # every row of every table has its header's cells
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count(" | ") for line in rows}) <= 1, block
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)  # finished runs are kept
    assert rerun.returncode == 0 and "epoch 1/1" not in rerun.stdout
