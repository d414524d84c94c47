"""Phantoms that teach: which phantoms and which recipe move a phantom-only model on real scans.

Part d of the real-scan benchmark trains plain Inception-v4 on phantoms alone and scores it on
the 307 real OCT2017 scans (target: 50%). This probe changes one thing at a time:

* the **anatomy**: ``shipped`` (the realistic style of :mod:`octattn.data.phantom`, part d's)
  or ``lesion-sized`` (:mod:`octattn.data.phantom_anatomy`: lesions at the sizes real scans
  show them, and nuisances every class shares), both rendered in the shipped style;
* the **recipe**: ``cosine`` (the demo's cosine schedule, 5 epochs, batch 32: part d's until
  2026-12-04), ``onecycle`` (one-cycle, 10 epochs, batch 16, ``jitter: 0.5``: part d's now,
  :data:`benchmarks.real_scans.PHANTOM_RECIPE`), ``randomised`` (``onecycle`` with
  ``randomise: 0.5``: each phantom's gamma, sharpness, resolution and noise drawn afresh every
  epoch, domain randomisation) or ``randomised-strong`` (``randomise: 1``). A seed draws the
  same phantoms under every recipe, so recipes are compared on the same training images;
  ``diverse`` is ``onecycle`` with the same number of training images drawn as 500 phantoms
  per class seen 3 times instead of 150 seen 10 times (the seed draws more of them), and
  ``diverse-long`` the same 500 phantoms per class seen 10 times (paired with ``diverse``).

Each run: 150 phantoms per class (seed S; 500 for the ``diverse`` recipes), plain Inception-v4
at 147 px from scratch (seed S), evaluated on all 307 real scans with patient-bootstrap
intervals. One seed moves the number by several points, so each configuration wants more
than one.

``python -m benchmarks.phantom_zero_shot [--runs NAME,...] [--seeds 11,12]``: resumable (a
finished run's ``result.json`` is reused); the results file keeps the runs it has that this
call does not run. With two seeds or more, each configuration's seeds are also read as one
model, a seed ensemble. Each run's reading is also read with its calls balanced to an equal
class mix (:func:`balanced_cv`) and split by the scans' stored width (:func:`accuracy_by_width`).
Writes ``results/phantom_zero_shot.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.attention_study import Setup, _pretrain
from benchmarks.common import REAL_DATA, RESULTS, machine, write_results
from benchmarks.real_scans import (
    PAPER_EPOCHS,
    adapted_reading,
    as_reading,
    cpu_name,
    cross_validated,
    fold_manifest,
    oct2017_folds,
    oct2017_scans,
    paired,
    pct_ci,
    plan,
    points_p,
    pooled,
)
from octattn.data.phantom import generate_phantom
from octattn.data.phantom_anatomy import generate_lesion_sized_phantom
from octattn.data.phantom_style import default_style
from octattn.data.synth import PhantomGenerator, write_phantom_tree
from octattn.evaluation.evaluate import evaluate_model
from octattn.io import atomic_write_text

ANATOMIES: dict[str, PhantomGenerator] = {"shipped": generate_phantom, "lesion-sized": generate_lesion_sized_phantom}

SIZE, PER_CLASS = 147, 150
"""Every run's image size and phantoms per class (part d's)."""

PART_D = plan(False, SIZE)
"""The real-scan benchmark's full plan at this size: ``onecycle`` is its phantom pretraining."""

RECIPES: dict[str, tuple[Setup, list[str]]] = {
    "cosine": (Setup(SIZE, PER_CLASS, 5, 0, 0, 1, 32), []),
    "onecycle": (PART_D.pretrain, list(PART_D.pretrain_recipe)),
    "randomised": (PART_D.pretrain, [*PART_D.pretrain_recipe, "randomise=0.5"]),
    "randomised-strong": (PART_D.pretrain, [*PART_D.pretrain_recipe, "randomise=1"]),
    # The same 5,400 training images as onecycle, drawn as 500 phantoms per class seen 3
    # times instead of 150 seen 10 times: is it the phantoms' number that limits the model?
    "diverse": (replace(PART_D.lesion_pretrain, pretrain_epochs=3), list(PART_D.pretrain_recipe)),
    # diverse's phantoms for onecycle's 10 epochs: 3.3 times the training images (the
    # benchmark's part d trains its lesion-sized backbone so)
    "diverse-long": (PART_D.lesion_pretrain, list(PART_D.pretrain_recipe)),
}

