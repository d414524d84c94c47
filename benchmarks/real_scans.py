"""Real scans as the yardstick: the paper's question asked of real OCT, and what phantoms teach.

a. OCT2017, 307 real scans (``oct2017-mini`` and ``oct2017-extra``): patient-grouped k-fold
   cross-validation (patients and byte-identical files across both folders stay in one fold);
   the attention model, plain Inception-v4 and the attention modules without masks, each from
   scratch (two seeds) and from a phantom-pretrained backbone (seed 0); pooled out-of-fold predictions with
   patient-bootstrap intervals and paired McNemar tests between the models; each start run on
   two seeds or more also as one seed ensemble (its seeds' probabilities averaged; part e too).
b. OCTDL, whole (``--octdl PATH``, its train/val/test folders; audited first): the same three
   models, two seeds, from scratch and from the realistic phantoms' backbone at a tenth of the
   head's rate, macro-F1 as the headline, class-balanced sampling; each run read with the
   class-prior correction fitted on OCTDL's val scans (as ``prior_correction: true``) and as trained.
c. Across data sets: an OCT2017-trained model (from scratch) on OCTDL's NO and DME
   (``--class-map``), and an OCTDL-trained model on OCT2017's NORMAL and DME.
d. Phantoms that teach: each phantom-trained backbone's model (standard, realistic and
   lesion-sized phantoms) on the 307 real scans with no real training, and what phantom
   pretraining adds over scratch (paired, out of fold, in part a; ``--lesion-models`` adds a
   start from the lesion-sized backbone there).
e. Real OCT pretraining (``--octdl PATH``): part a's folds and recipe from the backbone of
   part b's plain OCTDL model (another device, other classes, no OCT2017 patient), paired
   with scratch: the nearest thing to ImageNet transfer that is reachable offline.

One command, resumable (each run keeps its result under ``--work``): ``python -m
benchmarks.real_scans [--quick] [--octdl PATH] [--size 147]``; writes
``results/real_scans.{json,md}``. ``--parts b,c --update`` reruns some parts and replaces only
those in the committed results (each part names the machine it ran on); ``--parts a --seeds 1
--update`` adds another seed's runs to the committed ones of the same recipe. ``--quick`` checks the
code path in a few minutes with tiny models; its numbers mean nothing and are written to its
work folder (``runs/real-scans/quick/real_scans.{json,md}``), never over the committed ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from benchmarks import run_pool
from benchmarks.attention_study import Setup, _pretrain
from benchmarks.common import (
    REAL_DATA,
    REDONE_WHOLE,
    RESULTS,
    backbone_file_starts,
    machine,
    refuse_other_settings,
    save_backbone,
    write_results,
)
from octattn.classes import CLASS_NAMES
from octattn.data.audit import linked_groups, read_record
from octattn.data.layout import IMAGE_SUFFIXES, Sample, find_dataset_root, parse_name
from octattn.data.phantom import DIFFICULTIES, generate_phantom
from octattn.data.phantom_anatomy import generate_lesion_sized_phantom
from octattn.data.phantom_style import default_style, learn_style, measure_scan, style_distance
from octattn.data.synth import PhantomGenerator, write_phantom_tree
from octattn.demo import config_path
from octattn.evaluation.calibration import fit_prior_power, prior_shift
from octattn.evaluation.evaluate import EvaluationResult, evaluate_model
from octattn.evaluation.metrics import headline_metrics
from octattn.evaluation.uncertainty import mcnemar_exact, patient_bootstrap, patient_bootstrap_mean
from octattn.inference.bundle import read_bundle_config
from octattn.io import atomic_write_text
from octattn.training.config import RUN_CONFIG, TrainConfig, load_config
from octattn.training.loop import train
from octattn.training.run_data import trained_class_counts

EXTRA = REAL_DATA.parent / "oct2017-extra"
OCTDL_MINI = REAL_DATA.parent / "octdl-mini"
MODELS = {
    "attention": ["model=inception_v4_attention"],
    "plain": ["model=inception_v4"],
    "nomask": ["model=inception_v4_attention", "attention_mask=false"],
}


REAL_SCHEDULE = "onecycle"
"""Every real-data run's schedule. OCTDL from scratch: the demo's cosine with 20 warm-up steps
learnt too slowly in 8 epochs (test macro-F1 0.18-0.27, validation accuracy falling as the
balanced sampler pulled the predictions off AMD); an independent probe on the same split
behaved the same in 4 epochs, and with one-cycle over 12 epochs octattn's six runs reached
0.40-0.46 (0.48-0.57 after the BatchNorm fix). OCT2017's folds followed (before: cosine, 10
warm-up steps, 4 epochs, near chance)."""


SMALL_DATA = ["batch_size=16", f"schedule={REAL_SCHEDULE}"]
"""About 220 training scans per fold: smaller batches give the few epochs more steps."""


PHANTOM_RECIPE = ("schedule=onecycle", "jitter=0.5")
"""How the phantom backbones train (with 10 epochs at batch 16): the one-cycle recipe of
``benchmarks/phantom_zero_shot.py``. The demo's cosine over 5 epochs at batch 32 stopped the
realistic backbone while it still learnt (85% of its own validation phantoms; one-cycle: 98%),
and from it part a's attention model trailed scratch by 28 points; from the one-cycle backbone
it is level with scratch (+0.0 points, seed 0, AMX Xeon)."""


@dataclass(frozen=True)
class Plan:
    """Sizes of the benchmark (the full one, or ``--quick``)."""

    size: int
    epochs: int
    folds: int
    seeds: tuple[int, ...]
    pretrain: Setup
    octdl_size: int
    octdl_epochs: int
    lesion_pretrain: Setup
    """The lesion-sized phantoms' pretraining: :attr:`pretrain` with 500 phantoms per class (the
    phantom-only probe's ``diverse-long``, its best phantom-only recipe)."""
    octdl_cap: int | None = None
    """At most this many scans of each OCTDL class in each split (``--quick``: the code path only)."""
    oct2017_cap: int | None = None
    """At most this many OCT2017 scans of each class (``--quick``: the code path only)."""
    pretrain_recipe: tuple[str, ...] = PHANTOM_RECIPE
    """Config overrides of the phantom pretraining, after the study's own."""
    val_every: int = 1
    """The real-scan runs validate after every this-many-th epoch and the last (``--val-every``;
    every committed run validated each epoch)."""


def plan(quick: bool, size: int, val_every: int = 1) -> Plan:
    """The benchmark's sizes. The full plan was cut for a 3-hour target on a 2-core CPU and
    still takes more than twice that there in one go (docs/real-scans.md, "Machines and time"): the
    attention model trains at about 15 images/s at 147 px in bf16 on the AMX Xeon, 21 on the
    AMD EPYC."""
    if quick:
        tiny = Setup(75, 3, 1, 0, 0, 1, 8)
        return Plan(75, 1, 2, (0,), tiny, 75, 1, tiny, octdl_cap=16, oct2017_cap=16, val_every=val_every)
    pretrain = Setup(size, 150, 10, 0, 0, 1, 16)
    lesion = replace(pretrain, pretrain_per_class=500)
    return Plan(size, 12, 5, (0, 1), pretrain, 128, 12, lesion, val_every=val_every)


@cache
def oct2017_scans() -> list[dict[str, str]]:
    """Every real OCT2017 scan with its class and its group (read once a process: the audit
    hashes every file, and each part and each probe run asks again; callers leave it as it is).

    Groups join what must not be split between folds (:func:`linked_groups`): the patient id
    from the name (shared between both folders), byte-identical files, and near-duplicates
    (the 70 ``renamed`` scans carry no patient id).
    """
    files = [p for p in sorted(REAL_DATA.rglob("*")) if p.suffix.lower() in (".jpeg", ".png")]
    files += sorted(EXTRA.rglob("*.jpeg")) if EXTRA.is_dir() else []
    records = [read_record(Sample(path, 0, split=path.parent.parent.name)) for path in files]
    groups = linked_groups(records)
    return [
        {"path": str(path), "label": path.parent.name.upper(), "group": group}
        for path, group in zip(files, groups, strict=True)
    ]


def oct2017_rows(p: Plan) -> list[dict[str, str]]:
    """The OCT2017 scans a plan reads: every one, or the first ``p.oct2017_cap`` of each class."""
    rows = oct2017_scans()
    if p.oct2017_cap is None:
        return rows
    seen: Counter[str] = Counter()
    kept = []
    for r in rows:
        seen[r["label"]] += 1
        if seen[r["label"]] <= p.oct2017_cap:
            kept.append(r)
    return kept


