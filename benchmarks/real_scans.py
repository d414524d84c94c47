"""Real scans as the yardstick: the paper's question asked of real OCT, and what phantoms teach.

a. OCT2017, 307 real scans (``oct2017-mini`` and ``oct2017-extra``): patient-grouped k-fold
   cross-validation (patients and byte-identical files across both folders stay in one fold);
   the attention model, plain Inception-v4 and the attention modules without masks, each from
   scratch and from a phantom-pretrained backbone; pooled out-of-fold predictions with
   patient-bootstrap intervals and paired McNemar tests between the models.
b. OCTDL, whole (``--octdl PATH``, its train/val/test folders; audited first): the same three
   models, two seeds, macro-F1 as the headline, class-balanced sampling.
c. Across data sets: an OCT2017-trained model on OCTDL's NO and DME (``--class-map``), and an
   OCTDL-trained model on OCT2017's NORMAL and DME.
d. Phantoms that teach: the phantom-trained backbone's model on the 307 real scans with no
   real training, and what phantom pretraining adds over scratch (paired, out of fold).

One command, resumable (each run keeps its result under ``--work``): ``python -m
benchmarks.real_scans [--quick] [--octdl PATH] [--size 147]``; writes
``results/real_scans.{json,md}``. ``--quick`` checks the code path in a few minutes with
tiny models; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from benchmarks.attention_study import Setup, _pretrain
from benchmarks.common import REAL_DATA, write_results
from octattn.classes import CLASS_NAMES
from octattn.data.layout import parse_name
from octattn.data.synth import write_phantom_tree
from octattn.demo import config_path
from octattn.evaluation.evaluate import evaluate_model
from octattn.evaluation.metrics import headline_metrics
from octattn.evaluation.uncertainty import mcnemar_exact, patient_bootstrap
from octattn.io import atomic_write_text
from octattn.training.config import load_config
from octattn.training.loop import train

EXTRA = REAL_DATA.parent / "oct2017-extra"
OCTDL_MINI = REAL_DATA.parent / "octdl-mini"
MODELS = {
    "attention": ["model=inception_v4_attention"],
    "plain": ["model=inception_v4"],
    "nomask": ["model=inception_v4_attention", "attention_mask=false"],
}


@dataclass(frozen=True)
class Plan:
    """Sizes of the benchmark (the full one, or ``--quick``)."""

    size: int
    epochs: int
    folds: int
    seeds: tuple[int, ...]
    pretrain: Setup
    octdl_epochs: int


def plan(quick: bool, size: int) -> Plan:
    if quick:
        return Plan(75, 1, 2, (0,), Setup(75, 3, 1, 0, 0, 1, 8), 1)
    return Plan(size, 24, 5, (0, 1), Setup(size, 200, 8, 0, 0, 1, 32), 12)


def oct2017_scans() -> list[dict[str, str]]:
    """Every real OCT2017 scan with its class and its group: the patient id from the name
    (shared between both folders), merged with byte-identical files; else the file alone."""
    files = [p for p in sorted(REAL_DATA.rglob("*")) if p.suffix.lower() in (".jpeg", ".png")]
    files += sorted(EXTRA.rglob("*.jpeg")) if EXTRA.is_dir() else []
    by_hash: dict[str, str] = {}
    rows = []
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _, patient, _ = parse_name(path)
        group = f"patient:{patient}" if patient else f"file:{path.name}"
        group = by_hash.setdefault(digest, group)  # an identical file joins the first copy's group
        rows.append({"path": str(path), "label": path.parent.name.upper(), "group": group})
    return rows


def fold_manifest(rows: list[dict[str, str]], test: set[int], out: Path) -> Path:
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        for i, r in enumerate(rows):
            writer.writerow([r["path"], r["label"], r["group"], "test" if i in test else "train"])
    return out


def run_once(name: str, work: Path, data: Path, overrides: list[str], split: str = "test") -> dict[str, Any]:
    """Train (unless done) and evaluate one run; its result is kept in ``RUN/result.json``."""
    run = work / "runs" / name
    result_file = run / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    config = load_config(config_path("demo"), [f"data={data}", *overrides])
    train(config, run, overwrite=True, progress=False, log=lambda _: None)
    evaluation = evaluate_model(run, data, split, resamples=200)
    report = evaluation.report
    result = {
        "accuracy": report["accuracy"],
        "macro_f1": report["f1"],
        "paths": [str(s.path) for s in evaluation.samples],
        "groups": [s.group for s in evaluation.samples],
        "labels": evaluation.labels.tolist(),
        "probs": evaluation.probs.tolist(),
    }
    atomic_write_text(result_file, json.dumps(result))
    return result


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Out-of-fold predictions pooled over the folds, with patient-bootstrap intervals."""
    labels = np.concatenate([r["labels"] for r in results])
    probs = np.concatenate([np.asarray(r["probs"]) for r in results])
    groups = [g for r in results for g in r["groups"]]
    ci = patient_bootstrap(labels, probs, groups, resamples=1000, metric_fn=headline_metrics)
    return {
        "n": len(labels),
        "accuracy": ci["accuracy"]["value"],
        "accuracy_ci": [ci["accuracy"]["low"], ci["accuracy"]["high"]],
        "macro_f1": ci["f1"]["value"],
        "macro_f1_ci": [ci["f1"]["low"], ci["f1"]["high"]],
        "_order": [p for r in results for p in r["paths"]],
        "_correct": (probs.argmax(1) == labels).tolist(),
    }


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """McNemar's exact test between two pooled runs on the same images (B - A)."""
    index = {p: i for i, p in enumerate(b["_order"])}
    order = [index[p] for p in a["_order"]]
    correct_a = np.array(a["_correct"])
    correct_b = np.array(b["_correct"])[order]
    test = mcnemar_exact(correct_a, correct_b)
    return {"difference_points": 100 * float(correct_b.mean() - correct_a.mean()), **test}