RUNS = {f"{a}/{r}": (a, r) for a in ANATOMIES for r in RECIPES}
"""Every (anatomy, recipe) pair, named ``ANATOMY/RECIPE``."""

BASELINES = {
    "randomised": "onecycle",
    "randomised-strong": "onecycle",
    "diverse": "onecycle",
    "diverse-long": "diverse",
}
"""Recipe -> the recipe it changes one thing of: a run is paired with that recipe's run of the
same anatomy and seed (the same phantoms, or for ``diverse`` more of them from the same seed),
scan by scan on the 307 real scans."""
PAIRED = "vs_baseline"
"""The result's key for that pairing."""


def run_folder(work: Path, name: str, seed: int) -> Path:
    """Where one configuration's run with one seed lives."""
    anatomy, recipe = RUNS[name]
    return work / f"{anatomy}-{recipe}-s{seed}"


def one_run(work: Path, name: str, seed: int) -> dict[str, Any]:
    """Train (unless finished) and score one configuration with one seed."""
    anatomy, recipe = RUNS[name]
    folder = run_folder(work, name, seed)
    result_file = folder / "result.json"
    if result_file.exists():
        result = dict(json.loads(result_file.read_text()))
        if ADAPTED not in result:  # a run finished before the AdaBN reading was added
            result[ADAPTED] = adapted_cv(folder)
            atomic_write_text(result_file, json.dumps(result))
        return result
    setup, overrides = RECIPES[recipe]
    phantoms = folder / "phantoms"
    if not (phantoms / "phantoms.json").exists():
        write_phantom_tree(
            phantoms,
            {"train": setup.pretrain_per_class},
            seed=seed,
            overwrite=True,
            style=default_style(),
            generator=ANATOMIES[anatomy],
        )
    _pretrain(folder, phantoms, setup, [*overrides, f"seed={seed}"])
    report = evaluate_model(folder / "pretrain", all_scans_manifest(folder), "test", resamples=1000).report
    result = {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "accuracy_ci": [report["ci"]["accuracy"]["low"], report["ci"]["accuracy"]["high"]],
        "macro_f1": report["f1"],
        "phantoms_per_class": setup.pretrain_per_class,
        "epochs": setup.pretrain_epochs,
        "confusion_matrix": report["confusion_matrix"],
        "machine": machine(),  # runs join the file one at a time, perhaps on other machines
        ADAPTED: adapted_cv(folder),
    }
    atomic_write_text(result_file, json.dumps(result))
    return result


ADAPTED = "adapted"
"""The result's key for the AdaBN reading (:func:`adapted_cv`)."""


def all_scans_manifest(folder: Path) -> Path:
    """A manifest in ``folder`` with all 307 real scans as its test split."""
    rows = oct2017_scans()
    return fold_manifest(rows, set(range(len(rows))), folder / "oct2017-all.csv")


def scan_reading(folder: Path) -> dict[str, Any]:
    """The phantom-only model of a run folder on all 307 real scans, scan by scan (kept in
    ``reading.json`` beside the run: it is read again for every pairing)."""
    cached = folder / "reading.json"
    if cached.is_file():
        return dict(json.loads(cached.read_text()))
    reading = as_reading(evaluate_model(folder / "pretrain", all_scans_manifest(folder), "test", resamples=10))
    atomic_write_text(cached, json.dumps(reading))
    return reading


@cache
def scan_width(path: str) -> int:
    """A scan's width in pixels as stored (the header only is read)."""
    with Image.open(path) as image:
        return int(image.size[0])


