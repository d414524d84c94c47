"""What validating less often saves on a real-scan fold, and what it costs in accuracy.

A profile of one fold of the real-scan benchmark's part a (plain Inception-v4 from scratch,
147 px, 12 epochs, on the 2-core Intel Xeon with AMX) put a third of the fold's time in the
BatchNorm re-estimation that precedes each epoch's validation (``bn_recalibrate: 256``, in
fp32: ``benchmarks/epoch.py``), beside the training steps' 58%. ``val_every: N`` validates after
every N-th epoch and the last instead of after each.

``python -m benchmarks.validation_cadence [--model plain] [--every 1,3] [--seeds 0,1] [--quick]``
trains part a's five patient-grouped folds of the 307 OCT2017 scans with part a's recipe and
code (its folds, recipe, training and scoring) once for each cadence, the cadences taking turns
fold by fold so that a CPU's drift touches them alike, and writes
``results/validation_cadence.{json,md}``: each fold's wall time (training and scoring) and its
training steps' time (the epochs' ``epoch_seconds``), their sums, the ratio of the sums to the
first cadence's, and the pooled out-of-fold accuracy of each cadence paired scan by scan with the
first's (McNemar's exact test, paired patient-bootstrap interval), on each seed. Each model's
measurement is kept beside the others' (``--model attention`` leaves plain's as it was), with
the machine and date it was made on. Resumable: the
runs live in ``runs/validation-cadence/runs``, named by seed, cadence and fold, and a finished
fold is reused with the time it took when trained. ``--quick`` (75 px, 2 epochs, 2 folds, 16
scans a class) checks the code path and writes under ``runs/validation-cadence-quick``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import REAL_DATA, RESULTS, machine, results_in, whole_numbers, write_results
from benchmarks.common import with_model as common_with_model
from benchmarks.real_scans import (
    MODELS,
    Plan,
    fold_overrides,
    oct2017_fold_manifests,
    paired,
    pct_ci,
    plan,
    points_p,
    pooled,
    run_once,
)

WORK = Path("runs") / "validation-cadence"
QUICK_WORK = Path("runs") / "validation-cadence-quick"
"""Where ``--quick`` trains and writes its meaningless numbers: never over the committed results."""


def training_steps_seconds(run: Path) -> float:
    """The training steps' seconds of a finished run: its epochs' ``epoch_seconds``."""
    with (run / "metrics.csv").open(newline="") as handle:
        return sum(float(row["epoch_seconds"]) for row in csv.DictReader(handle))


def measure_seed(
    p: Plan, manifests: list[Path], model: str, cadences: list[int], seed: int, work: Path
) -> dict[str, Any]:
    """One seed's cadences on part a's fold ``manifests``, trained in turns fold by fold (or
    reused), pooled out of fold, with each fold's wall and training-step seconds."""
    folds: dict[int, list[dict[str, Any]]] = {n: [] for n in cadences}
    for k, manifest in enumerate(manifests):
        for n in cadences:
            name = f"oct2017-{model}-scratch-s{seed}-val-every-{n}-fold{k}"
            overrides = [*fold_overrides(p, model, seed, []), f"val_every={n}"]
            result = run_once(name, work, manifest, overrides)
            steps = training_steps_seconds(work / "runs" / name)
            folds[n].append({**result, "training_steps": steps})
            print(f"seed {seed}, fold {k}, val_every {n}: {result.get('seconds', float('nan')):.0f} s", flush=True)
    readings: dict[str, Any] = {}
    pools = {n: pooled(folds[n]) for n in cadences}
    for n in cadences:
        readings[str(n)] = {
            **{key: v for key, v in pools[n].items() if not key.startswith("_")},
            "fold_seconds": [f.get("seconds") for f in folds[n]],
            "fold_training_steps_seconds": [f["training_steps"] for f in folds[n]],
        }
        if n != cadences[0]:
            readings[str(n)]["vs_first"] = paired(pools[cadences[0]], pools[n])
    return readings


