"""What holds the plain model back on OCTDL? Part b's recipe against one change at a time.

The real-scan benchmark's OCTDL runs stop well short of their target (test macro-F1 0.48-0.57
for 0.70, after the BatchNorm fix) and overfit: the training loss falls far below the
validation loss within a few epochs. Each variant here is part b's plain Inception-v4 recipe (128 px, 12
one-cycle epochs, class-balanced sampling, AdamW at 0.002 with weight decay 0.05) with one
setting changed. A variant is judged on **OCTDL's validation split** (the best epoch's
macro-F1, what the run itself selects on); its test numbers are shown beside, paired
(McNemar) against part b's run on the same 480 clean test scans, but choosing a recipe on
them would spend the test set.

Each run is also shown with the class-prior correction (``prior_correction: true``), fitted
after the fact exactly as the run would have fitted it: the power that maximises macro-F1 on
its validation scans (:func:`prior_corrected`); the weights are the same either way.

``python -m benchmarks.octdl_recipe --octdl PATH [--seeds 0] [--variants a,b]``: resumable
(each finished run is reused; the results file is rewritten after each one, keeping the
seeds it already has that this call does not run), and it shares
``runs/real-scans/full`` with the real-scan benchmark, so part b's finished run is reused as
the baseline. Writes ``results/octdl_recipe.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, write_results
from benchmarks.real_scans import (
    measured_phrase,
    octdl_clean_manifest,
    octdl_overrides,
    paired,
    pct_ci,
    plan,
    points_p,
    pooled,
    prior_corrected,
    run_once,
)

MODEL = "plain"
"""Part b's best model on macro-F1, and the fastest of the three."""

BASELINE = "part b"

VARIANTS: dict[str, tuple[list[str], str]] = {
    BASELINE: ([], "part b's recipe as it is"),
    "gentler": (
        ["lr_backbone=0.001", "lr_new=0.001", "weight_decay=0.01"],
        "half the peak rate, AdamW's default weight decay",
    ),
    "loss weights": (["balance=loss_weights"], "inverse-frequency loss weights instead of the balanced sampler"),
    "smoothing": (["label_smoothing=0.1"], "label smoothing 0.1"),
    "no recalibration": (["bn_recalibrate=0"], "BatchNorm's running statistics as trained"),
    "jitter": (["jitter=1"], "tilt, shift, zoom, brightness and contrast (jitter: 1)"),
    "192 px": (["image_size=192"], "1.5 times the side: OCTDL's wide scans (up to 1101x410) keep more detail"),
    "24 epochs": (["epochs=24"], "twice the epochs: seed 0 chose its last epoch, still learning"),
}
"""Each variant's overrides on top of part b's recipe, and what it changes, in the order run."""

RUN_SUFFIX = {BASELINE: "", "jitter": "-jitter1"}
"""Run-name suffixes that predate this probe (part b's own run; the jitter probe's)."""


def run_name(variant: str, seed: int) -> str:
    """The run folder of one variant and seed; part b's baseline is part b's own run."""
    suffix = RUN_SUFFIX.get(variant, "-" + variant.replace(" ", "-"))
    return f"octdl-{MODEL}-s{seed}{suffix}"


def best_validation(run: Path) -> dict[str, float]:
    """The selected (best) epoch of a finished run and its validation scores, from
    ``RUN/metrics.csv``: the highest macro-F1, ties to the lower loss (the loop's rule)."""
    with (run / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    best = max(rows, key=lambda r: (float(r["val_macro_f1"]), -float(r["val_loss"])))
    return {
        "epoch": int(best["epoch"]),
        "val_macro_f1": float(best["val_macro_f1"]),
        "val_accuracy": float(best["val_accuracy"]),
        "last_val_macro_f1": float(rows[-1]["val_macro_f1"]),
    }


def _summary(test: dict[str, Any]) -> dict[str, Any]:
    return {k: test[k] for k in ("n", "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")}


def one_variant(work: Path, manifest: Path, variant: str, seed: int) -> dict[str, Any]:
    """Train (or reuse) one variant's run and summarise it on validation and test, as it is
    and with the class-prior correction."""
    overrides = [*octdl_overrides(plan(False, 147), MODEL, seed), *VARIANTS[variant][0]]
    name = run_name(variant, seed)
    result = run_once(name, work, manifest, overrides)
    test = pooled([result])
    power, corrected_result = prior_corrected(work / "runs" / name, manifest, result)
    corrected = pooled([corrected_result])
    return {
        "overrides": VARIANTS[variant][0],
        **best_validation(work / "runs" / name),
        "test": _summary(test),
        "prior_power": power,
        "corrected": {**_summary(corrected), "vs_uncorrected": paired(test, corrected)},
        "_pooled": test,
        "_corrected": corrected,
    }


def probe(work: Path, octdl: Path, seeds: list[int], variants: list[str], write: Any) -> dict[str, Any]:
    """Every variant of every seed, the baseline first; ``write`` gets the results so far
    after each run."""
    manifest = work / "octdl-clean.csv"
    if not manifest.exists():
        octdl_clean_manifest(octdl, manifest)
    results: dict[str, Any] = {"model": MODEL, "seeds": {}}
    for seed in seeds:
        done: dict[str, Any] = {}
        results["seeds"][str(seed)] = done
        for variant in [BASELINE, *(v for v in variants if v != BASELINE)]:
            done[variant] = one_variant(work, manifest, variant, seed)
            if variant != BASELINE:
                done[variant]["paired"] = paired(done[BASELINE]["_pooled"], done[variant]["_pooled"])
                done[variant]["corrected"]["vs_part_b_corrected"] = paired(
                    done[BASELINE]["_corrected"], done[variant]["_corrected"]
                )
            results["test_scans"] = done[BASELINE]["test"]["n"]
            write({**results, "seeds": {s: {v: _public(r) for v, r in d.items()} for s, d in results["seeds"].items()}})
    return results


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("_")}


