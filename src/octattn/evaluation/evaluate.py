"""Evaluate a model bundle on a labelled split: predictions, metrics, confidence intervals.

Writes ``predictions.csv`` (path, patient, label, one probability per class, prediction)
and ``metrics.json`` (every metric of :mod:`octattn.evaluation.metrics`, with 95%
patient-bootstrap intervals for the headline ones), and formats the headline table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octattn.classes import urgent_classes
from octattn.data.layout import Sample, left_out, load_samples
from octattn.errors import OctattnError
from octattn.evaluation.metrics import classification_report, per_class_recall
from octattn.evaluation.operating_points import abstention_on, risk_coverage, urgent_on
from octattn.evaluation.uncertainty import BOOTSTRAP_RESAMPLES, patient_bootstrap
from octattn.inference.predictor import Predictor, ScanPrediction
from octattn.io import atomic_write_text
from octattn.precision import EVALUATION_PRECISION
from octattn.run_paths import data_for

HEADLINE = ("accuracy", "precision", "recall", "f1", "specificity")


@dataclass
class EvaluationResult:
    """A model's outputs on a split, with the samples they belong to."""

    samples: list[Sample]
    logits: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    report: dict[str, Any]
    skipped: list[dict[str, str]]

    @property
    def correct(self) -> np.ndarray:
        """Whether each prediction is right."""
        return np.asarray(self.probs.argmax(axis=1) == self.labels)


def predict_samples(
    predictor: Predictor, samples: list[Sample], batch_size: int = 32, skip_bad: bool = False
) -> tuple[list[Sample], np.ndarray, list[dict[str, str]]]:
    """Logits for samples; a bad file is an error unless ``skip_bad`` (then it is listed)."""
    kept, predictions, skipped = predict_sample_rows(predictor, samples, batch_size, skip_bad)
    logits = np.array([p.logits for p in predictions], dtype=np.float64).reshape(len(kept), -1)
    return kept, logits, skipped


def predict_sample_rows(
    predictor: Predictor, samples: list[Sample], batch_size: int = 32, skip_bad: bool = False
) -> tuple[list[Sample], list[ScanPrediction], list[dict[str, str]]]:
    """The predictions of the readable samples (with their out-of-distribution flags)."""
    result = predictor.predict_files([s.path for s in samples], batch_size)
    if result.failures and not skip_bad:
        raise result.failures[0]
    failed = {f.path for f in result.failures}
    kept = [s for s in samples if str(s.path) not in failed]
    return kept, result.predictions, [{"path": f.path, "reason": f.reason} for f in result.failures]