def oct2017_folds(rows: list[dict[str, str]], folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Part a's patient-grouped, class-stratified folds of ``rows`` as (rest, test) indices:
    the same for every seed and every reading, so that readings pair scan by scan."""
    labels = [CLASS_NAMES.index(r["label"]) for r in rows]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    return list(splitter.split(np.zeros(len(rows)), labels, [r["group"] for r in rows]))


def fold_manifest(rows: list[dict[str, str]], test: set[int], out: Path) -> Path:
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        for i, r in enumerate(rows):
            writer.writerow([r["path"], r["label"], r["group"], "test" if i in test else "train"])
    return out


def reused_or_trained(run: Path, config: TrainConfig, finished: Path | None = None) -> bool:
    """Train ``run`` under ``config`` unless it finished: ``finished`` (a file it leaves once
    scored) exists, or, where that is None, it trained every epoch (:func:`trained_through`).
    True when the finished run is reused. A finished run is reused only if it was made with
    the same settings: a recipe changed in the code since would otherwise be reported under the
    old run's numbers.

    Raises:
        SystemExit: ``run`` finished with other settings (:func:`refuse_other_settings`).
    """
    if not (finished.exists() if finished is not None else trained_through(run)):
        train(config, run, overwrite=True, progress=False, log=lambda _: None)
        return False
    refuse_other_settings(run, config)
    return True


def trained_through(run: Path) -> bool:
    """Whether ``run`` trained every epoch its settings ask for. Its bundle alone says nothing:
    the best epoch's is written while the run still trains, so a run cut short has one too."""
    metrics = run / "metrics.csv"
    if not ((run / "model").is_dir() and metrics.is_file() and (run / RUN_CONFIG).is_file()):
        return False
    with metrics.open(newline="") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    return bool(epochs) and epochs[-1] >= load_config(run / RUN_CONFIG).epochs


def run_once(name: str, work: Path, data: Path, overrides: list[str], split: str = "test") -> dict[str, Any]:
    """Train (unless done, :func:`reused_or_trained`) and evaluate one run; its result is kept
    in ``RUN/result.json``."""
    run = work / "runs" / name
    result_file = run / "result.json"
    config = load_config(config_path("demo"), [f"data={data}", *overrides])
    start = time.perf_counter()
    if reused_or_trained(run, config, result_file):
        return json.loads(result_file.read_text())
    evaluation = evaluate_model(run, data, split, resamples=200)
    report = evaluation.report
    result = {
        "accuracy": report["accuracy"],
        "macro_f1": report["f1"],
        # training and this evaluation (runs kept from before 2026-12-07 have no such key)
        "seconds": time.perf_counter() - start,
        **as_reading(evaluation),
    }
    atomic_write_text(result_file, json.dumps(result))
    return result


RUNNER = "benchmarks.real_scans:run_once"
""":func:`run_once` as a run pool calls it (by the module's name, also when this file runs as
``__main__``: the workers import it so)."""


def submit_run(name: str, work: Path, data: Path, overrides: list[str], split: str = "test") -> run_pool.Job:
    """:func:`run_once` offered to the processes sharing the runs (``--jobs``); its result comes
    from :func:`benchmarks.run_pool.settle`."""
    job = run_pool.Job(RUNNER, name, str(work.resolve()), str(data.resolve()), tuple(overrides), split)
    return run_pool.submit(job)


def as_reading(evaluation: EvaluationResult) -> dict[str, Any]:
    """What pooling and pairing read of one evaluation: each scan's path, patient group,
    label and calibrated probabilities."""
    return {
        "paths": [str(s.path) for s in evaluation.samples],
        "groups": [s.group for s in evaluation.samples],
        "labels": evaluation.labels.tolist(),
        "probs": evaluation.probs.tolist(),
    }


def pooled(results: list[dict[str, Any]], resamples: int = 1000) -> dict[str, Any]:
    """Out-of-fold predictions pooled over the folds, with patient-bootstrap intervals."""
    labels = np.concatenate([r["labels"] for r in results])
    probs = np.concatenate([np.asarray(r["probs"]) for r in results])
    groups = [g for r in results for g in r["groups"]]
    ci = patient_bootstrap(labels, probs, groups, resamples=resamples, metric_fn=headline_metrics)
    return {
        "n": len(labels),
        "accuracy": ci["accuracy"]["value"],
        "accuracy_ci": [ci["accuracy"]["low"], ci["accuracy"]["high"]],
        "macro_f1": ci["f1"]["value"],
        "macro_f1_ci": [ci["f1"]["low"], ci["f1"]["high"]],
        "_order": [p for r in results for p in r["paths"]],
        "_correct": (probs.argmax(1) == labels).tolist(),
        "_groups": groups,
    }


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two pooled runs on the same images (B - A): the accuracy difference in points, its
    paired patient-bootstrap interval (the same patients drawn for both), and McNemar's exact
    test."""
    index = {p: i for i, p in enumerate(b["_order"])}
    order = [index[p] for p in a["_order"]]
    correct_a = np.array(a["_correct"])
    correct_b = np.array(b["_correct"])[order]
    test = mcnemar_exact(correct_a, correct_b)
    difference = correct_b.astype(float) - correct_a  # per scan: +1, 0 or -1
    low, high = patient_bootstrap_mean(difference, a["_groups"])
    return {
        "difference_points": 100 * float(difference.mean()),
        "interval_points": [100 * low, 100 * high],
        **test,
    }


PHANTOM_GENERATORS: dict[str, tuple[PhantomGenerator, bool]] = {
    "standard": (generate_phantom, False),
    "realistic": (generate_phantom, True),
    "lesion-sized": (generate_lesion_sized_phantom, True),
}
"""The phantom backbones: name -> (how one phantom is drawn, whether it is rendered in the
style learnt from ``oct2017-mini/train``). ``lesion-sized`` draws lesions at the sizes real
scans show them (:mod:`octattn.data.phantom_anatomy`) and trains on :attr:`Plan.lesion_pretrain`;
part d reads all three, parts a and b start from ``realistic`` (and ``standard``)."""


def phantom_backbone(work: Path, p: Plan, generator: str) -> Path:
    """Plain Inception-v4 trained on phantoms of one of :data:`PHANTOM_GENERATORS`; returns its
    run folder (the backbone's weights are ``RUN/../backbone.safetensors``)."""
    folder = work / f"phantom-{generator}"
    phantoms = folder / "phantoms"
    draw, styled = PHANTOM_GENERATORS[generator]
    setup = p.lesion_pretrain if generator == "lesion-sized" else p.pretrain
    if not (phantoms / "phantoms.json").exists():
        style = default_style() if styled else None
        per_class = {"train": setup.pretrain_per_class}
        write_phantom_tree(phantoms, per_class, seed=11, overwrite=True, style=style, generator=draw)
    _pretrain(folder, phantoms, setup, p.pretrain_recipe)
    return folder / "pretrain"


def backbone_file(run: Path) -> Path:
    """The ``weights=`` file of a :func:`phantom_backbone` run (its classifier left behind)."""
    return run.parent / "backbone.safetensors"


PAIRS_A = (
    ("plain-scratch", "attention-scratch"),
    ("nomask-scratch", "attention-scratch"),
    ("plain-phantom", "attention-phantom"),
    ("nomask-phantom", "attention-phantom"),
    ("attention-scratch", "attention-phantom"),
    ("plain-scratch", "plain-phantom"),
    ("nomask-scratch", "nomask-phantom"),
    ("attention-scratch", "attention-phantom_standard"),
    ("attention-phantom_standard", "attention-phantom"),
    ("attention-scratch", "attention-phantom_gentle"),
    ("plain-scratch", "plain-phantom_gentle"),
    ("nomask-scratch", "nomask-phantom_gentle"),
    ("attention-phantom", "attention-phantom_gentle"),
    ("plain-phantom_gentle", "attention-phantom_gentle"),
    ("nomask-phantom_gentle", "attention-phantom_gentle"),
    *(
        (f"{m}-{a}", f"{m}-phantom_gentle_e20")
        for m in ("attention", "plain", "nomask")
        for a in ("scratch", "phantom_gentle")
    ),
    ("plain-phantom_gentle_e20", "attention-phantom_gentle_e20"),
    ("nomask-phantom_gentle_e20", "attention-phantom_gentle_e20"),
    *(
        (f"{m}-{a}", f"{m}-lesion_gentle_e20")
        for m in ("attention", "plain", "nomask")
        for a in ("scratch", "phantom_gentle_e20")
    ),
    ("plain-lesion_gentle_e20", "attention-lesion_gentle_e20"),
    ("nomask-lesion_gentle_e20", "attention-lesion_gentle_e20"),
)
"""Part a's paired comparisons (A, B), each made where both runs are in the plan."""

PAIRS_E = (
    ("attention-scratch", "attention-octdl"),
    ("plain-scratch", "plain-octdl"),
    ("plain-octdl", "attention-octdl"),
    ("nomask-octdl", "attention-octdl"),
    ("attention-scratch", "attention-octdl_gentle"),
    ("plain-scratch", "plain-octdl_gentle"),
    ("plain-octdl", "plain-octdl_gentle"),
    ("attention-octdl", "attention-octdl_gentle"),
    ("plain-octdl_gentle", "attention-octdl_gentle"),
    ("nomask-octdl_gentle", "attention-octdl_gentle"),
)
"""Part e's: what real pretraining adds to each model, whether the transferred layers keep
more at a lower rate, and the paper's question from each start."""

GENTLE = ["lr_backbone=0.0002"]
"""A pretrained backbone's layers at a tenth of the new layers' rate (0.0002 against 0.002):
the transfer-learning habit of the paper (backbone 0.001, new layers 0.1)."""

PAPER_EPOCHS = 20
"""The paper's fine-tuning length (its transfer recipe: 20 epochs)."""

START_OVERRIDES = {
    "octdl_gentle": GENTLE,
    "phantom_gentle": GENTLE,
    "phantom_gentle_e20": [*GENTLE, f"epochs={PAPER_EPOCHS}"],
    "lesion_gentle_e20": [*GENTLE, f"epochs={PAPER_EPOCHS}"],
}
"""Starts that differ from another in their recipe, not their weights: ``octdl_gentle`` and
``phantom_gentle`` are the OCTDL and the realistic phantoms' backbones at the :data:`GENTLE`
rate, where ``octdl`` and ``phantom`` train every layer at the rate a model from scratch needs;
``phantom_gentle_e20`` is ``phantom_gentle`` for the paper's 20 epochs instead of the plan's 12
(the one-cycle schedule stretched over them), and ``lesion_gentle_e20`` the same from the
lesion-sized phantoms' backbone. They come after the plan's settings, so they win."""


def seeded(name: str, seed: int) -> str:
    """A run's or a result's name for one seed: seed 0 unmarked (the names of runs made before
    seeds were kept), another seed as ``NAME-sSEED``."""
    return name if seed == 0 else f"{name}-s{seed}"


def oct2017_fold_manifests(work: Path, p: Plan) -> list[Path]:
    """Part a's folds of the scans ``p`` reads, one CSV manifest each in ``work`` (the fold's
    scans as its test split, the rest as its training folder)."""
    rows = oct2017_rows(p)
    splits = oct2017_folds(rows, p.folds)
    return [
        fold_manifest(rows, set(test.tolist()), work / f"oct2017-fold{k}.csv") for k, (_, test) in enumerate(splits)
    ]


def fold_overrides(p: Plan, model: str, seed: int, init_overrides: list[str]) -> list[str]:
    """Part a's recipe for one fold run of ``model`` (``init_overrides``: its start's)."""
    return [
        *MODELS[model],
        f"image_size={p.size}",
        f"epochs={p.epochs}",
        *SMALL_DATA,
        "val_fraction=0.15",
        f"seed={seed}",
        f"val_every={p.val_every}",
        *REDONE_WHOLE,
        "ood_detector=false",
        *init_overrides,
    ]


def cross_validated(
    work: Path,
    p: Plan,
    configs: list[tuple[str, str]],
    weights: dict[str, Path],
    pairs: tuple[tuple[str, str], ...],
    seeds: tuple[int, ...] = (0,),
    every_seed: frozenset[str] = frozenset({"scratch"}),
) -> dict[str, Any]:
    """Patient-grouped k-fold CV on the 307 OCT2017 scans of each (model, start) in
    ``configs``; a start named in ``weights`` loads that backbone file, ``scratch`` none.
    The starts in ``every_seed`` run once per seed in ``seeds`` (the paper's question, asked
    more than once), the others with seed 0 only (where it is among ``seeds``). The
    folds are the same for every seed (the paired tests need the same scans); the seed moves
    the weights, the data order and the validation carve-out. The folds, the recipe and the
    run names depend on nothing else, so a run shared by two parts (``attention-scratch``) is
    trained once."""
    rows = oct2017_rows(p)
    manifests = oct2017_fold_manifests(work, p)
    submitted: dict[str, list[run_pool.Job]] = {}
    for model, init in configs:
        for seed in seeds if init in every_seed else tuple(s for s in seeds if s == 0):
            init_overrides = [f"weights={weights[init]}", *START_OVERRIDES.get(init, [])] if init != "scratch" else []
            name = seeded(f"{model}-{init}", seed)
            overrides = fold_overrides(p, model, seed, init_overrides)
            submitted[name] = [
                submit_run(f"oct2017-{name}-fold{k}", work, manifest, overrides) for k, manifest in enumerate(manifests)
            ]
    # every run is offered before the first is awaited: with --jobs, the processes share them all
    runs = {name: pooled(run_pool.settle(jobs)) for name, jobs in submitted.items()}
    comparisons = {
        f"{seeded(b, seed)} vs {seeded(a, seed)}": paired(runs[seeded(a, seed)], runs[seeded(b, seed)])
        for seed in seeds
        for a, b in pairs
        if seeded(a, seed) in runs and seeded(b, seed) in runs
    }
    return {
        "scans": len(rows),
        "groups": len({r["group"] for r in rows}),
        "folds": p.folds,
        "epochs": p.epochs,
        "schedule": REAL_SCHEDULE,
        "size": p.size,
        "seeds": list(seeds),
        "runs": runs,
        "comparisons": comparisons,
    }


ENSEMBLE_MARK = "-ens"
"""How a seed ensemble's name ends: ``plain-phantom_gentle_e20-ens`` (:func:`seed_ensembles`)."""


def seed_ensembles(work: Path, part: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """Each run name of a cross-validated part that ran on two seeds or more, read as one model:
    its seeds' out-of-fold probabilities averaged scan by scan (a seed ensemble: as many
    networks to run per scan as seeds), pooled as one run is. Each ensemble is paired against
    each of its seeds (what averaging adds, on the same scans) and, through ``pairs``, against
    the other ensembles (the paper's question asked of ensembles).

    The members are read from their runs' ``result.json`` in ``work``; where any is missing (a
    seed joined from another machine's work folder) the answer is None, and the caller keeps
    the ensembles it has."""
    seeds_by_name: dict[str, list[int]] = {}
    for name in part["runs"]:
        base, seed = split_seed(name)
        seeds_by_name.setdefault(base, []).append(seed)
    seeds_by_name = {base: sorted(seeds) for base, seeds in seeds_by_name.items() if len(seeds) > 1}
    files = {
        seeded(base, seed): [
            work / "runs" / f"oct2017-{seeded(base, seed)}-fold{k}" / "result.json" for k in range(part["folds"])
        ]
        for base, seeds in seeds_by_name.items()
        for seed in seeds
    }
    if not all(f.is_file() for fold_files in files.values() for f in fold_files):
        return None
    folds = {name: [json.loads(f.read_text()) for f in fold_files] for name, fold_files in files.items()}
    members = {name: pooled(results) for name, results in folds.items()}
    ensembles = {
        base + ENSEMBLE_MARK: pooled(
            [averaged([folds[seeded(base, s)][k] for s in seeds]) for k in range(part["folds"])]
        )
        for base, seeds in seeds_by_name.items()
    }
    vs_seeds = {
        f"{base}{ENSEMBLE_MARK} vs {seeded(base, s)}": paired(members[seeded(base, s)], ensembles[base + ENSEMBLE_MARK])
        for base, seeds in seeds_by_name.items()
        for s in seeds
    }
    comparisons = {
        f"{b}{ENSEMBLE_MARK} vs {a}{ENSEMBLE_MARK}": paired(ensembles[a + ENSEMBLE_MARK], ensembles[b + ENSEMBLE_MARK])
        for a, b in pairs
        if a + ENSEMBLE_MARK in ensembles and b + ENSEMBLE_MARK in ensembles
    }
    return {
        "runs": {
            name: {"seeds": seeds_by_name[name.removesuffix(ENSEMBLE_MARK)], **_metrics(run)}
            for name, run in ensembles.items()
        },
        "vs_seeds": vs_seeds,
        "comparisons": comparisons,
    }


def averaged(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One fold's results of several seeds as one: their probabilities averaged scan by scan.

    Raises:
        ValueError: the seeds' runs were evaluated on other scans (another fold)."""
    first = results[0]
    if any(r["paths"] != first["paths"] for r in results):
        raise ValueError("a seed ensemble's members were evaluated on different scans")
    probs = np.mean([np.asarray(r["probs"]) for r in results], axis=0)
    return {**{k: first[k] for k in ("paths", "groups", "labels")}, "probs": probs.tolist()}


def oct2017_cv(
    work: Path,
    p: Plan,
    backbones: dict[str, Path],
    standard_pretraining: bool = True,
    phantom_models: tuple[str, ...] = tuple(MODELS),
    seeds: tuple[int, ...] = (0,),
    paper_epochs_models: tuple[str, ...] = (),
    lesion_models: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Part a: the three models from scratch, ``phantom_models`` from the realistic phantoms'
    backbone (at the rate from scratch, and at the :data:`GENTLE` rate), ``paper_epochs_models``
    from it at the gentle rate for the paper's 20 epochs (``phantom_gentle_e20``),
    ``lesion_models`` the same from the lesion-sized phantoms' backbone (``lesion_gentle_e20``),
    and the attention model from the standard phantoms' backbone (unless
    ``standard_pretraining`` is off). The models from scratch and the gentle phantom starts run
    on every seed, the others on seed 0."""
    configs = [
        (model, init)
        for model in MODELS
        for init in ("scratch", "phantom", "phantom_gentle", "phantom_gentle_e20")
        if init == "scratch"
        or (model in phantom_models and init != "phantom_gentle_e20")
        or (model in paper_epochs_models and init == "phantom_gentle_e20")
    ]
    configs += [(model, "lesion_gentle_e20") for model in MODELS if model in lesion_models]
    if standard_pretraining:  # did realism change what pretraining adds? (last: the first to cut)
        configs.append(("attention", "phantom_standard"))
    weights = {
        init: backbone_file(backbones[generator])
        for init, generator in (
            ("phantom", "realistic"),
            ("phantom_gentle", "realistic"),
            ("phantom_gentle_e20", "realistic"),
            ("lesion_gentle_e20", "lesion-sized"),
            ("phantom_standard", "standard"),
        )
        if generator in backbones
    }
    # the gentle phantom start on every seed: "phantom pretraining beats scratch" is a claim
    # about a difference, so it needs more than one seed (the full-rate starts stay seed 0's)
    return cross_validated(
        work,
        p,
        configs,
        weights,
        PAIRS_A,
        seeds,
        every_seed=frozenset({"scratch", "phantom_gentle", "phantom_gentle_e20", "lesion_gentle_e20"}),
    )


def octdl_overrides(p: Plan, model: str, seed: int) -> list[str]:
    """Part b's recipe for one model and seed (OCTDL's split: no validation carved out)."""
    return [
        *MODELS[model],
        f"image_size={p.octdl_size}",
        f"epochs={p.octdl_epochs}",
        "val_fraction=0",
        "balance=sampler",
        f"schedule={REAL_SCHEDULE}",
        f"seed={seed}",
        f"val_every={p.val_every}",
        *REDONE_WHOLE,
        "ood_detector=false",
    ]


def octdl_run(work: Path, p: Plan, octdl: Path, model: str, seed: int) -> Path:
    """One of part b's runs, trained here (the same run, the same name) where part b has not
    run yet, for the parts that build on it; returns its run folder."""
    manifest = work / "octdl-clean.csv"
    if not manifest.exists():
        octdl_clean_manifest(octdl, manifest, p.octdl_cap)
    name = f"octdl-{model}-s{seed}"
    run_once(name, work, manifest, octdl_overrides(p, model, seed))
    return work / "runs" / name


def octdl_backbone(work: Path, p: Plan, octdl: Path) -> Path:
    """Part b's plain model of seed 0 as a backbone file: 1,224 real OCTDL training scans,
    none of them OCT2017's."""
    run = octdl_run(work, p, octdl, "plain", 0)
    backbone = work / "octdl-backbone.safetensors"
    return backbone if backbone.exists() else save_backbone(run / "model", backbone)


def oct2017_transfer(work: Path, p: Plan, octdl: Path, seeds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Part e: real OCT pretraining. Part a's folds and recipe, the three models from the
    OCTDL-trained backbone (another device, other classes, other patients), once with every
    layer at the rate of a model from scratch and once with the transferred layers at a tenth
    of it (:data:`START_OVERRIDES`: the paper's transfer shape, its new layers fast), beside
    the attention and plain models from scratch (paired)."""
    configs = [
        ("attention", "scratch"),
        ("plain", "scratch"),
        *((model, start) for start in ("octdl", "octdl_gentle") for model in MODELS),
    ]
    backbone = octdl_backbone(work, p, octdl)
    weights = {"octdl": backbone, "octdl_gentle": backbone}
    # the paper's question is asked from the gentle start: on every seed, as from scratch
    return cross_validated(work, p, configs, weights, PAIRS_E, seeds, frozenset({"scratch", "octdl_gentle"}))


def zero_shot(work: Path, p: Plan, backbones: dict[str, Path]) -> dict[str, Any]:
    """Each phantom-trained model on the real scans, no real training: on all of them, and on
    those the realistic style was not learnt from (all but ``oct2017-mini/train``)."""
    rows = oct2017_rows(p)
    unseen = [r for r in rows if Path(r["path"]).parent.parent != REAL_DATA / "train"]
    manifests = {
        "all": fold_manifest(rows, set(range(len(rows))), work / "oct2017-all-test.csv"),
        "not_in_style": fold_manifest(unseen, set(range(len(unseen))), work / "oct2017-unseen-test.csv"),
    }
    out: dict[str, Any] = {}
    for generator, run in backbones.items():
        for name, manifest in manifests.items():
            report = evaluate_model(run, manifest, "test", resamples=1000).report
            out[f"{generator}_{name}"] = {
                "n": report["n"],
                "accuracy": report["accuracy"],
                "macro_f1": report["f1"],
                "accuracy_ci": [report["ci"]["accuracy"]["low"], report["ci"]["accuracy"]["high"]],
            }
    return out


def phantom_statistics(per_generator: int = 200) -> dict[str, Any]:
    """The measured statistics of real scans against each generator's phantoms.

    The real side is the OCT2017 scans the realistic style was not learnt from (all but
    ``oct2017-mini/train``); distances are :func:`style_distance`'s (smaller is closer).
    """
    rows = oct2017_scans()
    unseen = [Path(r["path"]) for r in rows if Path(r["path"]).parent.parent != REAL_DATA / "train"]
    real = learn_style(unseen, "OCT2017 scans not used to learn the style")
    out: dict[str, Any] = {
        "real": {
            "scans": real.scans,
            "speckle_contrast": real.speckle_contrast,
            "noise_floor": real.noise_floor,
            "wedge_rate": real.wedge_rate,
            "median_quantiles": np.median(np.asarray(real.quantiles), axis=0).round(1).tolist(),
        }
    }
    for generator, (draw, styled) in PHANTOM_GENERATORS.items():
        rng = np.random.default_rng(5)
        style = default_style() if styled else None
        # at write_phantom_tree's size and difficulty, as the backbones saw them
        stats = [
            measure_scan(draw(i % 4, rng, 256, 248, DIFFICULTIES["standard"], style).image)
            for i in range(per_generator)
        ]
        out[generator] = {
            "phantoms": per_generator,
            "speckle_contrast": float(np.median([s.speckle_contrast for s in stats])),
            "noise_floor": float(np.median([s.noise_floor for s in stats])),
            "wedge_rate": float(np.mean([s.wedge for s in stats])),
            "median_quantiles": np.median(np.asarray([s.quantiles for s in stats]), axis=0).round(1).tolist(),
            "distance_to_real": style_distance(real, stats),
        }
    return out


def across(work: Path, p: Plan, octdl: Path, octdl_model: Path | None) -> dict[str, Any]:
    """An OCT2017-trained attention model (all 307 scans, part a's recipe from scratch: a
    phantom backbone adds nothing in part a, an OCTDL backbone has seen the scans it would be
    tested on) on every OCTDL NO and DME scan, and an OCTDL-trained one (part b's, seed 0, or
    trained here on ``octdl``) on OCT2017's NORMAL and DME scans."""
    rows = oct2017_rows(p)
    common = [
        f"epochs={p.epochs}",
        f"val_every={p.val_every}",
        "val_fraction=0.15",
        "ood_detector=false",
        *REDONE_WHOLE,
    ]
    small = [*common, *SMALL_DATA]
    oct_run = work / "runs" / "across-oct2017-scratch"
    manifest = fold_manifest(rows, set(), work / "oct2017-all-train.csv")
    overrides = [f"data={manifest}", f"image_size={p.size}", *small]
    reused_or_trained(oct_run, load_config(config_path("demo"), overrides))
    if octdl_model is None:
        octdl_model = work / "runs" / "across-octdl"
        schedule = f"schedule={REAL_SCHEDULE}"
        overrides = [f"data={octdl}", f"image_size={p.octdl_size}", "balance=sampler", schedule, *common]
        reused_or_trained(octdl_model, load_config(config_path("demo"), overrides))
    # Every OCTDL scan as a test image; part b's cleaned manifest, where present, has no copies.
    clean = work / "octdl-clean.csv"
    if clean.exists():
        with clean.open(newline="") as handle:
            scans = [(r["path"], r["label"], r["patient"]) for r in csv.DictReader(handle)]
    else:
        scans = [
            (str(path), path.parent.name.upper(), parse_name(path)[1] or path.name) for path in _images_under(octdl)
        ]
    octdl_all = work / "octdl-all-test.csv"
    with octdl_all.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        writer.writerows([(*scan, "test") for scan in scans])
    on_octdl = evaluate_model(oct_run, octdl_all, "test", class_map={"NO": "NORMAL", "DME": "DME"}, resamples=1000)
    test_manifest = fold_manifest(rows, set(range(len(rows))), work / "oct2017-all-test.csv")
    on_oct = evaluate_model(
        octdl_model, test_manifest, "test", class_map={"NORMAL": "NO", "DME": "DME"}, resamples=1000
    )

    def short(report: dict[str, Any]) -> dict[str, Any]:
        return {
            "n": report["n"],
            "accuracy": report["accuracy"],
            "macro_f1": report["f1"],
            "left_out": report["left_out"],
            "recall": {k: v["value"] for k, v in report["ci_recall"].items() if not k.startswith("_")},
            "predicted": report["predicted"],
        }

    oct_scans = [(r["path"], r["label"], r["group"]) for r in rows]
    return {
        "oct2017_model_on_octdl": short(on_octdl.report),
        "octdl_model_on_oct2017": short(on_oct.report),
        "oct2017_model_on_octdl" + ADAPTED: adapted_across(
            oct_run / "model", scans, {"NO": "NORMAL", "DME": "DME"}, work / "adapted-oct2017-model-on-octdl"
        ),
        "octdl_model_on_oct2017" + ADAPTED: adapted_across(
            octdl_model / "model", oct_scans, {"NORMAL": "NO", "DME": "DME"}, work / "adapted-octdl-model-on-oct2017"
        ),
    }


ADAPTED = "_adapted"
"""Part c's key suffix for a model adapted to the other data set (:func:`adapted_across`)."""


def adapted_across(
    model: Path,
    scans: list[tuple[str, str, str]],
    class_map: dict[str, str],
    folder: Path,
    halves: int = 2,
    resamples: int = 1000,
) -> dict[str, Any]:
    """The model with its BatchNorm statistics re-estimated on the other data set's scans
    (``octattn adapt``, AdaBN; no labels), cross-fitted: the scans (path, class, patient) are
    cut into patient-grouped halves, the model adapted on every scan of one half (all classes,
    as a clinic would: its device's whole output) and scored through ``class_map`` on the
    other; pooled, and paired with the unadapted model on the same scans."""
    from sklearn.model_selection import GroupKFold

    folder.mkdir(parents=True, exist_ok=True)
    groups = [patient for _, _, patient in scans]
    folds = []
    for k, (rest, test) in enumerate(GroupKFold(n_splits=halves).split(scans, groups=groups)):
        manifest = folder / f"half{k}.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "patient", "split"])
            writer.writerows([(*scans[i], "test") for i in test])
        folds.append((manifest, [Path(scans[i][0]) for i in rest], folder / f"adapted-half{k}"))
    return adapted_reading(model, folds, class_map, resamples)


def adapted_reading(
    model: Path,
    folds: list[tuple[Path, list[Path], Path]],
    class_map: dict[str, str] | None = None,
    resamples: int = 1000,
) -> dict[str, Any]:
    """A model adapted (``octattn adapt``) fold by fold, cross-fitted: for each (manifest of
    the scans to score, scans to adapt on, the adapted bundle's folder; reused where it is
    there), the adapted and the unadapted model scored on the manifest's test scans; pooled,
    and paired (adapted - unadapted)."""
    from octattn.inference.adapt import adapt_bundle

    adapted: list[dict[str, Any]] = []
    unadapted: list[dict[str, Any]] = []
    for manifest, adapt_on, bundle in folds:
        if not (bundle / "config.json").is_file():
            adapt_bundle(model, adapt_on, bundle, overwrite=True)
        for reading, source in ((adapted, bundle), (unadapted, model)):
            evaluation = evaluate_model(source, manifest, "test", class_map=class_map, resamples=10)
            reading.append(as_reading(evaluation))
    after, before = pooled(adapted, resamples), pooled(unadapted, resamples)
    return {
        **{k: v for k, v in after.items() if not k.startswith("_")},
        "unadapted_accuracy": before["accuracy"],
        "vs_unadapted": paired(before, after),
    }


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def octdl_clean_manifest(octdl: Path, out: Path, cap_per_class: int | None = None) -> dict[str, Any]:
    """Audit OCTDL's own split and write it as a manifest without its leaks.

    Where the audit ties images across splits (one patient on two sides, identical files or
    near-duplicates under different patient ids), the copy in the earliest split (train, val,
    test) stays and the later ones are dropped; the counts go into the results.
    ``cap_per_class`` (``--quick``) keeps only the first scans of each class in each split.
    """
    from octattn.data.audit import audit_dataset

    audit = audit_dataset(octdl)

    def split_of(path: str) -> str:
        return Path(path).parent.parent.name.lower()

    dropped: dict[str, set[str]] = {"patient": set(), "exact": set(), "near": set()}
    for group in audit.exact_duplicates:
        first = min(SPLIT_ORDER[split_of(p)] for p in group["paths"])
        dropped["exact"] |= {p for p in group["paths"] if SPLIT_ORDER[split_of(p)] > first}
    for pair in audit.near_duplicates:
        later = max((pair["a"], pair["b"]), key=lambda p: SPLIT_ORDER[split_of(p)])
        if split_of(pair["a"]) != split_of(pair["b"]):
            dropped["near"].add(later)
    leaked_patients = {c["patient"]: min(SPLIT_ORDER[s] for s in c["splits"]) for c in audit.cross_split_patients}
    rows = []
    for split in SPLIT_ORDER:
        for path in _images_under(find_dataset_root(octdl) / split):
            _, patient, _ = parse_name(path)
            if patient in leaked_patients and SPLIT_ORDER[split] > leaked_patients[patient]:
                dropped["patient"].add(str(path))
            rows.append(
                {"path": str(path), "label": path.parent.name.upper(), "group": patient or path.name, "split": split}
            )
    gone = set().union(*dropped.values())
    kept: dict[str, dict[str, int]] = {}
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        for r in rows:
            count = kept.setdefault(r["split"], {}).get(r["label"], 0)
            if r["path"] not in gone and (cap_per_class is None or count < cap_per_class):
                writer.writerow([r["path"], r["label"], r["group"], r["split"]])
                kept[r["split"]][r["label"]] = count + 1
    return {
        "source_counts": audit.counts,
        "cross_split_patients": len(audit.cross_split_patients),
        "exact_duplicate_groups": len(audit.exact_duplicates),
        "near_duplicate_pairs": len(audit.near_duplicates),
        "dropped": {k: len(v) for k, v in dropped.items()},
        "dropped_by_split": {s: sum(1 for p in gone if split_of(p) == s) for s in SPLIT_ORDER},
        "kept_counts": kept,
    }


def prior_corrected(run: Path, manifest: Path, result: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The run's test predictions after the class-prior correction (``prior_correction: true``,
    :mod:`octattn.evaluation.calibration`), fitted here after the fact as the run would have
    fitted it: the power that maximises macro-F1 on the run's validation scans, at the bundle's
    temperature. Returns the power and the corrected result (``run_once``'s form)."""
    config = load_config(run / RUN_CONFIG)
    bundle = read_bundle_config(run / "model")
    classes = bundle.class_names
    with manifest.open(newline="") as handle:
        train = [classes.index(r["label"]) for r in csv.DictReader(handle) if r["split"] == "train"]
    natural = np.bincount(train, minlength=len(classes)).astype(float)
    shift = prior_shift(natural, trained_class_counts(train, len(classes), config.balance))
    val = evaluate_model(run, manifest, "val", resamples=20)
    power = fit_prior_power(val.logits, val.labels, bundle.temperature, shift)
    # result's probabilities are softmax(logits / T): their log differs from logits / T by a
    # constant per scan, so adding the shift to it ranks the classes as the bundle would.
    log_probs = np.log(np.clip(np.asarray(result["probs"]), 1e-300, None)) + power * shift
    probs = np.exp(log_probs - log_probs.max(1, keepdims=True))
    return power, {**result, "probs": (probs / probs.sum(1, keepdims=True)).tolist()}


PRIOR_CORRECTION = "fitted after training on OCTDL's val scans, as prior_correction: true fits it"
"""How part b's headline numbers are corrected for the balanced sampler (:func:`prior_corrected`)."""


def octdl_whole(
    work: Path,
    p: Plan,
    octdl: Path,
    seeds: tuple[int, ...],
    phantom_backbone: Path | None = None,
    phantom_models: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The three models on OCTDL's own (audited, leak-free) split, every seed in ``seeds``,
    from scratch; with ``phantom_backbone``, ``phantom_models`` also from that backbone with
    its layers at a tenth of the new head's rate (``phantom_gentle``, :data:`GENTLE`), as in
    part a, paired with the same model and seed from scratch.

    The balanced sampler teaches each model that the seven classes are equally common (AMD is
    58% of the test scans), so every run is reported with the class-prior correction
    (:func:`prior_corrected`) and, beside it, as trained; the paired comparisons are made both
    ways, and each correction's own gain is paired against its run."""
    manifest = work / "octdl-clean.csv"
    audit = octdl_clean_manifest(octdl, manifest, p.octdl_cap)
    starts: dict[str, list[str]] = {"": []}
    if phantom_backbone is not None and phantom_models:
        starts["-phantom_gentle"] = [f"weights={phantom_backbone}", *START_OVERRIDES["phantom_gentle"]]
    as_trained: dict[str, dict[str, Any]] = {}
    corrected: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    submitted: dict[tuple[str, str], run_pool.Job] = {}
    for start, start_overrides in starts.items():
        for model in MODELS if not start else phantom_models:
            for seed in seeds:
                name, run_name = f"{model}{start}-s{seed}", f"octdl-{model}{start}-s{seed}"
                overrides = [*octdl_overrides(p, model, seed), *start_overrides]
                submitted[name, run_name] = submit_run(run_name, work, manifest, overrides)
    for (name, run_name), result in zip(submitted, run_pool.settle(list(submitted.values())), strict=True):
        power, fixed = prior_corrected(work / "runs" / run_name, manifest, result)
        as_trained[name], corrected[name] = pooled([result]), pooled([fixed])
        summary[name] = {**_metrics(corrected[name]), "prior_power": power, "uncorrected": _metrics(as_trained[name])}
    comparisons, uncorrected = {}, {}
    pairs = [
        *((f"{a}{start}", f"attention{start}") for start in starts for a in ("plain", "nomask")),
        *((model, f"{model}{start}") for start in starts if start for model in MODELS),
    ]
    for a, b in pairs:
        for seed in seeds:
            if f"{a}-s{seed}" in summary and f"{b}-s{seed}" in summary:
                pair = f"{b} vs {a}, seed {seed}"
                comparisons[pair] = paired(corrected[f"{a}-s{seed}"], corrected[f"{b}-s{seed}"])
                uncorrected[pair] = paired(as_trained[f"{a}-s{seed}"], as_trained[f"{b}-s{seed}"])
    return {
        "size": p.octdl_size,
        "epochs": p.octdl_epochs,
        "schedule": REAL_SCHEDULE,
        "prior_correction": PRIOR_CORRECTION,
        "audit": audit,
        "runs": summary,
        "comparisons": comparisons,
        "comparisons_uncorrected": uncorrected,
        "correction_gain": {name: paired(as_trained[name], corrected[name]) for name in summary},
    }


def _metrics(run: dict[str, Any]) -> dict[str, Any]:
    """A pooled run's accuracy and macro-F1 with their intervals."""
    return {k: run[k] for k in ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")}


PARTS = ("a", "b", "c", "d", "e")


def backbones_needed(
    parts: set[str], seeds: tuple[int, ...], phantom_models: bool, standard: bool, lesion: bool = False
) -> set[str]:
    """The phantom generators whose backbones the parts run now load: part d all three; parts a and b
    the realistic one where any model starts from phantoms (their gentle start runs on every
    seed, not only seed 0; part b only where it runs: pass ``parts`` without it when OCTDL is
    absent), part a the standard one where seed 0 is among ``seeds`` and ``standard``
    pretraining is kept (that start is seed 0's alone) and the lesion-sized one where a model
    starts from it (``lesion``)."""
    needed = set()
    if "d" in parts or (parts & {"a", "b"} and phantom_models):
        needed.add("realistic")
    if "d" in parts or ("a" in parts and 0 in seeds and standard):
        needed.add("standard")
    if "d" in parts or ("a" in parts and lesion):
        needed.add("lesion-sized")
    return needed


class StageClock:
    """Times the stages of one call (the phantom backbones, then each part) and counts the runs
    each trained anew (a run under ``work/runs`` that finished, or a phantom backbone, that was
    not there before): how long the plan takes in one go is measured, not summed from runs made
    at other hours."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.seconds: dict[str, float] = {}
        self.new_runs: dict[str, int] = {}

    def _finished(self) -> int:
        # a scored run leaves its result.json; part c's two runs are never scored so, and are
        # read from their epochs; a phantom pretraining leaves its backbone file
        runs = [run for run in (self.work / "runs").glob("*") if run.is_dir()]
        scored = sum(1 for run in runs if (run / "result.json").exists() or trained_through(run))
        return scored + sum(1 for _ in self.work.glob("phantom-*/backbone.safetensors"))

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        before, start = self._finished(), time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - start
            self.new_runs[stage] = self._finished() - before


def _stopped_from_outside(signum: int, frame: object) -> None:
    """A TERM signal ends the call as Ctrl-C would: its stages so far are still recorded."""
    raise SystemExit(128 + signum)


TIMINGS = "timings.jsonl"
"""Each call's stage times, one JSON line per call, in the work folder (``benchmarks/plan_time.py``
reads them)."""


def record_timings(work: Path, record: dict[str, Any]) -> None:
    """Add one call's timings to ``work/timings.jsonl`` (rewritten atomically: a call cut short
    loses none of the earlier lines)."""
    path = work / TIMINGS
    earlier = path.read_text() if path.exists() else ""
    atomic_write_text(path, earlier + json.dumps(record) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--octdl", help="the whole OCTDL (train/val/test folders); default: only octdl-mini for part c")
    parser.add_argument("--size", type=int, default=147)
    parser.add_argument("--work", default="runs/real-scans")
    parser.add_argument(
        "--no-standard-pretraining",
        action="store_true",
        help="leave out part a's attention model from the standard phantoms' backbone (5 runs)",
    )
    parser.add_argument(
        "--phantom-models",
        default=",".join(MODELS),
        help="the models of parts a and b that also start from the realistic phantoms' backbone (default: all three)",
    )
    parser.add_argument(
        "--paper-epochs-models",
        default="",
        help="part a's models that also fine-tune from the realistic phantoms' backbone at the gentle rate for the "
        f"paper's {PAPER_EPOCHS} epochs instead of 12 (phantom_gentle_e20; default none)",
    )
    parser.add_argument(
        "--lesion-models",
        default="",
        help="part a's models that also fine-tune from the lesion-sized phantoms' backbone (part d's third, 500 "
        f"phantoms per class) at the gentle rate for the paper's {PAPER_EPOCHS} epochs (lesion_gentle_e20; default "
        "none)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the parts run now in the committed results file; each part keeps the "
        "machine and date it was measured on",
    )
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds of the runs from scratch (parts a, b, e; default: the plan's, 0,1); with "
        "--update, the runs of these seeds join those committed for the same recipe (a second seed later)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes sharing the independent runs of a part, each with its share of the cores (default 1; "
        "2 on a 2-core CPU: benchmarks/parallel_runs.py measures the gain)",
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=1,
        help="the real-scan runs validate after every N-th epoch and the last (default 1, as every committed "
        "run did; 3 made a fold 1.27-1.37x as fast: benchmarks/validation_cadence.py). A finished run made "
        "with another cadence is refused, not mixed in: pass another --work",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated parts to run (a,b,c,d,e; b and e need --octdl); the results file is written only "
        "when all run, so a split run ends with one call without --parts (finished runs are reused)",
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.val_every < 1:
        parser.error(f"--val-every must be at least 1, got {args.val_every}")
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    if args.update and args.quick:
        parser.error("--update replaces parts of the committed (full) results; a --quick run cannot")
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; choose from {','.join(PARTS)}")
    p = plan(args.quick, args.size, args.val_every)
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else p.seeds
    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    octdl = Path(args.octdl) if args.octdl else None
    results: dict[str, Any] = {"quick": args.quick, "size": p.size, "epochs": p.epochs, "seeds": list(seeds)}
    phantom_models = tuple(m for m in args.phantom_models.split(",") if m)
    paper_epochs_models = tuple(m for m in args.paper_epochs_models.split(",") if m)
    lesion_models = tuple(m for m in args.lesion_models.split(",") if m)
    if not set(phantom_models) | set(paper_epochs_models) | set(lesion_models) <= set(MODELS):
        parser.error(f"--phantom-models, --paper-epochs-models, --lesion-models: choose from {', '.join(MODELS)}")
    # the runs of a part are offered to --jobs processes; phantom backbones and the parts' few
    # other trainings run here, one at a time
    stages = StageClock(work)
    started = time.time()
    cut_short = True  # until the last part returns: Ctrl-C, a TERM signal or an error still records the stages done
    # a call started in the background (nohup, &) ignores Ctrl-C's signal: kill's TERM stops it the same way
    previous = signal.signal(signal.SIGTERM, _stopped_from_outside)
    try:
        with run_pool.sharing(work / "pool", args.jobs):
            runnable = parts if octdl is not None else parts - {"b", "e"}
            from_phantoms = bool(phantom_models) or ("a" in parts and bool(paper_epochs_models))
            needed = backbones_needed(
                runnable, seeds, from_phantoms, not args.no_standard_pretraining, bool(lesion_models)
            )
            with stages("backbones"):
                backbones = {generator: phantom_backbone(work, p, generator) for generator in sorted(needed)}
            if "b" in parts and octdl is not None:
                realistic = backbone_file(backbones["realistic"]) if "realistic" in backbones else None
                with stages("b"):
                    results["octdl"] = octdl_whole(work, p, octdl, seeds, realistic, phantom_models)
            # d and c before a: part a's many runs come last, its standard-phantom runs last of all,
            # so that a run cut short for time loses the least.
            if "d" in parts:
                with stages("d"):
                    results["zero_shot"] = zero_shot(work, p, backbones)
                    results["phantom_statistics"] = phantom_statistics()
            if "c" in parts:
                with stages("c"):
                    octdl_model = octdl_run(work, p, octdl, "attention", 0) if octdl is not None else None
                    results["across"] = across(work, p, octdl or OCTDL_MINI, octdl_model)
            if "a" in parts:
                standard = not args.no_standard_pretraining
                with stages("a"):
                    results["oct2017_cv"] = oct2017_cv(
                        work, p, backbones, standard, phantom_models, seeds, paper_epochs_models, lesion_models
                    )
            if "e" in parts and octdl is not None:
                with stages("e"):
                    results["oct2017_transfer"] = oct2017_transfer(work, p, octdl, seeds)
        cut_short = False
    finally:
        signal.signal(signal.SIGTERM, previous)
        record_timings(
            work,
            {
                "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                "command": sys.argv[1:],
                "jobs": args.jobs,
                "val_every": args.val_every,
                "seeds": list(seeds),
                "stages": stages.seconds,
                "new_runs": stages.new_runs,
                "seconds": time.time() - started,
                "cut_short": cut_short,
                "machine": machine(),
            },
        )
    for key in ("oct2017_cv", "oct2017_transfer"):
        for run in results.get(key, {}).get("runs", {}).values():
            for private in ("_order", "_correct", "_groups"):
                run.pop(private)
    if args.update:
        results = merged_results(RESULTS / "real_scans.json", results, parts, machine(), join_runs=bool(args.seeds))
    elif parts != set(PARTS):
        print(f"parts {args.parts} done; run again without --parts (or with --update) to write the results")
        return 0
    for part, key, pairs in (("a", "oct2017_cv", PAIRS_A), ("e", "oct2017_transfer", PAIRS_E)):
        # after the join: an ensemble averages every seed of a start, those run before included
        if part in parts and key in results and (ensembles := seed_ensembles(work, results[key], pairs)):
            results[key]["ensembles"] = ensembles
    results["headline"] = headline(results)
    # a check run's numbers mean nothing: they stay in its work folder, never over the committed ones
    write_real_scan_results(results, work if args.quick else RESULTS)
    return 0


def write_real_scan_results(results: dict[str, Any], folder: Path) -> None:
    """``folder/real_scans.{json,md}``, the table's paper question with the probes' answers found
    in the same ``folder`` (a ``--quick`` run's work folder has none: its table shows no committed
    numbers beside its own)."""
    write_results("real_scans", results, lambda found: table(found, elsewhere=folder), folder)


PART_KEYS = {
    "a": ("oct2017_cv",),
    "b": ("octdl",),
    "c": ("across",),
    "d": ("zero_shot", "phantom_statistics"),
    "e": ("oct2017_transfer",),
}
"""The results keys each part writes."""


def merged_results(
    committed: Path,
    new: dict[str, Any],
    parts: set[str],
    measured_on: dict[str, Any],
    join_runs: bool = False,
) -> dict[str, Any]:
    """The committed results with the parts run now replaced (``--update``), or, with
    ``join_runs`` (``--seeds``), with the runs of the seeds run now joined to the committed
    part's (:func:`joined_part`). A part whose every committed seed was run again is replaced
    whole, with the machine it was remade on, not joined: nothing of the old run is left in it.

    ``machines`` maps each part's results key to the machine it was measured on: a part run
    now gets ``measured_on``, one kept from the file keeps its entry (or the file's machine),
    so that a table of parts measured on two CPUs says which is which.
    """
    if not committed.is_file():
        raise SystemExit(f"{committed}: no results to update; run the whole benchmark first")
    old = json.loads(committed.read_text())
    old_machine = old.pop("machine")
    old.pop("headline", None)
    machines = old.setdefault("machines", {})
    for part, keys in PART_KEYS.items():
        for key in keys:
            if part in parts:
                if key not in new:
                    raise SystemExit(f"--update: part {part} gave no {key} (is --octdl missing?)")
                if (
                    join_runs
                    and key in old
                    and "runs" in old[key]
                    and not set(seeds_of(old[key])) <= set(seeds_of(new[key]))
                ):
                    machines.setdefault(key, old_machine)
                    old[key] = joined_part(key, old[key], new[key], old, measured_on)
                else:
                    old[key], machines[key] = new[key], measured_on
            elif key in old:
                machines.setdefault(key, old_machine)
    if "a" in parts and not join_runs:  # the file's size and epochs are part a's (older parts a carry none)
        old.update({k: new[k] for k in ("size", "epochs") if k in new})
    old["seeds"] = sorted({s for key in ("oct2017_cv", "octdl") if key in old for s in seeds_of(old[key])})
    return old


def seeds_of(part: dict[str, Any]) -> list[int]:
    """The seeds of a part's runs, read from their names (:func:`seeded`)."""
    return sorted({split_seed(name)[1] for name in part["runs"]})


def split_seed(name: str) -> tuple[str, int]:
    """``NAME-sSEED`` -> (``NAME``, SEED); a name without the mark is seed 0's (:func:`seeded`)."""
    m = re.fullmatch(r"(.*)-s(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, 0)


RECIPE_KEYS = ("scans", "folds", "size", "epochs", "schedule", "prior_correction")
"""What must be the same for runs of two seeds to stand in one table."""

JOINED_KEYS = ("runs", "comparisons", "comparisons_uncorrected", "correction_gain")
"""A part's entries by run or by pair, which a later seed's join to the committed ones."""


def joined_part(
    key: str, old: dict[str, Any], new: dict[str, Any], old_file: dict[str, Any], measured_on: dict[str, Any]
) -> dict[str, Any]:
    """The committed part ``old`` with ``new``'s runs and comparisons joined (a run of the
    same name replaced); ``seed_machines`` names where each seed joined later was measured.

    Raises:
        SystemExit: the two were measured under another recipe (a part a from before it kept
            its own size and epochs is read with the file's).
    """

    def setting(part: dict[str, Any], k: str) -> Any:
        return part.get(k, old_file.get(k) if k in ("size", "epochs") else None)

    changed = {
        k: (setting(old, k), setting(new, k))
        for k in RECIPE_KEYS
        if setting(old, k) is not None and setting(new, k) is not None and setting(old, k) != setting(new, k)
    }
    if changed:
        keys = "; ".join(f"{k} {a!r} committed, {b!r} now" for k, (a, b) in changed.items())
        raise SystemExit(f"--seeds with --update: {key} was measured under another recipe ({keys}); rerun it whole")
    joined = {**old, **{k: new[k] for k in RECIPE_KEYS if k in new}}
    for by_run in JOINED_KEYS:
        if by_run in old or by_run in new:
            joined[by_run] = {**old.get(by_run, {}), **new.get(by_run, {})}
    joined["seed_machines"] = {**old.get("seed_machines", {}), **{str(s): measured_on for s in seeds_of(new)}}
    joined["seeds"] = seeds_of(joined)
    return joined


def seed_means(runs: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each run name's accuracy and macro-F1 averaged over its seeds (:func:`seeded`), with
    the number of seeds."""
    by_name: dict[str, list[dict[str, float]]] = {}
    for name, run in runs.items():
        by_name.setdefault(split_seed(name)[0], []).append(run)
    return {
        name: {"seeds": len(rs), **{k: float(np.mean([r[k] for r in rs])) for k in ("accuracy", "macro_f1")}}
        for name, rs in by_name.items()
    }


def paper_question(results: dict[str, Any]) -> dict[str, Any]:
    """Attention vs plain and vs no masks, seed by seed: from scratch on each data set, and on
    OCT2017 from a pretrained backbone with its layers at a tenth of the rate (the paper's own
    setting, a pretrained backbone and fast new layers): the OCTDL backbone
    (``oct2017_transfer``) and the realistic phantoms' (``oct2017_cv_phantom_gentle``, read
    from part a), and on OCTDL from the realistic phantoms' (``octdl_phantom_gentle``, part b);
    the paired difference (attention - other, points) and its McNemar p-value."""
    out: dict[str, Any] = {}
    kept = ("difference_points", "interval_points", "p_value")
    for other in ("plain", "nomask"):
        found: dict[str, Any] = {}
        cross_validated_pattern = r"attention-{0}(?:-s(\d+))? vs {1}-{0}(?:-s\d+)?"
        for where, key, pattern in (
            ("oct2017_cv", "oct2017_cv", cross_validated_pattern.format("scratch", other)),
            ("octdl", "octdl", rf"attention vs {other}, seed (\d+)"),
            ("oct2017_transfer", "oct2017_transfer", cross_validated_pattern.format("octdl_gentle", other)),
            ("oct2017_cv_phantom_gentle", "oct2017_cv", cross_validated_pattern.format("phantom_gentle", other)),
            ("octdl_phantom_gentle", "octdl", rf"attention-phantom_gentle vs {other}-phantom_gentle, seed (\d+)"),
            (
                "oct2017_cv_phantom_gentle_e20",
                "oct2017_cv",
                cross_validated_pattern.format("phantom_gentle_e20", other),
            ),
            ("oct2017_cv_lesion_gentle_e20", "oct2017_cv", cross_validated_pattern.format("lesion_gentle_e20", other)),
        ):
            for name, c in results.get(key, {}).get("comparisons", {}).items():
                if m := re.fullmatch(pattern, name):
                    seed = f"seed {m.group(1) or 0}"
                    found.setdefault(where, {})[seed] = {k: c[k] for k in kept if k in c}
        out[f"attention vs {other}"] = found
    return out


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """Each part's headline under a key that says what it is, with accuracy and macro-F1 (the
    best run name's, averaged over its seeds)."""
    out: dict[str, Any] = {}
    for key, by in (("oct2017_cv", "accuracy"), ("oct2017_transfer", "accuracy"), ("octdl", "macro_f1")):
        if key in results:
            means = seed_means(results[key]["runs"])
            best = max(means, key=lambda m: means[m][by])
            out[key] = {"best": best, **means[best]}
        if results.get(key, {}).get("ensembles", {}).get("runs"):
            ensembles = results[key]["ensembles"]["runs"]
            best = max(ensembles, key=lambda m: ensembles[m][by])
            out[key + SEED_ENSEMBLE] = {
                "best": best,
                "seeds": len(ensembles[best]["seeds"]),
                **{k: ensembles[best][k] for k in ("accuracy", "macro_f1")},
            }
    out["across"] = {k: {m: v[m] for m in ("n", "accuracy", "macro_f1")} for k, v in results["across"].items()}
    out["zero_shot"] = {
        k: {m: v[m] for m in ("n", "accuracy", "macro_f1")}
        for k, v in results["zero_shot"].items()
        if k.endswith("_all")
    }
    out["paper_question"] = paper_question(results)

    def pretraining_gain(name: str, start: str) -> bool:
        """One model and seed, two starts: ``M-START...[-sN] vs M-scratch[-sN]``."""
        (b, seed_b), (a, seed_a) = (split_seed(side) for side in name.split(" vs "))
        return seed_a == seed_b and a.endswith("-scratch") and b.startswith(a.removesuffix("scratch") + start)

    for key, start in (("oct2017_cv", "phantom"), ("oct2017_cv", "lesion"), ("oct2017_transfer", "octdl")):
        if key in results:
            comparisons = results[key]["comparisons"]
            out[f"{start}_pretraining_gain_points"] = {
                k: v["difference_points"] for k, v in comparisons.items() if pretraining_gain(k, start)
            }
    if "octdl" in results:  # part b's names: "plain-phantom_gentle vs plain, seed 0" (corrected)
        out["octdl_phantom_pretraining_gain_points"] = {
            k: v["difference_points"] for k, v in results["octdl"]["comparisons"].items() if OCTDL_GAIN.fullmatch(k)
        }
    return out


SEED_ENSEMBLE = "_seed_ensemble"
"""A headline key's ending for the best of a part's seed ensembles (:func:`seed_ensembles`)."""

OCTDL_GAIN = re.compile(r"(\w+)-phantom_gentle vs \1, seed \d+")
"""Part b's comparisons of one model and seed from the phantom start against scratch."""


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def pct_ci(value: float, interval: list[float]) -> str:
    """'52.3% (45.1%-59.0%)': a share with its interval."""
    return f"{_pct(value)} ({_pct(interval[0])}-{_pct(interval[1])})"


def _measured(key: str, results: dict[str, Any]) -> str:
    """ " (measured on CPU, date)" where a part was measured on another machine than the file's,
    and "; seed N measured ..." for each seed joined later on another machine or day."""
    file_machine = results.get("machine")
    m = results.get("machines", {}).get(key) or file_machine
    if m is None:  # a table drawn before the file names its machine
        return ""
    notes = [] if file_machine is None or m["cpu"] == file_machine["cpu"] else [f"measured {measured_phrase(m)}"]
    for seed, sm in results.get(key, {}).get("seed_machines", {}).items():
        if (sm["cpu"], sm["date"][:10]) != (m["cpu"], m["date"][:10]):
            notes.append(f"seed {seed} measured {measured_phrase(sm)}")
    return f" ({'; '.join(notes)})" if notes else ""


def measured_phrase(m: dict[str, Any]) -> str:
    """'2026-12-04 on CPU, 2 cores; flags': where and when one machine measured something."""
    return f"{m['date'][:10]} on {m['cpu']}, {m['cores']} cores; {m['cpu_flags']}"


def _recipe(part: dict[str, Any], results: dict[str, Any]) -> str:
    """'12 epochs, onecycle schedule' (a part from before the key was kept: the file's epochs, cosine)."""
    return f"{part.get('epochs', results['epochs'])} epochs, {part.get('schedule', 'cosine')} schedule"


def _cv_rows(runs: dict[str, Any]) -> list[str]:
    lines = ["| model | accuracy (95% CI) | macro-F1 (95% CI) |", "| --- | ---: | ---: |"]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {pct_ci(r['accuracy'], r['accuracy_ci'])} | {pct_ci(r['macro_f1'], r['macro_f1_ci'])} |"
        )
    return lines


def points_p(c: dict[str, Any]) -> str:
    """'+26.1 (+19.9 to +32.2; p 3e-12)': a paired difference with its interval, where kept, and
    its McNemar p-value."""
    interval = c.get("interval_points")
    inner = f"{interval[0]:+.1f} to {interval[1]:+.1f}; " if interval else ""
    return f"{c['difference_points']:+.1f} ({inner}p {c['p_value']:.2g})"


def _comparison_rows(comparisons: dict[str, Any]) -> list[str]:
    lines = ["| paired comparison (same scans) | B - A, points (95% CI; McNemar p) |", "| --- | ---: |"]
    for name, c in comparisons.items():
        lines.append(f"| {name} | {points_p(c)} |")
    return lines


def _ensemble_rows(part: dict[str, Any]) -> list[str]:
    """A cross-validated part's seed ensembles (:func:`seed_ensembles`), where it has any: the
    ensembles, then each against its own seeds and against the other ensembles, paired."""
    ensembles = part.get("ensembles", {})
    if not ensembles.get("runs"):
        return []
    return [
        "",
        "Seed ensembles (-ens: one start's seeds as one model, their probabilities averaged scan by scan; "
        "as many networks to run per scan as seeds):",
        "",
        *_cv_rows(ensembles["runs"]),
        "",
        *_comparison_rows({**ensembles["vs_seeds"], **ensembles["comparisons"]}),
    ]


def _octdl_rows(o: dict[str, Any], lead: str) -> list[str]:
    """Part b's sentence ``lead``, completed here, then its run table and paired comparisons; where
    the runs carry the class-prior correction (:data:`PRIOR_CORRECTION`), corrected first and as
    trained beside it."""
    if "prior_correction" not in o:  # a part b from before the correction
        lines = [f"{lead}:", "", "| OCTDL run | test accuracy | test macro-F1 |", "| --- | ---: | ---: |"]
        lines += [f"| {n} | {_pct(r['accuracy'])} | {_pct(r['macro_f1'])} |" for n, r in o["runs"].items()]
        return [*lines, "", *_comparison_rows(o["comparisons"])]
    lines = [
        f"{lead}; class-prior correction {o['prior_correction']} (power: its strength, 0 = none):",
        "",
        "| OCTDL run | test accuracy (95% CI) | test macro-F1 (95% CI) | power | as trained: accuracy, macro-F1 "
        "| correction, points (McNemar p) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in o["runs"].items():
        u, gain = r["uncorrected"], o["correction_gain"][name]
        lines.append(
            f"| {name} | {pct_ci(r['accuracy'], r['accuracy_ci'])} | {pct_ci(r['macro_f1'], r['macro_f1_ci'])} "
            f"| {r['prior_power']:.2f} | {_pct(u['accuracy'])}, {_pct(u['macro_f1'])} "
            f"| {points_p(gain)} |"
        )
    lines += [
        "",
        "| paired comparison (same scans) | corrected: B - A, points (95% CI; McNemar p) "
        "| as trained: B - A, points (95% CI; p) |",
        "| --- | ---: | ---: |",
    ]
    for name, c in o["comparisons"].items():
        lines.append(f"| {name} | {points_p(c)} | {points_p(o['comparisons_uncorrected'][name])} |")
    return lines


def table(results: dict[str, Any], elsewhere: Path | None = RESULTS) -> str:
    """The docs' tables of a ``real_scans.json`` (the paper's question with the lesion-backbone
    probes' answers read from ``elsewhere``, the results folder; ``None``: this file's alone)."""
    cv = results["oct2017_cv"]
    lines = [
        f"{'QUICK RUN (tiny models; the numbers mean nothing). ' if results['quick'] else ''}"
        f"**a. OCT2017**, {cv['scans']} real scans in {cv['groups']} patient groups, "
        f"{cv['folds']}-fold cross-validation, {cv.get('size', results['size'])} px, {_recipe(cv, results)}, "
        f"seeds {', '.join(map(str, seeds_of(cv)))} (-sN: seed N; unmarked: seed 0), pooled out-of-fold "
        "(phantom = the realistic phantoms' backbone; phantom_standard = the standard phantoms'; _gentle: "
        "the backbone's layers at a tenth of the head's rate; _e20: for the paper's 20 epochs; lesion = the "
        "lesion-sized phantoms' backbone)"
        f"{_measured('oct2017_cv', results)}:",
        "",
        *_cv_rows(cv["runs"]),
        "",
        *_comparison_rows(cv["comparisons"]),
        *_ensemble_rows(cv),
    ]
    if "octdl" in results:
        o = results["octdl"]
        audit = o["audit"]
        test_n = sum(audit["kept_counts"]["test"].values())
        lead = (
            f"**b. OCTDL**, its own train/val/test split, audited: {audit['cross_split_patients']} patient on two "
            f"sides, {audit['exact_duplicate_groups']} identical files and {audit['near_duplicate_pairs']} "
            f"near-duplicate pairs across splits; {sum(audit['dropped_by_split'].values())} later copies dropped "
            f"(val {audit['dropped_by_split']['val']}, test {audit['dropped_by_split']['test']}), "
            f"{test_n} test scans left. {o['size']} px, {o['epochs']} epochs, "
            f"{o.get('schedule', 'cosine')} schedule, class-balanced sampling"
            + (
                ", phantom_gentle = from the realistic phantoms' backbone at a tenth of the head's rate"
                if any("-phantom_gentle-" in n for n in o["runs"])
                else ""
            )
            + _measured("octdl", results)
        )
        lines += ["", *_octdl_rows(o, lead)]
    a = results["across"]
    lines += ["", f"**c. Across data sets** (through `--class-map`){_measured('across', results)}:", ""]
    for key, label in (
        ("oct2017_model_on_octdl", "OCT2017 model on every OCTDL NO and DME scan (NO->NORMAL)"),
        ("octdl_model_on_oct2017", "OCTDL model on OCT2017's NORMAL and DME scans (NORMAL->NO)"),
    ):
        r = a[key]
        recall = ", ".join(f"{k} {_pct(v)}" for k, v in r["recall"].items())
        calls = ", ".join(f"{k} {n}" for k, n in r.get("predicted", {}).items() if n)
        went = f"; predicted as {calls}" if calls else ""  # a part c from before the count was kept has none
        lines.append(f"- {label}: {r['n']} scans, accuracy {_pct(r['accuracy'])}; {recall}{went}.")
        if key + ADAPTED in a:  # a part c from before the AdaBN reading has none
            r = a[key + ADAPTED]
            gain = r["vs_unadapted"]
            low, high = gain["interval_points"]
            lines.append(
                f"  Adapted to the other data set's scans (`octattn adapt`: BatchNorm statistics re-estimated on the "
                f"unlabeled scans of the other patient-grouped half, cross-fitted): accuracy "
                f"{pct_ci(r['accuracy'], r['accuracy_ci'])}, macro-F1 {r['macro_f1']:.3f}; "
                f"{gain['difference_points']:+.1f} points over unadapted on the same scans "
                f"({low:+.1f} to {high:+.1f}; p {gain['p_value']:.2g})."
            )
    z = results["zero_shot"]
    lines += [
        "",
        "**d. Phantoms that teach**: a model trained on phantoms only, on real OCT2017 scans "
        f"(unseen = not among the 100 scans the realistic style was learnt from){_measured('zero_shot', results)}:",
        "",
        "| phantoms | all real scans: accuracy (95% CI) | macro-F1 | unseen scans: accuracy (95% CI) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for generator in (g for g in PHANTOM_GENERATORS if f"{g}_all" in z):  # lesion-sized: since 2026-12-06
        every, unseen = z[f"{generator}_all"], z[f"{generator}_not_in_style"]
        lines.append(
            f"| {generator} | {pct_ci(every['accuracy'], every['accuracy_ci'])} (n={every['n']}) "
            f"| {_pct(every['macro_f1'])} | {pct_ci(unseen['accuracy'], unseen['accuracy_ci'])} (n={unseen['n']}) |"
        )
    st = results["phantom_statistics"]
    lines += [
        "",
        f"Measured statistics (real: the {st['real']['scans']} OCT2017 scans the style was not learnt from):",
        "",
        "| | speckle contrast | noise floor (grey) | registration wedges | grey levels: distance to real |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| real | {st['real']['speckle_contrast']:.2f} | {st['real']['noise_floor']:.0f} | "
        f"{_pct(st['real']['wedge_rate'])} | - |",
    ]
    for generator in (g for g in PHANTOM_GENERATORS if g in st):
        g = st[generator]
        lines.append(
            f"| {generator} phantoms | {g['speckle_contrast']:.2f} | {g['noise_floor']:.0f} | {_pct(g['wedge_rate'])} "
            f"| {g['distance_to_real']['quantiles']:.1f} grey levels |"
        )
    if "oct2017_transfer" in results:
        e = results["oct2017_transfer"]
        lines += [
            "",
            f"**e. Real OCT pretraining**: part a's folds and recipe ({_recipe(e, results)}); octdl = the "
            "backbone of part b's plain "
            "model (seed 0), trained on OCTDL's training scans only (another device, other classes, no OCT2017 "
            f"patient){_measured('oct2017_transfer', results)}:",
            "",
            *_cv_rows(e["runs"]),
            "",
            *_comparison_rows(e["comparisons"]),
            *_ensemble_rows(e),
        ]
    lines += ["", *_paper_question_lines(results, elsewhere)]
    return "\n".join(lines)


START_LABELS = {
    "scratch": "scratch",
    "phantom": "realistic phantoms' backbone, every layer at the full rate",
    "phantom_gentle": "realistic phantoms' backbone at a tenth of the rate",
    "phantom_gentle_e20": "realistic phantoms' backbone at a tenth, 20 epochs",
    "lesion_gentle_e20": "lesion-sized phantoms' backbone at a tenth, 20 epochs",
    "octdl": "the OCTDL model's backbone, every layer at the full rate",
    "octdl_gentle": "the OCTDL model's backbone at a tenth of the rate",
}
"""What each start of parts a, b and e is, in the README's words (a start not here: its name)."""

QUESTION_SETTINGS = {
    "oct2017_cv": ("OCT2017", "scratch", "oct2017_cv"),
    "octdl": ("OCTDL", "scratch", "octdl"),
    "oct2017_transfer": ("OCT2017", "octdl_gentle", "oct2017_transfer"),
    "oct2017_cv_phantom_gentle": ("OCT2017", "phantom_gentle", "oct2017_cv"),
    "octdl_phantom_gentle": ("OCTDL", "phantom_gentle", "octdl"),
    "oct2017_cv_phantom_gentle_e20": ("OCT2017", "phantom_gentle_e20", "oct2017_cv"),
    "oct2017_cv_lesion_gentle_e20": ("OCT2017", "lesion_gentle_e20", "oct2017_cv"),
}
""":func:`paper_question`'s settings: the data set, the start each asks it on, and the part
(results key) it was measured in."""

QUESTIONS = ("attention vs plain", "attention vs nomask")


def cpu_name(m: dict[str, Any]) -> str:
    """'Intel Xeon', 'AMD EPYC': a machine's CPU, short enough for a table cell."""
    return str(m["cpu"]).replace("(R)", "").removesuffix(" Processor").strip()


def _seed_cpu(results: dict[str, Any], part: str, seed: str) -> str:
    """The CPU one seed of a part ran on (a seed joined later has its own; '-' in a file from
    before machines were kept)."""
    joined = results.get(part, {}).get("seed_machines", {})
    number = seed.removeprefix("seed ")
    m = joined.get(number) or results.get("machines", {}).get(part) or results.get("machine")
    return cpu_name(m) if m else "-"


QuestionRow = tuple[str, str, str, dict[str, Any], str]
"""(data set, start, seed, {question: paired comparison}, CPU): one row of the paper's question."""


def probe_answers(folder: Path) -> list[QuestionRow]:
    """The paper's question as the backbone probes asked it, read from their results files in
    ``folder`` (``oct2017_from_backbone.json``: part d's backbone, then each backbone file;
    ``octdl_recipe.json``'s starts); none where a probe has not run."""
    # it imports this module: read where needed
    from benchmarks.oct2017_from_backbone import start_sections

    rows: list[QuestionRow] = []
    oct2017 = folder / "oct2017_from_backbone.json"
    if oct2017.is_file():
        for section in start_sections(json.loads(oct2017.read_text())):
            start = f"{section['backbone']} {_whose(section)} at a tenth, {section['epochs']} epochs"
            for seed, one in section["seeds"].items():
                rows.append(("OCT2017", start, f"seed {seed}", one["comparisons"], cpu_name(one["machine"])))
    octdl = folder / "octdl_recipe.json"
    if octdl.is_file():
        results = json.loads(octdl.read_text())
        for found in backbone_file_starts(results).values():
            start = f"{found['generator']} {_whose(found)} at a tenth, {found['variant']}"
            for seed, one in found["runs"].items():
                if "paper_question" in one:
                    rows.append(("OCTDL", start, f"seed {seed}", one["paper_question"], cpu_name(found["machine"])))
    return rows


def _whose(section: dict[str, Any]) -> str:
    """A probe's start as the question's table names it: part d's phantom backbone, or a backbone
    file (the section names its ``weights``) that a phantom probe made."""
    return "backbone (a phantom probe's)" if "weights" in section else "phantoms' backbone (part d's)"


def _paper_question_lines(results: dict[str, Any], elsewhere: Path | None = RESULTS) -> list[str]:
    """The paper's question as one table: each setting and seed, attention against plain
    Inception-v4 and against the same modules without masks, paired; with the lesion-backbone
    probes' answers (read from ``elsewhere``, none where it is ``None``) below part a's and b's."""
    rows: list[QuestionRow] = []
    asked = paper_question(results)
    for where, (data, start, part) in QUESTION_SETTINGS.items():
        by_seed: dict[str, dict[str, Any]] = {}
        for question, found in asked.items():
            for seed, c in found.get(where, {}).items():
                by_seed.setdefault(seed, {})[question] = c
        for seed in sorted(by_seed, key=lambda name: int(name.removeprefix("seed "))):
            rows.append((data, START_LABELS.get(start, start), seed, by_seed[seed], _seed_cpu(results, part, seed)))
    if elsewhere is not None:
        rows += probe_answers(elsewhere)
    if not rows:
        return ["**The paper's question on real OCT**: not measured."]
    lines = [
        "**The paper's question on real OCT**: attention - plain Inception-v4 and attention - the same "
        "modules without masks, paired on the same scans, 12 epochs unless named, accuracy points (95% CI; "
        "McNemar p); a tenth: the backbone's layers at a tenth of the new layers' rate; OCTDL from scratch and "
        "from the realistic phantoms corrected for class priors (part b), from the lesion-sized as trained:",
        "",
        "| data set | start | seed | attention - plain | attention - no masks | CPU |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for data, start, seed, answers, cpu in rows:
        cells = " | ".join(points_p(answers[q]) if q in answers else "-" for q in QUESTIONS)
        lines.append(f"| {data} | {start} | {seed.removeprefix('seed ')} | {cells} | {cpu} |")
    return lines


def _gain_run(name: str) -> tuple[str, str, int]:
    """(model, start, seed) of a pretraining gain :func:`headline` kept: parts a and e name it
    ``M-START[-sN] vs M-scratch[-sN]``, part b ``M-START vs M, seed N``."""
    tuned, _, scratch = name.partition(" vs ")
    run, seed = (tuned, int(scratch.rpartition(", seed ")[2])) if ", seed " in scratch else split_seed(tuned)
    model, _, start = run.partition("-")
    return model, start, seed


def _pretraining_lines(results: dict[str, Any], top: dict[str, Any]) -> list[str]:
    """What pretraining adds, as one table: each data set, start and seed, the three models'
    gains over the same model from scratch (paired), as ``top`` (:func:`headline`) picked them."""
    cells: dict[tuple[str, str, int], dict[str, str]] = {}
    for key, family, data in (
        ("oct2017_cv", "phantom", "OCT2017"),
        ("oct2017_cv", "lesion", "OCT2017"),
        ("oct2017_transfer", "octdl", "OCT2017"),
        ("octdl", "octdl_phantom", "OCTDL (corrected)"),
    ):
        for name in top.get(f"{family}_pretraining_gain_points", {}):
            model, start, seed = _gain_run(name)
            row = (data, START_LABELS.get(start, start), seed)
            cells.setdefault(row, {})[model] = points_p(results[key]["comparisons"][name])
    if not cells:
        return []
    lines = [
        "**What pretraining adds**: each model fine-tuned from a start - the same model from scratch, "
        "same seed, folds and CPU, 12 epochs unless named, accuracy points (95% CI; McNemar p):",
        "",
        "| data set | start | seed | attention | plain | no masks |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    # each start's seeds together, the starts in the order the parts name them
    starts = list(dict.fromkeys((data, start) for data, start, _ in cells))
    for (data, start, seed), by_model in sorted(cells.items(), key=lambda kv: (starts.index(kv[0][:2]), kv[0][2])):
        gains = " | ".join(by_model.get(m, "-") for m in ("attention", "plain", "nomask"))
        lines.append(f"| {data} | {start} | {seed} | {gains} |")
    return lines


TARGETS = {
    "oct2017_cv": "accuracy 80%",
    "oct2017_cv" + SEED_ENSEMBLE: "accuracy 80%",
    "oct2017_transfer": "accuracy 80%",
    "oct2017_transfer" + SEED_ENSEMBLE: "accuracy 80%",
    "octdl": "macro-F1 0.70",
}
"""The benchmark's targets, by headline key (phantoms only: :data:`ZERO_SHOT_TARGET`)."""

ZERO_SHOT_TARGET = "accuracy 50%"
ZERO_SHOT_HELD_OUT = ("lesion-sized/diverse-long", ("17", "18", "19"))
"""The phantom-only probe's chosen recipe and the seeds it ran only after it was chosen (on
seeds 14-16's readings of the same real scans): the probe's reading that its choice cannot
flatter (``benchmarks/phantom_zero_shot.py``)."""


def held_out_zero_shot(folder: Path) -> str | None:
    """The summary's row for :data:`ZERO_SHOT_HELD_OUT`, its seeds averaged, read from
    ``folder``'s ``phantom_zero_shot.json``; none before all of those seeds have run."""
    found = folder / "phantom_zero_shot.json"
    name, seeds = ZERO_SHOT_HELD_OUT
    runs = json.loads(found.read_text()).get("runs", {}).get(name, {}) if found.is_file() else {}
    if not set(seeds) <= set(runs):
        return None
    chosen = [runs[seed] for seed in seeds]
    measured = _measured_on(r["machine"] for r in chosen)
    return (
        f"| phantoms only, the probe's chosen recipe on seeds run after the choice (d) | {name} ({len(seeds)}) "
        f"| {_pct(statistics.mean(r['accuracy'] for r in chosen))} "
        f"| {_pct(statistics.mean(r['macro_f1'] for r in chosen))} | {ZERO_SHOT_TARGET} | {measured} |"
    )


def lesion_backbone_cv(folder: Path) -> str | None:
    """The summary's row for part a's folds fine-tuned from part d's lesion-sized phantoms'
    backbone (``folder``'s ``oct2017_from_backbone.json``, its top-level start): the model with
    the best accuracy averaged over the seeds, among those that ran on every seed of the start;
    none where the probe has not run."""
    found = folder / "oct2017_from_backbone.json"
    start = json.loads(found.read_text()) if found.is_file() else {}
    seeds = list(start.get("seeds", {}).values())
    models = set.intersection(*(set(seed.get("runs", {})) for seed in seeds)) if seeds else set()
    if not models:
        return None

    def mean_of(model: str, metric: str) -> float:
        return statistics.mean(seed["runs"][model][metric] for seed in seeds)

    best = max(sorted(models), key=lambda model: mean_of(model, "accuracy"))
    return (
        f"| OCT2017, the same CV, from the {start['backbone']} phantoms' backbone (part d's) at a tenth, "
        f"{start['epochs']} epochs | {best}-{start['start']} ({len(seeds)}) | {_pct(mean_of(best, 'accuracy'))} "
        f"| {_pct(mean_of(best, 'macro_f1'))} | {TARGETS['oct2017_cv']} "
        f"| {_measured_on(seed['machine'] for seed in seeds)} |"
    )


def _measured_on(machines: Iterable[dict[str, Any]]) -> str:
    """'AMD EPYC 2026-12-02; Intel Xeon 2026-12-04': each machine and day once, in order."""
    return "; ".join(dict.fromkeys(f"{m['cpu']} {m['date'][:10]}" for m in machines))


def _machines_of(key: str, results: dict[str, Any]) -> str:
    """Every machine and day a part's runs were measured on (the part's, then each seed's
    joined later), as :func:`_measured_on` writes them."""
    main = results.get("machines", {}).get(key) or results["machine"]
    return _measured_on([main, *results.get(key, {}).get("seed_machines", {}).values()])


def summary(results: dict[str, Any], elsewhere: Path | None = RESULTS) -> str:
    """The README's short view of a ``real_scans.json``: each yardstick's best run against its
    target, where it was measured, what pretraining adds, and the paper's question, with the
    lesion-backbone probes' best model and answers and the phantom probe's held-out seeds read
    from ``elsewhere`` as :func:`table` reads them (the full tables are :func:`table`'s)."""
    top = headline(results)
    rows = [
        ("oct2017_cv", "OCT2017, 307 scans, 5-fold CV, from scratch or phantoms (a)"),
        ("oct2017_cv" + SEED_ENSEMBLE, "OCT2017, the same CV, one start's seeds as one ensemble (a)"),
        ("oct2017_transfer", "OCT2017, the same folds, from an OCTDL backbone (e)"),
        ("oct2017_transfer" + SEED_ENSEMBLE, "OCT2017 from the OCTDL backbone, seeds as one ensemble (e)"),
        ("octdl", "OCTDL, its clean test split (b)"),
    ]
    lines = [
        "| yardstick | best run (seeds: averaged; ensembles: in it) | accuracy | macro-F1 | target | measured on |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for key, label in rows:
        if key in top:
            t = top[key]
            lines.append(
                f"| {label} | {t['best']} ({t['seeds']}) | {_pct(t['accuracy'])} | {_pct(t['macro_f1'])} "
                f"| {TARGETS[key]} | {_machines_of(key.removesuffix(SEED_ENSEMBLE), results)} |"
            )
        if key == "oct2017_cv" + SEED_ENSEMBLE and elsewhere is not None and (lesion := lesion_backbone_cv(elsewhere)):
            lines.append(lesion)
    zero = max(top["zero_shot"].items(), key=lambda kv: kv[1]["accuracy"])
    lines.append(
        f"| phantoms only, on the {zero[1]['n']} real scans (d) | {zero[0].removesuffix('_all')} phantoms (1) "
        f"| {_pct(zero[1]['accuracy'])} | {_pct(zero[1]['macro_f1'])} | {ZERO_SHOT_TARGET} "
        f"| {_machines_of('zero_shot', results)} |"
    )
    if elsewhere is not None and (held_out := held_out_zero_shot(elsewhere)):
        lines.append(held_out)
    for key, label in (
        ("oct2017_model_on_octdl", "OCT2017 model on OCTDL's NO and DME (c)"),
        ("oct2017_model_on_octdl" + ADAPTED, "the same, adapted to OCTDL's unlabeled scans (c, AdaBN)"),
        ("octdl_model_on_oct2017", "OCTDL model on OCT2017's NORMAL and DME (c)"),
        ("octdl_model_on_oct2017" + ADAPTED, "the same, adapted to OCT2017's unlabeled scans (c, AdaBN)"),
    ):
        if key not in top["across"]:
            continue
        a = top["across"][key]
        lines.append(
            f"| {label} | - | {_pct(a['accuracy'])} | {_pct(a['macro_f1'])} | - | {_machines_of('across', results)} |"
        )
    pretraining = _pretraining_lines(results, top)
    lines += ["", *pretraining, ""] if pretraining else [""]
    return "\n".join([*lines, *_paper_question_lines(results, elsewhere)])


if __name__ == "__main__":
    sys.exit(main())