def _versus(pair: dict[str, Any] | None) -> str:
    return points_p(pair) if pair else "-"


def _rows(results: dict[str, Any], cells: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """One table row per seed and variant: the seed, the variant, then ``cells`` of its run."""
    return [
        "| " + " | ".join([seed, variant, *cells(run)]) + " |"
        for seed, runs in results["seeds"].items()
        for variant, run in runs.items()
    ]


def table(results: dict[str, Any]) -> str:
    """The docs' tables of an ``octdl_recipe.json``: each variant as trained, then with the
    class-prior correction."""
    lines = [
        f"Plain Inception-v4 on OCTDL, part b's recipe (128 px, 12 one-cycle epochs, class-balanced "
        f"sampling, AdamW 0.002, weight decay 0.05) with one change at a time. Judged on validation "
        f"(the selected epoch's macro-F1); test ({results['test_scans']} clean scans) beside, paired "
        "against part b's run:",
        "",
        "| seed | variant | change | val macro-F1 (epoch) | test accuracy (95% CI) | test macro-F1 (95% CI) "
        "| test accuracy vs part b (McNemar p) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += _rows(
        results,
        lambda r: [
            ", ".join(f"`{o}`" for o in r["overrides"]) or "-",
            f"{r['val_macro_f1']:.3f} ({r['epoch']})",
            pct_ci(r["test"]["accuracy"], r["test"]["accuracy_ci"]),
            pct_ci(r["test"]["macro_f1"], r["test"]["macro_f1_ci"]),
            _versus(r.get("paired")),
        ],
    )
    lines += [
        "",
        "The same runs with the class-prior correction (`prior_correction: true`), its power fitted on "
        "each run's validation scans:",
        "",
        "| seed | variant | power | test accuracy (95% CI) | test macro-F1 (95% CI) "
        "| accuracy vs uncorrected (McNemar p) | vs part b corrected |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += _rows(
        results,
        lambda r: [
            f"{r['prior_power']:.2f}",
            pct_ci(r["corrected"]["accuracy"], r["corrected"]["accuracy_ci"]),
            pct_ci(r["corrected"]["macro_f1"], r["corrected"]["macro_f1_ci"]),
            _versus(r["corrected"]["vs_uncorrected"]),
            _versus(r["corrected"].get("vs_part_b_corrected")),
        ],
    )
    machines = seed_machines(results)
    if len({(m["cpu"], m["date"][:10]) for m in machines.values() if m}) > 1:
        # a CPU moves a 12-epoch run by as much as a seed: each seed says where it ran
        lines += ["", *(f"Seed {s} measured {measured_phrase(m)}." for s, m in machines.items() if m)]
    return "\n".join(lines)


def seed_machines(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where each seed of a results file was measured: its own entry, else the file's machine
    (a file from before seeds were measured on different machines)."""
    own = results.get("seed_machines", {})
    return {s: own.get(s, results.get("machine")) for s in results["seeds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--octdl", required=True, help="the whole OCTDL (its train/val/test folders)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)} (default all)"
    )
    parser.add_argument("--work", default="runs/real-scans", help="the real-scan benchmark's work folder")
    args = parser.parse_args()
    octdl = Path(args.octdl)
    if not octdl.is_dir():
        parser.error(f"--octdl {octdl}: not a folder")
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    work = Path(args.work) / "full"
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    # Seeds run before and not now stay in the results file (a later seed is added to it).
    previous = RESULTS / "octdl_recipe.json"
    old = json.loads(previous.read_text()) if previous.exists() else {"seeds": {}}
    kept, kept_machines = old["seeds"], seed_machines(old)
    now = machine()

    def write(results: dict[str, Any]) -> None:
        every = {**{s: r for s, r in kept.items() if s not in results["seeds"]}, **results["seeds"]}
        ordered = {s: every[s] for s in sorted(every, key=int)}
        machines = {s: now if s in results["seeds"] else kept_machines[s] for s in ordered}
        write_results("octdl_recipe", {**results, "seeds": ordered, "seed_machines": machines}, table, RESULTS)

    probe(work, octdl, seeds, variants, write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