def oct2017_cv(work: Path, p: Plan, backbone: Path) -> dict[str, Any]:
    rows = oct2017_scans()
    labels = [CLASS_NAMES.index(r["label"]) for r in rows]
    folds = StratifiedGroupKFold(n_splits=p.folds, shuffle=True, random_state=0)
    splits = list(folds.split(np.zeros(len(rows)), labels, [r["group"] for r in rows]))
    runs: dict[str, dict[str, Any]] = {}
    for model, model_overrides in MODELS.items():
        for init in ("scratch", "phantom"):
            init_overrides = [f"weights={backbone}"] if init == "phantom" else []
            per_fold = []
            for k, (_, test) in enumerate(splits):
                manifest = fold_manifest(rows, set(test.tolist()), work / f"oct2017-fold{k}.csv")
                overrides = [
                    *model_overrides,
                    *init_overrides,
                    f"image_size={p.size}",
                    f"epochs={p.epochs}",
                    "val_fraction=0.15",
                    "keep_checkpoint=false",
                    "ood_detector=false",
                ]
                per_fold.append(run_once(f"oct2017-{model}-{init}-fold{k}", work, manifest, overrides))
            runs[f"{model}-{init}"] = pooled(per_fold)
    comparisons = {
        f"{b} vs {a}": paired(runs[a], runs[b])
        for a, b in (
            ("plain-scratch", "attention-scratch"),
            ("nomask-scratch", "attention-scratch"),
            ("plain-phantom", "attention-phantom"),
            ("nomask-phantom", "attention-phantom"),
            ("attention-scratch", "attention-phantom"),
            ("plain-scratch", "plain-phantom"),
            ("nomask-scratch", "nomask-phantom"),
        )
    }
    return {
        "scans": len(rows),
        "groups": len({r["group"] for r in rows}),
        "folds": p.folds,
        "runs": runs,
        "comparisons": comparisons,
    }


def zero_shot(work: Path, backbone_run: Path) -> dict[str, Any]:
    rows = oct2017_scans()
    manifest = fold_manifest(rows, set(range(len(rows))), work / "oct2017-all-test.csv")
    report = evaluate_model(backbone_run, manifest, "test", resamples=200).report
    return {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "macro_f1": report["f1"],
        "accuracy_ci": [report["ci"]["accuracy"]["low"], report["ci"]["accuracy"]["high"]],
    }


def across(work: Path, p: Plan, octdl: Path) -> dict[str, Any]:
    """OCT2017-trained on OCTDL's NO and DME; OCTDL-trained on OCT2017's NORMAL and DME."""
    rows = oct2017_scans()
    manifest = fold_manifest(rows, set(), work / "oct2017-all-train.csv")
    common = [f"image_size={p.size}", f"epochs={p.epochs}", "val_fraction=0.15", "ood_detector=false"]
    oct_run = work / "runs" / "across-oct2017"
    if not (oct_run / "model").exists():
        train(
            load_config(config_path("demo"), [f"data={manifest}", *common]),
            oct_run,
            overwrite=True,
            progress=False,
            log=lambda _: None,
        )
    octdl_train = octdl / "train" if (octdl / "train").is_dir() else octdl
    octdl_run = work / "runs" / "across-octdl"
    if not (octdl_run / "model").exists():
        train(
            load_config(config_path("demo"), [f"data={octdl_train}", *common, "balance=sampler"]),
            octdl_run,
            overwrite=True,
            progress=False,
            log=lambda _: None,
        )
    on_octdl = evaluate_model(oct_run, octdl, "test", class_map={"NO": "NORMAL", "DME": "DME"}, resamples=200).report
    test_manifest = fold_manifest(rows, set(range(len(rows))), work / "oct2017-all-test.csv")
    on_oct = evaluate_model(
        octdl_run, test_manifest, "test", class_map={"NORMAL": "NO", "DME": "DME"}, resamples=200
    ).report

    def short(report: dict[str, Any]) -> dict[str, Any]:
        return {
            "n": report["n"],
            "accuracy": report["accuracy"],
            "left_out": report["left_out"],
            "recall": {k: v["value"] for k, v in report["ci_recall"].items() if not k.startswith("_")},
        }

    return {"oct2017_model_on_octdl": short(on_octdl), "octdl_model_on_oct2017": short(on_oct)}


