"""Operating points chosen on validation, and how they fare on test.

- Abstention: the lowest confidence (calibrated top probability) at which the accepted
  validation scans are at least ``target`` accurate; scans below it are referred to a human.
  The risk-coverage curve (error among the accepted scans against the share accepted) and
  its area say how well confidence ranks the errors.
- Urgent sensitivity: the summed probability of the urgent classes above which a scan is
  referred urgently, chosen so that at least ``sensitivity`` of the urgent validation scans
  reach it; its price is the specificity it leaves on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def abstention_threshold(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest confidence whose accepted scans (confidence >= it) are >= ``target`` accurate.

    Returns ``inf`` (every scan referred) when no confidence reaches the target.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    best = float("inf")
    for threshold in np.unique(confidence):  # ascending: the first that meets the target accepts most
        accepted = confidence >= threshold
        if correct[accepted].mean() >= target:
            best = float(threshold)
            break
    return best


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Coverage and risk (error rate of the accepted) as the threshold sweeps every confidence,
    most confident first, and the area under that curve (AURC; lower is better)."""
    confidence = probs.max(axis=1)
    errors = (probs.argmax(axis=1) != labels).astype(float)
    order = np.argsort(-confidence, kind="stable")
    accepted = np.arange(1, len(order) + 1)
    risk = np.cumsum(errors[order]) / accepted
    coverage = accepted / len(order)
    return {"coverage": coverage.tolist(), "risk": risk.tolist(), "aurc": float(risk.mean()) if len(risk) else None}


def abstention_on(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Coverage and accuracy of the accepted scans at ``threshold``."""
    accepted = probs.max(axis=1) >= threshold
    correct = probs.argmax(axis=1) == labels
    return {
        "threshold": threshold,
        "coverage": float(accepted.mean()) if len(accepted) else float("nan"),
        "accepted": int(accepted.sum()),
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else float("nan"),
    }


def urgent_scores(probs: np.ndarray, urgent: Sequence[int]) -> np.ndarray:
    """Each scan's summed probability of the urgent classes."""
    return probs[:, list(urgent)].sum(axis=1)


def urgent_threshold(probs: np.ndarray, labels: np.ndarray, urgent: Sequence[int], sensitivity: float) -> float | None:
    """The largest summed urgent probability that at least ``sensitivity`` of the urgent
    validation scans reach (None without urgent classes or urgent scans)."""
    truth = np.isin(labels, list(urgent))
    if not urgent or not truth.any():
        return None
    return float(np.quantile(urgent_scores(probs, urgent)[truth], 1 - sensitivity, method="lower"))


def urgent_on(probs: np.ndarray, labels: np.ndarray, urgent: Sequence[int], threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity of urgent referral at ``threshold``, and the plain
    (most-likely-class) call's, for the price of the operating point."""
    truth = np.isin(labels, list(urgent))
    called = urgent_scores(probs, urgent) >= threshold
    plain = np.isin(probs.argmax(axis=1), list(urgent))

    def rates(calls: np.ndarray) -> tuple[float, float]:
        sens = float(calls[truth].mean()) if truth.any() else float("nan")
        spec = float((~calls[~truth]).mean()) if (~truth).any() else float("nan")
        return sens, spec

    (sens, spec), (plain_sens, plain_spec) = rates(called), rates(plain)
    return {
        "threshold": threshold,
        "sensitivity": sens,
        "specificity": spec,
        "plain_sensitivity": plain_sens,
        "plain_specificity": plain_spec,
    }
