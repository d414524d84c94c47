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

``--ensemble VARIANT [--seeds 0,1]`` reads one variant's seeds as the deployable model
``octattn ensemble`` makes of them (their calibrated probabilities averaged), each seed and
the ensemble as trained and with flip test-time augmentation (``--tta``), on validation and
test, with each class's F1 beside its number of training scans: where macro-F1 is lost. The
reading validation picks is named; test only reports it. Kept under the file's ``ensemble``
key with its own machine; the variants' tables are left as they are.

``--from-backbone GENERATOR [--variants VARIANT] [--models plain,attention,nomask] --seeds 0,1``
fine-tunes one variant (``24 epochs`` by default) from the real-scan benchmark's backbone of
those phantoms at a tenth of the head's rate, beside the same variant from scratch, paired
seed by seed; the other models, where named, are fine-tuned from it too and paired with plain
(the paper's question from that start). ``--from-backbone NAME --backbone-weights FILE``
fine-tunes from any backbone file instead (a phantom probe's ``backbone.safetensors``), named
NAME in run folders and tables. Each start is kept under its own ``from_backbone:NAME`` key
with its own machine, beside the others.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    FROM_BACKBONE,
    RESULTS,
    backbone_file_starts,
    backbone_weights_arg,
    machine,
    start_key,
    write_results,
)
from benchmarks.real_scans import (
    GENTLE,
    MODELS,
    PHANTOM_GENERATORS,
    as_reading,
    averaged,
    backbone_file,
    measured_phrase,
    octdl_clean_manifest,
    octdl_overrides,
    paired,
    pct_ci,
    phantom_backbone,
    plan,
    points_p,
    pooled,
    prior_corrected,
    run_once,
)
from octattn.evaluation.evaluate import evaluate_model
from octattn.evaluation.metrics import classification_report, headline_metrics
from octattn.inference.bundle import read_bundle_config, weights_digest
from octattn.io import atomic_write_text

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


@dataclass(frozen=True)
class Start:
    """A backbone a variant fine-tunes from: its name (a phantom generator's), its weights
    file, and the overrides that go with it (the transferred layers' rate)."""

    name: str
    weights: Path
    overrides: tuple[str, ...] = tuple(GENTLE)


def run_name(variant: str, seed: int, model: str = MODEL, start: str | None = None) -> str:
    """The run folder of one variant and seed (of ``model``: the probe's own, unless
    ``--from-backbone`` asks the paper's question; fine-tuned from the backbone ``start``
    names, or from scratch); part b's baseline is part b's own run."""
    suffix = RUN_SUFFIX.get(variant, "-" + variant.replace(" ", "-"))
    return f"octdl-{model}-s{seed}{suffix}" + (f"-from-{start}" if start else "")


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


def one_variant(
    work: Path, manifest: Path, variant: str, seed: int, start: Start | None = None, model: str = MODEL
) -> dict[str, Any]:
    """Train (or reuse) one variant's run and summarise it on validation and test, as it is
    and with the class-prior correction; with ``start``, fine-tuned from that backbone; with
    ``model``, of another of part b's three models."""
    overrides = [*octdl_overrides(plan(False, 147), model, seed), *VARIANTS[variant][0]]
    name = run_name(variant, seed, model, start.name if start else None)
    if start is not None:
        overrides += [f"weights={start.weights}", *start.overrides]
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


TTA_MARK = " + flip TTA"
"""Appended to a reading's name when the horizontally flipped scan is averaged in (``--tta``)."""


def reading(run: Path, manifest: Path, split: str, tta: bool) -> dict[str, Any]:
    """One finished run's calibrated probabilities on ``split`` (``as_reading``'s form), with
    or without flip TTA; kept in ``RUN/reading-SPLIT[-tta].json`` beside the digest of the
    weights it read, so a run trained again is read again."""
    cache = run / f"reading-{split}{'-tta' if tta else ''}.json"
    digest = weights_digest(run / "model")
    if cache.is_file():
        kept = json.loads(cache.read_text())
        if kept.get("weights") == digest:
            return kept
    fresh = {"weights": digest, **as_reading(evaluate_model(run, manifest, split, tta=tta, resamples=20))}
    atomic_write_text(cache, json.dumps(fresh))
    return fresh


def class_f1(one: dict[str, Any], classes: list[str]) -> dict[str, float]:
    """Each class's F1 of a reading (the terms macro-F1 averages)."""
    report = classification_report(np.asarray(one["labels"]), np.asarray(one["probs"]), classes, urgent=[])
    return {name: row["f1"] for name, row in report["per_class"].items()}


def class_counts(manifest: Path, split: str, classes: list[str]) -> dict[str, int]:
    """How many scans of each class ``split`` of the manifest holds."""
    with manifest.open(newline="") as handle:
        labels = [r["label"] for r in csv.DictReader(handle) if r["split"] == split]
    return {name: labels.count(name) for name in classes}


def seed_ensemble(work: Path, manifest: Path, variant: str, seeds: list[int], resamples: int = 1000) -> dict[str, Any]:
    """One variant's seeds (trained here unless finished) read one by one and as one model,
    each as trained and with flip TTA: validation macro-F1 (what picks a reading), test
    accuracy and macro-F1 with patient-bootstrap intervals, each class's test F1, and paired
    tests of the ensemble against each seed and of TTA against none (``resamples``: of each
    patient bootstrap).

    Raises:
        ValueError: fewer than two seeds (an ensemble of one is its seed).
    """
    if len(seeds) < 2:
        raise ValueError("--ensemble needs two seeds or more (--seeds 0,1)")
    runs = {f"seed {s}": work / "runs" / run_name(variant, s) for s in seeds}
    powers = {f"seed {s}": one_variant(work, manifest, variant, s)["prior_power"] for s in seeds}
    classes = list(read_bundle_config(runs[f"seed {seeds[0]}"] / "model").class_names)
    split_readings: dict[str, dict[str, dict[str, Any]]] = {"val": {}, "test": {}}
    for split, found in split_readings.items():
        for tta in (False, True):
            mark = TTA_MARK if tta else ""
            members = [reading(run, manifest, split, tta) for run in runs.values()]
            found.update({name + mark: one for name, one in zip(runs, members, strict=True)})
            found["ensemble" + mark] = averaged(members)
    tests = {name: pooled([one], resamples) for name, one in split_readings["test"].items()}
    val_f1 = {name: macro_f1(one) for name, one in split_readings["val"].items()}
    comparisons = {
        **{f"ensemble{m} vs {s}{m}": paired(tests[s + m], tests["ensemble" + m]) for s in runs for m in ("", TTA_MARK)},
        **{f"{n}{TTA_MARK} vs {n}": paired(tests[n], tests[n + TTA_MARK]) for n in [*runs, "ensemble"]},
    }
    return {
        "variant": variant,
        "overrides": VARIANTS[variant][0],
        "seeds": seeds,
        "prior_power": powers,
        "machine": machine(),
        "readings": {
            name: {"val_macro_f1": val_f1[name], **_summary(tests[name]), "class_f1": class_f1(one, classes)}
            for name, one in split_readings["test"].items()
        },
        "chosen_on_validation": max(val_f1, key=lambda name: val_f1[name]),
        "train_scans": class_counts(manifest, "train", classes),
        "test_scans": class_counts(manifest, "test", classes),
        "comparisons": comparisons,
    }


FINE_TUNED = "24 epochs"
"""The variant ``--from-backbone`` fine-tunes by default: the probe's best recipe from scratch."""

SPLITS = ("test", "val")
"""What an ensemble of :func:`from_backbone` reads: test reported, validation beside it."""

STARTS = ("scratch", "backbone")
"""The two starts :func:`from_backbone` pairs, in the order shown."""


PAPER_PAIRS = (("plain", "attention"), ("nomask", "attention"))
"""The paper's question from a backbone, as part b asks it: (A, B) pairs, B - A."""


PART_D_START = start_key("lesion-sized")
"""The key of part d's own lesion-sized backbone (the real-scan README reads each start's paper's question)."""


def from_backbone(
    work: Path,
    manifest: Path,
    variant: str,
    generator: str,
    seeds: list[int],
    resamples: int = 1000,
    models: tuple[str, ...] = (MODEL,),
    weights: Path | None = None,
) -> dict[str, Any]:
    """One variant's seeds from scratch and fine-tuned from the backbone of the real-scan
    benchmark's phantoms of ``generator`` (its layers at :data:`GENTLE`'s tenth of the rate),
    paired seed by seed on the same test scans, each as trained and with the class-prior
    correction; with two seeds or more, each start's seeds also read as one model (their
    calibrated probabilities averaged, validation macro-F1 beside test) and the two ensembles
    paired. The backbone is trained first where it is missing (part d's, the same folder).
    With ``weights``, that backbone file is the start instead, and ``generator`` only names it.

    ``models`` other than the probe's plain one are fine-tuned from the backbone too, and
    paired with it and with each other as :data:`PAPER_PAIRS` say (the paper's question asked
    from this start; from scratch, part b asks it).
    """
    backbone = weights if weights is not None else backbone_file(phantom_backbone(work, plan(False, 147), generator))
    start = Start(generator, backbone)
    runs: dict[str, Any] = {}
    others = [m for m in models if m != MODEL]
    # Each seed's fine-tuned plain run first, then its run from scratch, then each other model on
    # every seed: where time runs out, what is finished answers the most (finished runs are
    # reused by the next call, and a call with fewer models writes what they answer).
    tuned: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        tuned[seed] = {MODEL: one_variant(work, manifest, variant, seed, start)}
        scratch = one_variant(work, manifest, variant, seed)
        runs[str(seed)] = {
            "scratch": _public(scratch),
            "backbone": _public(tuned[seed][MODEL]),
            "paired": paired(scratch["_pooled"], tuned[seed][MODEL]["_pooled"]),
            "paired_corrected": paired(scratch["_corrected"], tuned[seed][MODEL]["_corrected"]),
        }
    for model in others:
        for seed in seeds:
            tuned[seed][model] = one_variant(work, manifest, variant, seed, start, model)
    if others:
        for seed in seeds:
            runs[str(seed)]["models"] = {m: _public(tuned[seed][m]) for m in others}
            runs[str(seed)]["paper_question"] = {
                f"{b} vs {a}": paired(tuned[seed][a]["_pooled"], tuned[seed][b]["_pooled"])
                for a, b in PAPER_PAIRS
                if a in tuned[seed] and b in tuned[seed]
            }
    found: dict[str, Any] = {
        "variant": variant,
        "generator": generator,
        **({"weights": str(weights)} if weights is not None else {}),
        "overrides": [*VARIANTS[variant][0], *start.overrides],
        "seeds": seeds,
        "machine": machine(),
        "runs": runs,
    }
    if len(seeds) >= 2:
        tests, readings = {}, {}
        for name, from_start in (("scratch", None), ("backbone", generator)):
            members = [work / "runs" / run_name(variant, seed, start=from_start) for seed in seeds]
            test, val = (averaged([reading(run, manifest, split, tta=False) for run in members]) for split in SPLITS)
            tests[name] = pooled([test], resamples)
            readings[name] = {"val_macro_f1": macro_f1(val), **_summary(tests[name])}
        found["ensembles"] = {**readings, "paired": paired(tests["scratch"], tests["backbone"])}
    return found


def start_phrase(found: dict[str, Any]) -> str:
    """What the tables call a ``--from-backbone`` start: a phantom generator's backbone, or a
    named backbone file (its path in the docs' table)."""
    return (
        f"the {found['generator']} backbone" if "weights" in found else f"the {found['generator']} phantoms' backbone"
    )


def from_backbone_table(found: dict[str, Any]) -> list[str]:
    """The docs' lines of ``--from-backbone``: each seed from each start, then the ensembles."""
    overrides = ", ".join(f"`{o}`" for o in found["overrides"])
    where = f" `{found['weights']}`" if "weights" in found else " of the real-scan benchmark"
    lines = [
        f"The {found['variant']} variant from scratch and fine-tuned from {start_phrase(found)}{where} "
        f"({overrides}; the backbone's layers at a tenth of the new head's "
        f"rate), paired seed by seed on the same test scans (measured {measured_phrase(found['machine'])}):",
        "",
        "| seed | start | val macro-F1 (epoch) | test accuracy (95% CI) | test macro-F1 (95% CI) "
        "| corrected (power): accuracy, macro-F1 | backbone vs scratch, accuracy points (McNemar p) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seed, pair in found["runs"].items():
        lines.append(_start_row(seed, "scratch", pair["scratch"], "-"))
        lines.append(_start_row(seed, f"backbone ({MODEL})", pair["backbone"], points_p(pair["paired"])))
        for model, r in pair.get("models", {}).items():
            lines.append(_start_row(seed, f"backbone ({model})", r, "-"))
    asked = {seed: pair["paper_question"] for seed, pair in found["runs"].items() if "paper_question" in pair}
    if asked:
        lines += ["", "The paper's question from this backbone (B vs A: B - A, paired on the same test scans):", ""]
        lines += ["| seed | B vs A | accuracy difference, points (95% CI; McNemar p) |", "| --- | --- | ---: |"]
        lines += [f"| {seed} | {pair} | {points_p(c)} |" for seed, pairs in asked.items() for pair, c in pairs.items()]
    if "ensembles" in found:
        seeds = ", ".join(str(s) for s in found["seeds"])
        ensembles = found["ensembles"]
        lines += ["", f"Seeds {seeds} of each start read as one model (calibrated probabilities averaged):", ""]
        lines += ["| start | val macro-F1 | test accuracy (95% CI) | test macro-F1 (95% CI) | vs scratch |"]
        lines += ["| --- | ---: | ---: | ---: | ---: |"]
        for name in STARTS:
            r = ensembles[name]
            versus = "-" if name == "scratch" else points_p(ensembles["paired"])
            lines.append(
                f"| {name} | {r['val_macro_f1']:.3f} | {pct_ci(r['accuracy'], r['accuracy_ci'])} "
                f"| {pct_ci(r['macro_f1'], r['macro_f1_ci'])} | {versus} |"
            )
    return lines


def _start_row(seed: str, start: str, r: dict[str, Any], versus: str) -> str:
    """One run's row of :func:`from_backbone_table`."""
    corrected = r["corrected"]
    return (
        f"| {seed} | {start} | {r['val_macro_f1']:.3f} ({r['epoch']}) "
        f"| {pct_ci(r['test']['accuracy'], r['test']['accuracy_ci'])} "
        f"| {pct_ci(r['test']['macro_f1'], r['test']['macro_f1_ci'])} "
        f"| ({r['prior_power']:.2f}) {corrected['accuracy']:.1%}, {corrected['macro_f1']:.1%} | {versus} |"
    )


def macro_f1(one: dict[str, Any]) -> float:
    """A reading's macro-F1 (``as_reading``'s form: its labels and probabilities)."""
    return float(headline_metrics(np.asarray(one["labels"]), np.asarray(one["probs"]))["f1"])


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
    if "ensemble" in results:
        lines += ["", *ensemble_table(results["ensemble"])]
    for found in backbone_file_starts(results).values():
        lines += ["", *from_backbone_table(found)]
    return "\n".join(lines)


def ensemble_table(ensemble: dict[str, Any]) -> list[str]:
    """The docs' lines of ``--ensemble``: each reading, each class's F1, the paired tests."""
    readings = ensemble["readings"]
    seeds = ", ".join(str(s) for s in ensemble["seeds"])
    overrides = ", ".join(f"`{o}`" for o in ensemble["overrides"]) or "part b's recipe"
    lines = [
        f"The {ensemble['variant']} variant ({overrides}), seeds {seeds}, read one by one and as one model "
        "(their calibrated probabilities averaged, as `octattn ensemble` makes it), as trained and with flip "
        "test-time augmentation (`--tta`). Validation picks the reading; test reports it "
        f"(measured {measured_phrase(ensemble['machine'])}):",
        "",
        "| reading | val macro-F1 | test accuracy (95% CI) | test macro-F1 (95% CI) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in readings.items():
        chosen = " (chosen on validation)" if name == ensemble["chosen_on_validation"] else ""
        lines.append(
            f"| {name}{chosen} | {r['val_macro_f1']:.3f} | {pct_ci(r['accuracy'], r['accuracy_ci'])} "
            f"| {pct_ci(r['macro_f1'], r['macro_f1_ci'])} |"
        )
    shown = [*(f"seed {s}" for s in ensemble["seeds"]), "ensemble", "ensemble" + TTA_MARK]
    lines += [
        "",
        "Each class's test F1 (macro-F1 is their mean), beside the scans it had to learn from:",
        "",
        "| class | train scans | test scans | " + " | ".join(shown) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in shown) + " |",
    ]
    for name in ensemble["train_scans"]:
        f1s = " | ".join(f"{readings[n]['class_f1'][name]:.2f}" for n in shown)
        lines.append(f"| {name} | {ensemble['train_scans'][name]} | {ensemble['test_scans'][name]} | {f1s} |")
    lines += [
        "",
        "| paired on the test scans (B vs A) | accuracy difference, points (95% CI; McNemar p) |",
        "| --- | ---: |",
        *(f"| {pair} | {points_p(c)} |" for pair, c in ensemble["comparisons"].items()),
    ]
    return lines


def summary(results: dict[str, Any]) -> str:
    """The README's rows of the probe: the reading of ``--ensemble`` that validation picks, and
    each seed of ``--from-backbone`` fine-tuned (one network each) with their ensemble, against
    part b's target (a line saying so where neither has run)."""
    rows = []
    if (ensemble := results.get("ensemble")) is not None:
        chosen = ensemble["chosen_on_validation"]
        yardstick = f"plain Inception-v4, {ensemble['variant']} ({len(ensemble['seeds'])} seeds)"
        reading_name = f"{chosen} (chosen on validation)"
        rows.append(_summary_row(yardstick, reading_name, ensemble["readings"][chosen], ensemble["machine"]))
    for found in backbone_file_starts(results).values():
        yardstick = f"plain Inception-v4, {found['variant']} from {start_phrase(found)}"
        # each reading beside its pair from scratch (same seed, CPU and test scans): what the start adds
        read = [
            (f"seed {seed}, one network; accuracy vs scratch {points_p(pair['paired'])}", pair["backbone"]["test"])
            for seed, pair in found["runs"].items()
        ]
        if "ensembles" in found:
            ensembles = found["ensembles"]
            name = f"{len(found['seeds'])} seeds as one model; accuracy vs scratch's {points_p(ensembles['paired'])}"
            read.append((name, ensembles["backbone"]))
        rows += [_summary_row(yardstick, name, r, found["machine"]) for name, r in read]
    if not rows:
        return "The recipe probe has not read seeds as one model (`--ensemble`) or from a backbone (`--from-backbone`)."
    header = [
        "| yardstick | reading | accuracy (95% CI) | macro-F1 (95% CI) | target | measured on |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    return "\n".join(header + rows)


def _summary_row(yardstick: str, reading_name: str, r: dict[str, Any], measured: dict[str, Any]) -> str:
    return (
        f"| OCTDL, its clean test split: {yardstick} | {reading_name} | {pct_ci(r['accuracy'], r['accuracy_ci'])} "
        f"| {pct_ci(r['macro_f1'], r['macro_f1_ci'])} | macro-F1 0.70 | {measured['cpu']} {measured['date'][:10]} |"
    )


def own_machine_sections(results: dict[str, Any]) -> dict[str, Any]:
    """The results file's sections that ``--ensemble`` and ``--from-backbone`` write, each with
    its own machine; a variants' run keeps them as they are."""
    return {k: v for k, v in results.items() if k == "ensemble" or k.startswith(FROM_BACKBONE)}


def seed_machines(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where each seed of a results file was measured: its own entry, else the file's machine
    (a file from before seeds were measured on different machines)."""
    own = results.get("seed_machines", {})
    return {s: own.get(s, results.get("machine")) for s in results["seeds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--octdl", required=True, help="the whole OCTDL (its train/val/test folders)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--variants", help=f"comma-separated, of: {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--work", default="runs/real-scans", help="the real-scan benchmark's work folder")
    parser.add_argument(
        "--ensemble",
        metavar="VARIANT",
        help="read this variant's --seeds as one model, with and without flip TTA (the variants are not run)",
    )
    parser.add_argument(
        "--from-backbone",
        metavar="NAME",
        help=f"fine-tune one variant (--variants, default {FINE_TUNED!r}) from the real-scan benchmark's backbone of "
        f"these phantoms (of {', '.join(sorted(PHANTOM_GENERATORS))}), beside the same variant from scratch, every "
        "--seeds (the variants' tables are left as they are); with --backbone-weights, the name of that backbone",
    )
    parser.add_argument(
        "--backbone-weights",
        metavar="FILE",
        help="with --from-backbone NAME: fine-tune from this backbone file (safetensors, e.g. a phantom probe's "
        "backbone.safetensors) instead of a phantom generator's",
    )
    parser.add_argument(
        "--models",
        default=MODEL,
        help="with --from-backbone: the models fine-tuned from it (of plain, attention, nomask; plain is always "
        "run, the one paired with scratch): the paper's question asked from that start (default plain)",
    )
    args = parser.parse_args()
    octdl = Path(args.octdl)
    if not octdl.is_dir():
        parser.error(f"--octdl {octdl}: not a folder")
    variants = [v.strip() for v in (args.variants or ",".join(VARIANTS)).split(",")]
    if args.ensemble is not None:
        variants = [args.ensemble]
    elif args.from_backbone is not None:
        variants = variants if args.variants else [FINE_TUNED]
        if len(variants) != 1:
            parser.error("--from-backbone fine-tunes one variant: name it alone in --variants")
    weights = backbone_weights_arg(
        parser, "--from-backbone", args.from_backbone, args.backbone_weights, PHANTOM_GENERATORS
    )
    models = tuple(dict.fromkeys([MODEL, *(m.strip() for m in args.models.split(",") if m.strip())]))
    if not set(models) <= set(MODELS):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
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
        readings = own_machine_sections(old)  # other commands' readings
        write_results(
            "octdl_recipe", {**results, "seeds": ordered, "seed_machines": machines, **readings}, table, RESULTS
        )

    if args.ensemble is not None and len(seeds) < 2:
        parser.error("--ensemble needs two seeds or more (--seeds 0,1)")
    if args.ensemble is not None or args.from_backbone is not None:
        manifest = work / "octdl-clean.csv"
        if not manifest.exists():
            octdl_clean_manifest(octdl, manifest)
        if args.ensemble is not None:
            section = {"ensemble": seed_ensemble(work, manifest, args.ensemble, seeds)}
        else:
            found = from_backbone(
                work, manifest, variants[0], args.from_backbone, seeds, models=models, weights=weights
            )
            section = {start_key(args.from_backbone): found}
        kept_file = {k: v for k, v in old.items() if k != "machine"}
        write_results("octdl_recipe", {**kept_file, "seed_machines": kept_machines, **section}, table, RESULTS)
        return 0
    probe(work, octdl, seeds, variants, write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