def measure(model: str, cadences: list[int], seeds: list[int], quick: bool, work: Path) -> dict[str, Any]:
    """Every seed's cadences (:func:`measure_seed`) for one model, with the plan they ran under
    and the machine they ran on."""
    p = replace(plan(quick, 147), epochs=2) if quick else plan(False, 147)
    work.mkdir(parents=True, exist_ok=True)
    manifests = oct2017_fold_manifests(work, p)
    by_seed = {str(seed): measure_seed(p, manifests, model, cadences, seed, work) for seed in seeds}
    return {
        "size": p.size,
        "epochs": p.epochs,
        "folds": p.folds,
        "scans": by_seed[str(seeds[0])][str(cadences[0])]["n"],
        "seeds": by_seed,
        "machine": machine(),
    }


def with_model(previous: dict[str, Any] | None, model: str, measured: dict[str, Any]) -> dict[str, Any]:
    """:func:`benchmarks.common.with_model`, reading a file of one model's older layout
    (``model`` beside its numbers, the machine at the top) as that model's."""
    if previous is not None and "models" not in previous:  # the layout before 2026-12-07's second model
        previous = {"models": {previous["model"]: {k: v for k, v in previous.items() if k != "model"}}}
    return common_with_model(previous, model, measured)


def _sum(values: list[float | None]) -> float | None:
    """The sum of the folds' seconds; None where a fold kept none (trained before they were kept)."""
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``validation_cadence.json``: each model's cadences on each seed."""
    models = results["models"]
    first_model = next(iter(models.values()))
    size, epochs, folds, scans = (first_model[k] for k in ("size", "epochs", "folds", "scans"))
    lines = [
        f"| from scratch, {size} px, {epochs} epochs | model | seed "
        "| fold wall time, median (s) | all folds (s) | of which training steps (s) | x first | "
        f"pooled accuracy, {scans} scans (95% CI) | macro-F1 | this - first (points; p) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, measured in models.items():
        for seed, cadences in measured["seeds"].items():
            first = _sum(next(iter(cadences.values()))["fold_seconds"])
            for n, c in cadences.items():
                total = _sum(c["fold_seconds"])
                known = [v for v in c["fold_seconds"] if v is not None]
                median = f"{statistics.median(known):.0f}" if known else "-"
                ratio = f"{first / total:.2f}x" if first and total else "-"
                versus = points_p(c["vs_first"]) if "vs_first" in c else "-"
                total_text = f"{total:.0f}" if total is not None else "-"
                lines.append(
                    f"| val_every {n} | {model} | {seed} | {median} | {total_text} "
                    f"| {sum(c['fold_training_steps_seconds']):.0f} | {ratio} "
                    f"| {pct_ci(c['accuracy'], c['accuracy_ci'])} | {c['macro_f1']:.3f} | {versus} |"
                )
    machines = {model: m["machine"] for model, m in models.items() if "machine" in m}
    several_cpus = len({(m["cpu"], m.get("cpu_flags")) for m in machines.values()}) > 1
    dates = "; ".join(
        f"{model} {m['date'][:16].replace('T', ' ')} UTC" + (f" on {m['cpu']}" if several_cpus else "")
        for model, m in machines.items()
    )
    return "\n".join(
        [
            *lines,
            "",
            f"Part a's {folds} patient-grouped folds and recipe; x first: the first cadence's total time over this "
            "one's on the same seed (faster above 1). The cadences took turns fold by fold in one process; a fold's "
            f"time is its training and scoring. Measured: {dates}.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="plain", help="the network (default: plain)")
    parser.add_argument("--every", default="1,3", help="the cadences, comma-separated; the first is the baseline")
    parser.add_argument("--seeds", default="0,1", help="the runs' seeds, comma-separated (default: 0,1)")
    parser.add_argument("--quick", action="store_true", help="75 px, 2 epochs, 2 folds (the code path only)")
    args = parser.parse_args()
    cadences = whole_numbers(parser, "--every", args.every)
    seeds = whole_numbers(parser, "--seeds", args.seeds)
    if len(cadences) < 2 or min(cadences) < 1 or len(set(cadences)) != len(cadences):
        parser.error(f"--every: two or more distinct cadences of at least 1, got {args.every!r}")
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found (the OCT2017 scans this benchmark trains on)")
        return 0
    work = QUICK_WORK if args.quick else WORK
    folder = work if args.quick else RESULTS
    measured = measure(args.model, cadences, seeds, args.quick, work)
    previous = results_in(folder, "validation_cadence")
    write_results("validation_cadence", with_model(previous, args.model, measured), table, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