def safety_report(
    predictor: Predictor,
    rows: list[ScanPrediction],
    probs: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """How the bundle's limits fare on this split: the out-of-distribution flags and scores,
    the risk-coverage curve with the abstention point chosen on validation (accuracy of the
    accepted scans with its patient-bootstrap interval), and the urgent operating point."""
    decision = predictor.config.decision
    found: dict[str, Any] = {"abstention": {"curve": risk_coverage(probs, labels)}}
    if "abstain_threshold" in decision:
        point = abstention_on(probs, labels, decision["abstain_threshold"])
        accepted = probs.max(axis=1) >= decision["abstain_threshold"]
        if accepted.any():
            interval = patient_bootstrap(
                labels[accepted],
                probs[accepted],
                [g for g, a in zip(groups, accepted, strict=True) if a],
                resamples,
                seed,
            )["accuracy"]
            point["accuracy_accepted_ci"] = [interval["low"], interval["high"]]
        found["abstention"].update(point, target=decision.get("abstain_target_accuracy"))
    urgent = [predictor.class_names.index(c) for c, t in predictor.config.referral.items() if t == "urgent"]
    if "urgent_threshold" in decision and urgent:
        found["urgent_operating_point"] = {
            **urgent_on(probs, labels, urgent, decision["urgent_threshold"]),
            "target_sensitivity": decision.get("urgent_sensitivity"),
        }
    if predictor.ood is not None:
        scores = [p.ood_score for p in rows]
        found["ood"] = {
            "threshold": predictor.ood.threshold,
            "flagged": int(sum(bool(p.ood) for p in rows)),
            "flagged_share": float(np.mean([bool(p.ood) for p in rows])),
            "by_cheap_checks": int(sum(bool(p.ood) and not p.ood_reason.startswith("score") for p in rows)),
            "scores": [None if v is None else float(v) for v in scores],
            "validation_scores": [float(v) for v in predictor.ood.validation_scores],
        }
    return found


def evaluate_model(
    model_path: str | Path,
    data: str | Path | None,
    split: str = "test",
    tta: bool = False,
    batch_size: int = 32,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    skip_bad: bool = False,
    device: str = "cpu",
    precision: str = EVALUATION_PRECISION,
    class_map: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Predict every image of ``split`` and compute the metrics and their intervals.

    ``data`` may be ``None`` for a run folder: the data the run recorded is used. The data is
    read under the model's classes; ``class_map`` (data class -> model class, e.g. OCTDL's
    ``NO`` -> ``NORMAL``) evaluates a data set whose classes map onto a subset of the model's:
    images of classes it does not map are left out and counted (``report["left_out"]``), and
    ``report["predicted"]`` counts the images given each of the model's classes (where the
    other data set's scans went: often to a class the map leaves out).
    """
    data = data_for(model_path, data)
    data = Path(data).resolve()  # predictions.csv then names every image by an absolute path
    predictor = Predictor(model_path, device=device, tta=tta, precision=precision)
    if class_map is not None:
        unknown = sorted(set(class_map.values()) - set(predictor.class_names))
        if unknown:
            raise OctattnError(
                f"--class-map names {', '.join(unknown)}, not among the model's classes "
                f"({', '.join(predictor.class_names)})"
            )
    wanted = load_samples(data, split, predictor.class_names, class_map)
    samples, rows, skipped = predict_sample_rows(predictor, wanted, batch_size, skip_bad)
    if not samples:
        raise OctattnError(f"{data}: no readable images in split {split!r}")
    logits = np.array([p.logits for p in rows], dtype=np.float64).reshape(len(samples), -1)
    probs = predictor.probabilities(logits)
    labels = np.array([s.label for s in samples])
    groups = [s.group for s in samples]
    report = classification_report(labels, probs, predictor.class_names, urgent_classes(predictor.config.referral))
    report["ci"] = patient_bootstrap(labels, probs, groups, resamples, seed)
    present = sorted(set(labels.tolist()))
    report["ci_recall"] = patient_bootstrap(
        labels, probs, groups, resamples, seed, metric_fn=per_class_recall(present, predictor.class_names)
    )
    if class_map is not None:
        report["class_map"] = dict(class_map)
        report["left_out"] = left_out(data, split, class_map)
        calls = probs.argmax(1)
        report["predicted"] = {c: int((calls == i).sum()) for i, c in enumerate(predictor.class_names)}
    report.update(safety_report(predictor, rows, probs, labels, groups, resamples, seed))
    report["split"] = split
    report["data"] = str(data)
    report["temperature"] = predictor.config.temperature
    report["prior_power"] = predictor.config.prior_power
    report["tta"] = tta
    # "precision" is the macro metric; the arithmetic the model ran in gets its own key
    report["arithmetic"] = predictor.precision
    report["skipped"] = skipped
    return EvaluationResult(samples, logits, probs, labels, predictor.class_names, report, skipped)


EVALUATION_DIR = "evaluation"


def default_evaluation_dir(model_path: str | Path) -> Path:
    """Where ``evaluate`` writes without ``--out``: ``RUN/evaluation`` for a run (or its
    ``model/``), ``BUNDLE/evaluation`` for another bundle folder, and
    ``evaluation-ORG-NAME`` in the working directory for a Hub model."""
    from octattn.inference.bundle import HUB_PREFIX, LOCAL_PREFIX, resolve_bundle_dir

    text = str(model_path)
    if text.startswith(HUB_PREFIX):
        return Path(f"evaluation-{text.removeprefix(HUB_PREFIX).replace('/', '-')}")
    given = Path(text.removeprefix(LOCAL_PREFIX))
    bundle = resolve_bundle_dir(given)
    return bundle.parent / EVALUATION_DIR if bundle != given else given / EVALUATION_DIR


def write_evaluation(result: EvaluationResult, out_dir: str | Path) -> Path:
    """Write ``predictions.csv`` and ``metrics.json`` (atomically) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "patient", "label", *[f"p_{c}" for c in result.class_names], "prediction"])
    for sample, row in zip(result.samples, result.probs, strict=True):
        writer.writerow(
            [
                str(sample.path),
                sample.patient or "",
                sample.class_name,
                *[f"{p:.6f}" for p in row],
                result.class_names[int(row.argmax())],
            ]
        )
    atomic_write_text(out / "predictions.csv", buffer.getvalue())
    atomic_write_text(out / "metrics.json", json.dumps(result.report, indent=1))
    return out