def octdl_whole(work: Path, p: Plan, octdl: Path) -> dict[str, Any]:
    from octattn.data.audit import audit_dataset

    audit = audit_dataset(octdl)
    runs = {}
    for model, model_overrides in MODELS.items():
        for seed in p.seeds:
            overrides = [
                *model_overrides,
                f"image_size={p.size}",
                f"epochs={p.octdl_epochs}",
                "val_fraction=0",
                "balance=sampler",
                f"seed={seed}",
                "keep_checkpoint=false",
                "ood_detector=false",
            ]
            result = run_once(f"octdl-{model}-s{seed}", work, octdl, overrides)
            runs[f"{model}-s{seed}"] = {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
    return {"leakage": audit.leakage, "counts": audit.counts, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--octdl", help="the whole OCTDL (train/val/test folders); default: only octdl-mini for part c")
    parser.add_argument("--size", type=int, default=147)
    parser.add_argument("--work", default="runs/real-scans")
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    p = plan(args.quick, args.size)
    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    phantoms = work / "phantoms"
    if not (phantoms / "phantoms.json").exists():
        write_phantom_tree(phantoms, {"train": p.pretrain.pretrain_per_class}, seed=11)
    backbone = _pretrain(work, phantoms, p.pretrain)
    results: dict[str, Any] = {"quick": args.quick, "size": p.size, "epochs": p.epochs, "seeds": list(p.seeds)}
    results["oct2017_cv"] = oct2017_cv(work, p, backbone)
    results["zero_shot"] = zero_shot(work, work / "pretrain")
    octdl = Path(args.octdl) if args.octdl else OCTDL_MINI
    if octdl.is_dir():
        results["across"] = across(work, p, octdl)
    if args.octdl:
        results["octdl"] = octdl_whole(work, p, Path(args.octdl))
    for run in results["oct2017_cv"]["runs"].values():
        run.pop("_order")
        run.pop("_correct")
    write_results("real_scans", results, table)
    return 0


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def table(results: dict[str, Any]) -> str:
    """The docs' tables of a ``real_scans.json``."""
    cv = results["oct2017_cv"]
    lines = [
        f"{'QUICK RUN (tiny models; the numbers mean nothing). ' if results['quick'] else ''}"
        f"OCT2017, {cv['scans']} real scans in {cv['groups']} patient groups, {cv['folds']}-fold cross-validation, "
        f"{results['size']} px, {results['epochs']} epochs, pooled out-of-fold:",
        "",
        "| model | accuracy (95% CI) | macro-F1 (95% CI) |",
        "| --- | ---: | ---: |",
    ]
    for name, r in cv["runs"].items():
        lines.append(
            f"| {name} | {_pct(r['accuracy'])} ({_pct(r['accuracy_ci'][0])}-{_pct(r['accuracy_ci'][1])}) "
            f"| {_pct(r['macro_f1'])} ({_pct(r['macro_f1_ci'][0])}-{_pct(r['macro_f1_ci'][1])}) |"
        )
    lines += ["", "| paired comparison (same scans) | B - A, points | McNemar p |", "| --- | ---: | ---: |"]
    for name, c in cv["comparisons"].items():
        lines.append(f"| {name} | {c['difference_points']:+.1f} | {c['p_value']:.3g} |")
    z = results["zero_shot"]
    interval = f"{_pct(z['accuracy_ci'][0])}-{_pct(z['accuracy_ci'][1])}"
    lines += [
        "",
        f"Phantom-trained model, no real training, on the {z['n']} real scans: accuracy {_pct(z['accuracy'])} "
        f"({interval}), macro-F1 {_pct(z['macro_f1'])}.",
    ]
    if "across" in results:
        a = results["across"]
        for key, label in (
            ("oct2017_model_on_octdl", "OCT2017 model on OCTDL (NO->NORMAL, DME)"),
            ("octdl_model_on_oct2017", "OCTDL model on OCT2017 (NORMAL->NO, DME)"),
        ):
            r = a[key]
            recall = ", ".join(f"{k} {_pct(v)}" for k, v in r["recall"].items())
            lines.append(f"{label}: {r['n']} scans, accuracy {_pct(r['accuracy'])}; {recall}.")
    if "octdl" in results:
        lines += ["", "| OCTDL run | accuracy | macro-F1 |", "| --- | ---: | ---: |"]
        for name, run in results["octdl"]["runs"].items():
            lines.append(f"| {name} | {_pct(run['accuracy'])} | {_pct(run['macro_f1'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