def accuracy_by_width(reading: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A reading's accuracy over the scans of each stored width. The direct resize to a square
    squashes a 768- or 1536-pixel-wide scan 1.5 or 3 times more than a 512-pixel one, and every
    phantom is as wide as the narrowest: is that where a phantom-only model fails?"""
    widths = np.array([scan_width(path) for path in reading["paths"]])
    right = np.argmax(np.asarray(reading["probs"]), axis=1) == np.asarray(reading["labels"])
    return {
        str(width): {"n": int((widths == width).sum()), "accuracy": float(right[widths == width].mean())}
        for width in sorted(set(widths.tolist()))
    }


def widths_table(by_width: dict[str, dict[str, dict[str, dict[str, float]]]]) -> list[str]:
    """Each configuration's accuracy on the scans of each width, averaged over its seeds."""
    if not by_width:
        return []
    widths = sorted({int(w) for seeds in by_width.values() for run in seeds.values() for w in run})
    rows = []
    for name in (n for n in RUNS if n in by_width):
        runs = by_width[name].values()
        cells = []
        for width in map(str, widths):
            accs = [100 * run[width]["accuracy"] for run in runs if width in run]
            counts = {run[width]["n"] for run in runs if width in run}
            cells.append(f"{statistics.mean(accs):.1f}% ({'/'.join(map(str, sorted(counts)))})" if accs else "-")
        rows.append(f"| {name} | {len(runs)} | {' | '.join(cells)} |")
    return [
        "",
        "By the scans' stored width (every phantom is 256 px wide, like the 512-px scans; direct resizing squashes "
        "wider scans more), accuracy averaged over the seeds read here (scans):",
        "",
        f"| anatomy / recipe | seeds | {' | '.join(f'{w} px wide' for w in widths)} |",
        f"| --- | ---: | {' | '.join('---:' for _ in widths)} |",
        *rows,
    ]


def baseline_of(work: Path, name: str, seeds: list[int]) -> str | None:
    """The configuration that ``name``'s :data:`BASELINES` recipe makes of the same anatomy,
    where it has one and every one of ``seeds`` was run here; else None."""
    anatomy, recipe = RUNS[name]
    if recipe not in BASELINES:
        return None
    base = f"{anatomy}/{BASELINES[recipe]}"
    made = all((run_folder(work, base, seed) / "pretrain" / "model" / "config.json").is_file() for seed in seeds)
    return base if made else None


def versus_baseline(work: Path, name: str, seed: int) -> dict[str, Any] | None:
    """A run against its :data:`BASELINES` run (same anatomy, seed and phantoms), paired on
    the real scans (this - baseline); None where the recipe has no baseline or that run has
    not been made here."""
    base = baseline_of(work, name, [seed])
    if base is None:
        return None
    before, after = (pooled([scan_reading(run_folder(work, n, seed))], 100) for n in (base, name))
    return {"baseline": RUNS[base][1], **paired(before, after)}


def averaged_reading(work: Path, name: str, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The seeds' scan-by-scan readings and their average (calibrated probabilities averaged,
    as ``octattn ensemble`` averages members)."""
    readings = [scan_reading(run_folder(work, name, seed)) for seed in seeds]
    first = readings[0]
    if any(r["paths"] != first["paths"] for r in readings):
        raise ValueError(f"{name}: the seeds were read on different scans")
    return {**first, "probs": np.mean([np.asarray(r["probs"]) for r in readings], axis=0).tolist()}, readings


def seed_ensemble(work: Path, name: str, seeds: list[int]) -> dict[str, Any]:
    """One configuration's seeds read as one phantom-only model on the 307 real scans
    (:func:`averaged_reading`), with patient-bootstrap intervals, paired with each seed alone
    (ensemble - seed) and, where its :data:`BASELINES` recipe ran the same seeds here, with that
    recipe's ensemble (this - baseline)."""
    averaged, readings = averaged_reading(work, name, seeds)
    together = pooled([averaged])
    result = {
        "seeds": seeds,
        **{k: v for k, v in together.items() if not k.startswith("_")},
        "vs_seeds": {str(seed): paired(pooled([r], 100), together) for seed, r in zip(seeds, readings, strict=True)},
    }
    base = baseline_of(work, name, seeds)
    if base is not None:
        result[PAIRED] = {
            "baseline": RUNS[base][1],
            **paired(pooled([averaged_reading(work, base, seeds)[0]], 100), together),
        }
    return result


def ensemble_key(name: str, seeds: list[int]) -> str:
    """A seed ensemble's key: its configuration and its seeds, so that a second set of seeds
    (an out-of-sample check of a recipe chosen on the first) sits beside the first set, not over it."""
    return f"{name.split(ENSEMBLE_SEEDS)[0]}{ENSEMBLE_SEEDS}{','.join(map(str, seeds))}"


ENSEMBLE_SEEDS = "@"
"""Between a seed ensemble's configuration and its seeds in its key (:func:`ensemble_key`)."""


def adapted_cv(folder: Path, folds: int = 5) -> dict[str, Any]:
    """The phantom model with its BatchNorm statistics re-estimated on unlabeled real scans
    (``octattn adapt``, AdaBN), cross-fitted: for each of ``folds`` patient-grouped folds of the
    307 scans (the real-scan benchmark's), adapted on the other folds' scans and scored on the
    fold; pooled, and paired with the unadapted model on the same scans. No label is used to
    adapt, but real images are: a reading beside the phantom-only one, not in its place."""
    rows = oct2017_scans()
    splits = oct2017_folds(rows, folds)
    folds_to_read = [
        (
            fold_manifest(rows, set(test.tolist()), folder / f"oct2017-fold{k}.csv"),
            [Path(rows[i]["path"]) for i in rest],
            folder / f"adapted-fold{k}",
        )
        for k, (rest, test) in enumerate(splits)
    ]
    return adapted_reading(folder / "pretrain" / "model", folds_to_read)


FINE_TUNE_START = "phantom_gentle_e20"
"""How :func:`fine_tuned` trains on real scans: part a's start of that name of the real-scan
benchmark (its layers at a tenth of the head's rate, for the paper's 20 epochs), plain
Inception-v4, fine-tuning seed 0."""
FINE_TUNED = "fine_tuned"
"""The result's key for that reading."""


def fine_tuned(folder: Path) -> dict[str, Any]:
    """A run's phantom backbone fine-tuned on real scans: the real-scan benchmark's part a
    (:func:`benchmarks.real_scans.cross_validated`: its patient-grouped 5 folds of the 307
    scans, its recipe and run names, in the run's folder; finished folds are reused), pooled
    out of fold. Does a backbone that reads real scans better with no real training also
    teach real training more?"""
    part = cross_validated(
        folder,
        PART_D,
        [("plain", FINE_TUNE_START)],
        {FINE_TUNE_START: folder / "backbone.safetensors"},
        (),
        (0,),
        frozenset({FINE_TUNE_START}),
    )
    return dict(part["runs"][f"plain-{FINE_TUNE_START}"])


VS_SCRATCH = "vs_scratch"
"""The fine-tuned reading's key for its pairing with :func:`scratch_reading`."""


def scratch_reading(work: Path) -> dict[str, Any]:
    """Part a's plain Inception-v4 from scratch (its plan's epochs, seed 0) on the same folds, in
    ``WORK/scratch``, trained once: every fine-tuned reading is paired with it, as part a pairs
    its ``phantom_gentle_e20`` start with its run from scratch."""
    folder = work / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return dict(cross_validated(folder, PART_D, [("plain", "scratch")], {}, (), (0,))["runs"]["plain-scratch"])


def fine_tuned_made(folder: Path) -> bool:
    """Whether every fold of :func:`fine_tuned` finished in ``folder`` (reading it trains nothing)."""
    runs = [folder / "runs" / f"oct2017-plain-{FINE_TUNE_START}-fold{k}" for k in range(PART_D.folds)]
    return all((run / "result.json").is_file() for run in runs)


def fine_tuned_result(work: Path, name: str, seed: int) -> dict[str, Any]:
    """:func:`fine_tuned`'s public reading of one run, with the CPU, paired (this - other) with
    :func:`scratch_reading` and with its :data:`BASELINES` run's fine-tuned reading where that
    one finished here."""
    reading = fine_tuned(run_folder(work, name, seed))
    result: dict[str, Any] = {k: v for k, v in reading.items() if not k.startswith("_")}
    result["machine"] = machine()
    result[VS_SCRATCH] = paired(scratch_reading(work), reading)
    base = baseline_of(work, name, [seed])
    if base is not None and fine_tuned_made(run_folder(work, base, seed)):
        result[PAIRED] = {"baseline": RUNS[base][1], **paired(fine_tuned(run_folder(work, base, seed)), reading)}
    return result


def balance_weights(probs: np.ndarray, prior: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Class weights ``w`` such that the probabilities reweighted by them (``p * w``, each row
    renormalised) average to ``prior`` over these scans: the re-estimation step of Saerens et
    al. (2002) with the prior held fixed, assumed rather than learnt. No label is used."""
    weights = np.ones(probs.shape[1])
    for _ in range(iterations):
        reweighted = probs * weights
        reweighted /= reweighted.sum(axis=1, keepdims=True)
        weights *= prior / reweighted.mean(axis=0)
    return weights


def balanced_cv(reading: dict[str, Any], folds: int = 5) -> dict[str, Any]:
    """The reading's calls balanced to an equal class mix, cross-fitted: for each of the
    benchmark's patient-grouped folds, :func:`balance_weights` found on the other folds' scans
    and applied to the fold's; pooled, and paired with the reading as it is (balanced - not).

    A phantom-only model that gets one or two classes right and none of another may rank the
    scans well and misplace its thresholds on real data: this says how much of its error that
    is. It uses no label, but real images and the assumption that the classes come about
    equally often (the 307 scans: 71-83 a class): a reading beside the phantom-only one, like
    the AdaBN reading."""
    rows = oct2017_scans()
    if [str(Path(r["path"]).resolve()) for r in rows] != [str(Path(p).resolve()) for p in reading["paths"]]:
        raise ValueError("the reading is not of the 307 scans in the benchmark's order")
    probs = np.clip(np.asarray(reading["probs"], dtype=np.float64), 1e-12, None)  # a class a model rules out
    prior = np.full(probs.shape[1], 1 / probs.shape[1])
    balanced = probs.copy()
    for rest, test in oct2017_folds(rows, folds):
        balanced[test] = probs[test] * balance_weights(probs[rest], prior)
    balanced /= balanced.sum(axis=1, keepdims=True)
    after, before = pooled([{**reading, "probs": balanced.tolist()}]), pooled([reading])
    return {
        **{k: v for k, v in after.items() if not k.startswith("_")},
        "vs_unbalanced": paired(before, after),
    }


def balanced_lines(balanced: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Each run's balanced reading (:func:`balanced_cv`), and each configuration's mean."""
    if not balanced:
        return []
    rows = []
    for name in (n for n in RUNS if n in balanced):
        seeds = balanced[name]
        for seed, run in sorted(seeds.items(), key=lambda kv: int(kv[0])):
            gain = run["vs_unbalanced"]
            low, high = gain["interval_points"]
            rows.append(
                f"| {name} | {seed} | {pct_ci(run['accuracy'], run['accuracy_ci'])} | {run['macro_f1']:.3f} "
                f"| {gain['difference_points']:+.1f} ({low:+.1f} to {high:+.1f}; p {gain['p_value']:.2g}) |"
            )
        if len(seeds) > 1:
            mean = statistics.mean(100 * run["accuracy"] for run in seeds.values())
            rows.append(f"| {name} | mean of {len(seeds)} | {mean:.1f}% | | |")
    return [
        "",
        "Calls balanced to an equal class mix on the real scans (no label; weights found on the other four folds' "
        "scans, cross-fitted), paired with the reading as it is:",
        "",
        "| anatomy / recipe | seed | balanced accuracy (95% CI) | macro-F1 | balanced - not (points; p) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def table(results: dict[str, Any]) -> str:
    """The runs, one row per seed, and each configuration's mean over its seeds."""
    lines = [
        "| anatomy / recipe | seed | real accuracy (95% CI) | real macro-F1 | CNV, DME, DRUSEN, NORMAL right "
        "| adapted to real scans (AdaBN, cross-fitted) | adapted - not (points; p) "
        "| this - its baseline, same phantoms (points; p) | CPU |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    means = []
    for name in RUNS:
        seeds = results["runs"].get(name, {})
        for seed, run in sorted(seeds.items(), key=lambda kv: int(kv[0])):
            right = ", ".join(str(row[i]) for i, row in enumerate(run["confusion_matrix"]))
            lines.append(
                f"| {name} | {seed} | {pct_ci(run['accuracy'], run['accuracy_ci'])} | {run['macro_f1']:.3f} | {right} "
                f"| {_adapted_cells(run)} | {_baseline_cell(run)} | {cpu_name(run['machine'])} |"
            )
        if seeds:
            accs = [100 * r["accuracy"] for r in seeds.values()]
            adapted = [100 * r[ADAPTED]["accuracy"] for r in seeds.values() if ADAPTED in r]
            adapted_mean = f"{statistics.mean(adapted):.1f}% ({len(adapted)})" if adapted else "-"
            means.append(
                f"| {name} | {len(accs)} | {statistics.mean(accs):.1f}% | {min(accs):.1f}-{max(accs):.1f}% "
                f"| {adapted_mean} |"
            )
    return "\n".join(
        [
            *lines,
            "",
            "| anatomy / recipe | seeds | mean accuracy | range | adapted (AdaBN): mean (seeds) |",
            "| --- | ---: | ---: | ---: | ---: |",
            *means,
            *_ensemble_lines(results.get("ensembles", {})),
            *balanced_lines(results.get("balanced", {})),
            *widths_table(results.get("by_width", {})),
            *fine_tuned_lines(results.get(FINE_TUNED, {}), results["runs"]),
        ]
    )


def fine_tuned_lines(tuned: dict[str, dict[str, Any]], runs: dict[str, Any]) -> list[str]:
    """The fine-tuned readings beside each backbone's own (nothing where none was made)."""
    if not tuned:
        return []
    rows = []
    for name in (n for n in RUNS if n in tuned):
        for seed, t in sorted(tuned[name].items(), key=lambda kv: int(kv[0])):
            alone = runs.get(name, {}).get(seed)
            rows.append(
                f"| {name} | {seed} | {pct_ci(alone['accuracy'], alone['accuracy_ci']) if alone else '-'} "
                f"| {pct_ci(t['accuracy'], t['accuracy_ci'])} | {t['macro_f1']:.3f} | {points_p(t[VS_SCRATCH])} "
                f"| {_baseline_cell(t)} | {cpu_name(t['machine'])} |"
            )
    return [
        "",
        f"Fine-tuned on the real scans (the real-scan benchmark's part a: plain Inception-v4 from the run's backbone, "
        f"its layers at a tenth of the head's rate, {PART_D.folds} patient-grouped folds, the paper's {PAPER_EPOCHS} "
        f"epochs, fine-tuning seed 0; pooled out of fold):",
        "",
        "| anatomy / recipe | seed | phantoms only (95% CI) | fine-tuned: accuracy (95% CI) | macro-F1 "
        f"| this - plain from scratch, {PART_D.epochs} epochs (points; p) | this - its baseline fine-tuned (points; p) "
        "| CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
    ]


def _ensemble_lines(ensembles: dict[str, Any]) -> list[str]:
    """The seed-ensemble table (nothing where no configuration was read as one)."""
    if not ensembles:
        return []
    rows = []
    for key, ens in ensembles.items():
        name = key.split(ENSEMBLE_SEEDS)[0]
        gains = "; ".join(
            f"s{seed} {g['difference_points']:+.1f} (p {g['p_value']:.2g})" for seed, g in ens["vs_seeds"].items()
        )
        rows.append(
            f"| {name} | {', '.join(map(str, ens['seeds']))} | {pct_ci(ens['accuracy'], ens['accuracy_ci'])} "
            f"| {ens['macro_f1']:.3f} | {gains} | {_baseline_cell(ens)} |"
        )
    return [
        "",
        "Seed ensembles: a configuration's seeds as one phantom-only model (their probabilities averaged scan by "
        "scan; as many networks per scan as seeds):",
        "",
        "| anatomy / recipe | seeds | real accuracy (95% CI) | real macro-F1 | ensemble - seed alone (points; p) "
        "| this - its baseline's ensemble, same phantoms (points; p) |",
        "| --- | --- | ---: | ---: | --- | ---: |",
        *rows,
    ]


def _baseline_cell(run: dict[str, Any]) -> str:
    """The pairing with the baseline recipe's run (a dash where there is none)."""
    gain = run.get(PAIRED)
    if gain is None:
        return "-"
    return f"vs {gain['baseline']}: {points_p(gain)}"


def _adapted_cells(run: dict[str, Any]) -> str:
    """The AdaBN reading's two cells (dashes for a run measured before it existed)."""
    adapted = run.get(ADAPTED)
    if adapted is None:
        return "- | -"
    return (
        f"{pct_ci(adapted['accuracy'], adapted['accuracy_ci'])}, macro-F1 {adapted['macro_f1']:.3f} "
        f"| {points_p(adapted['vs_unadapted'])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--seeds", default="11,12", help="comma-separated seeds (phantoms and training)")
    parser.add_argument("--work", default="runs/phantom-zero-shot")
    parser.add_argument(
        "--fine-tune",
        default="",
        metavar="SEEDS",
        help="comma-separated seeds (of --seeds) whose runs' backbones are also fine-tuned on the real scans (the "
        "real-scan benchmark's part a: 5 folds, 20 epochs, about 17 minutes a run on a 2-core CPU), paired with "
        "plain Inception-v4 from scratch on the same folds (trained once, about 10 minutes)",
    )
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    names = args.runs.split(",")
    if not set(names) <= set(RUNS):
        parser.error(f"--runs: choose from {', '.join(RUNS)}")
    committed = RESULTS / "phantom_zero_shot.json"
    kept = json.loads(committed.read_text()) if committed.is_file() else {}
    runs: dict[str, dict[str, Any]] = kept.get("runs", {})
    ensembles = {ensemble_key(name, ens["seeds"]): ens for name, ens in kept.get("ensembles", {}).items()}
    by_width: dict[str, dict[str, Any]] = kept.get("by_width", {})
    balanced: dict[str, dict[str, Any]] = kept.get("balanced", {})
    tuned: dict[str, dict[str, Any]] = kept.get(FINE_TUNED, {})
    seeds = [int(s) for s in args.seeds.split(",")]
    fine_tune = {int(s) for s in args.fine_tune.split(",") if s}
    if not fine_tune <= set(seeds):
        parser.error("--fine-tune: seeds of --seeds only")
    work = Path(args.work)

    def write() -> None:
        results = {
            "size": SIZE,
            "per_class": PER_CLASS,
            "runs": runs,
            "ensembles": ensembles,
            "balanced": balanced,
            "by_width": by_width,
            FINE_TUNED: tuned,
        }
        write_results("phantom_zero_shot", results, table)

    for name in names:
        for seed in seeds:
            result = one_run(work, name, seed)
            gain = versus_baseline(work, name, seed)
            if gain is not None:
                result = {**result, PAIRED: gain}
            runs.setdefault(name, {})[str(seed)] = result
            reading = scan_reading(run_folder(work, name, seed))
            by_width.setdefault(name, {})[str(seed)] = accuracy_by_width(reading)
            balanced.setdefault(name, {})[str(seed)] = balanced_cv(reading)
            if seed in fine_tune:
                tuned.setdefault(name, {})[str(seed)] = fine_tuned_result(work, name, seed)
            write()
        if len(seeds) > 1:
            ensembles[ensemble_key(name, seeds)] = seed_ensemble(work, name, seeds)
            write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