def format_headline(report: dict[str, Any]) -> str:
    """The headline table: each metric with its 95% patient-bootstrap interval."""
    ci = report.get("ci", {})
    lines = [f"{report['n']} images, {ci.get('_bootstrap', {}).get('groups', '?')} patients (or ungrouped files)"]
    lines.append(f"{'metric':<14}{'value':>8}   95% CI (patient bootstrap)")
    for name in HEADLINE:
        value = report[name]
        interval = ci.get(name)
        span = f"{100 * interval['low']:.1f} - {100 * interval['high']:.1f}" if interval else ""
        lines.append(f"{name:<14}{100 * value:>7.1f}%   {span}")
    lines.append(f"{'AUC (macro)':<14}{report['auc_macro']:>8.3f}")
    if "class_map" in report:
        mapped = ", ".join(f"{k}->{v}" for k, v in report["class_map"].items())
        dropped = ", ".join(f"{k} {n}" for k, n in report["left_out"].items()) or "none"
        lines.append(f"class map: {mapped}; left out (unmapped classes): {dropped}")
        lines.append("predicted as: " + ", ".join(f"{k} {n}" for k, n in report["predicted"].items()))
        lines.append("(macro precision/F1 count model classes the data cannot have: read accuracy and recall)")
    for key, interval in report.get("ci_recall", {}).items():
        if not key.startswith("_"):
            low, high = 100 * interval["low"], 100 * interval["high"]
            lines.append(f"{key:<14}{100 * interval['value']:>7.1f}%   {low:.1f} - {high:.1f}")
    ref = report.get("referral")
    if ref:
        urgent = "/".join(ref.get("urgent_classes", ["CNV", "DME"]))
        lines.append(
            f"referral ({urgent} urgent): sensitivity {100 * ref['sensitivity']:.1f}%, "
            f"specificity {100 * ref['specificity']:.1f}%, AUC {ref['auc']:.3f}"
        )
    prior = report.get("prior_power")
    lines.append(
        f"calibration: ECE {report['ece']:.3f} at temperature {report.get('temperature', 1.0):.2f}"
        + (f", class-prior correction at power {prior:.2f}" if prior is not None else "")
    )
    if "arithmetic" in report:
        lines.append(f"arithmetic: {report['arithmetic']}")
    per_class = report["per_class"]
    lines.append("")
    lines.append(f"{'class':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}")
    for name, row in per_class.items():
        lines.append(
            f"{name:<10}{100 * row['precision']:>9.1f}%{100 * row['recall']:>7.1f}%"
            f"{100 * row['f1']:>7.1f}%{row['support']:>9}"
        )
    return "\n".join(lines)
