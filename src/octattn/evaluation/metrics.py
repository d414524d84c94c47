"""Predictions -> the paper's metrics and the ones a clinic needs, via scikit-learn.

All functions take integer ``labels`` (N,) and class ``probs`` (N, K) whose rows sum to
one. Per-class precision (the paper's Table I), recall (Table II), F1 and specificity
come with their unweighted means (the paper's "Mean" column); ROC/AUC one-vs-rest per
class with micro and macro averages (Fig. 5); Kermany et al.'s referral view (urgent =
CNV or DME against the rest, scored by the summed urgent probabilities); the expected
calibration error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from octattn.classes import CLASS_NAMES, URGENT_CLASSES

ECE_BINS = 15


def _safe_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """AUC, or NaN when only one class is present (AUC is undefined there)."""
    if truth.min() == truth.max():
        return float("nan")
    return float(roc_auc_score(truth, score))


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean over the defined values; NaN (without a warning) when none is defined."""
    array = np.asarray(values, dtype=float)
    return float(array[~np.isnan(array)].mean()) if (~np.isnan(array)).any() else float("nan")


def specificity_per_class(cm: np.ndarray) -> np.ndarray:
    """True-negative rate of each class from a confusion matrix (rows = truth)."""
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per confidence bin: its range, count, mean confidence and accuracy (reliability diagram)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        count = int(inside.sum())
        rows.append(
            {
                "low": float(low),
                "high": float(high),
                "count": count,
                "confidence": float(confidence[inside].mean()) if count else float("nan"),
                "accuracy": float(correct[inside].mean()) if count else float("nan"),
            }
        )
    return rows


def urgent_scores(
    probs: np.ndarray, class_names: Sequence[str] = CLASS_NAMES, urgent: Sequence[str] = URGENT_CLASSES
) -> np.ndarray:
    """Probability that a scan needs urgent referral: the sum over the urgent classes."""
    columns = [list(class_names).index(c) for c in urgent if c in class_names]
    return probs[:, columns].sum(axis=1)


def _referral_view(
    labels: np.ndarray, probs: np.ndarray, preds: np.ndarray, class_names: Sequence[str], urgent: Sequence[str]
) -> dict[str, Any]:
    """Urgent against the rest: sensitivity, specificity and AUC of the summed urgent probability."""
    columns = [list(class_names).index(c) for c in urgent]
    truth_urgent, called_urgent = np.isin(labels, columns), np.isin(preds, columns)
    return {
        "urgent_classes": list(urgent),
        "sensitivity": float(called_urgent[truth_urgent].mean()) if truth_urgent.any() else float("nan"),
        "specificity": float((~called_urgent[~truth_urgent]).mean()) if (~truth_urgent).any() else float("nan"),
        "auc": _safe_auc(truth_urgent.astype(int), urgent_scores(probs, class_names, urgent)),
    }


def per_class_recall(labels_present: Sequence[int], class_names: Sequence[str]) -> Callable[..., dict[str, float]]:
    """A metric function (for :func:`~octattn.evaluation.uncertainty.patient_bootstrap`): the
    recall of each class in ``labels_present``, keyed ``recall NAME``."""

    def recall(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        preds = probs.argmax(axis=1)
        return {
            f"recall {class_names[c]}": float((preds[labels == c] == c).mean()) if (labels == c).any() else float("nan")
            for c in labels_present
        }

    return recall


def headline_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The scalar metrics that get confidence intervals: accuracy and the unweighted means of
    per-class precision, recall, F1 (each 0 where undefined, as scikit-learn's
    ``zero_division=0``) and specificity, over all K classes.

    Read off one confusion matrix counted with ``np.bincount``: the bootstraps call this
    thousands of times per evaluation, and scikit-learn's per-call input checks made that 3 ms a
    call whatever the number of scans (about 30 us here). The test suite holds it equal to
    scikit-learn's ``accuracy_score`` and ``precision_recall_fscore_support``."""
    k = probs.shape[1]
    labels = np.asarray(labels, dtype=np.int64)
    cm = np.bincount(labels * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall, f1 = (_ratio(tp, predicted), _ratio(tp, actual), _ratio(2 * tp, predicted + actual))
    return {
        "accuracy": float(tp.sum() / max(len(labels), 1)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
        "specificity": _nanmean(specificity_per_class(cm)),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_report(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    urgent: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, as plain data (lists, floats) for JSON.

    ``urgent``: the classes whose referral tier is urgent (default: OCT2017's CNV and DME,
    where the class set has them); the referral view is left out (``None``) when the class
    set has no urgent class.
    """
    if urgent is None:
        urgent = [c for c in URGENT_CLASSES if c in class_names]
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    k = len(class_names)
    preds = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=list(range(k)), zero_division=0
    )
    cm = confusion_matrix(labels, preds, labels=list(range(k)))
    specificity = specificity_per_class(cm)
    onehot = np.eye(k)[labels]
    per_class_auc = [_safe_auc(onehot[:, i], probs[:, i]) for i in range(k)]
    roc = {}
    for i, name in enumerate(class_names):
        if onehot[:, i].min() != onehot[:, i].max():
            fpr, tpr, _ = roc_curve(onehot[:, i], probs[:, i])
            roc[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    micro_fpr, micro_tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    roc["micro"] = {"fpr": micro_fpr.tolist(), "tpr": micro_tpr.tolist()}
    referral = _referral_view(labels, probs, preds, class_names, urgent) if urgent else None
    return {
        "n": len(labels),
        "class_names": list(class_names),
        **headline_metrics(labels, probs),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "specificity": float(specificity[i]),
                "support": int(support[i]),
                "auc": per_class_auc[i],
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "auc_macro": _nanmean(per_class_auc),
        "auc_micro": _safe_auc(onehot.ravel(), probs.ravel()),
        "roc": roc,
        "referral": referral,
        "ece": expected_calibration_error(labels, probs),
        "reliability": reliability_bins(labels, probs),
    }
