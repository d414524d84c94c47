"""How sure a number is: patient-bootstrap intervals, and paired comparisons of two models.

Scans of one patient are not independent (neighbouring B-scans of one eye), so intervals
resample *patients* with replacement and keep all of a drawn patient's scans: resampling
images would pretend there is more evidence than there is and give intervals too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from octattn.evaluation.metrics import headline_metrics

BOOTSTRAP_RESAMPLES = 1000
MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def _group_index(groups: Sequence[str]) -> list[np.ndarray]:
    index: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        index.setdefault(group, []).append(i)
    return [np.array(rows) for rows in index.values()]


def _resample_rows(members: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    drawn = rng.integers(0, len(members), size=len(members))
    return np.concatenate([members[i] for i in drawn])


def patient_bootstrap(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    metric_fn: MetricFn = headline_metrics,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of each metric of ``metric_fn`` over patient resamples.

    Returns ``{metric: {"value", "low", "high"}}`` plus ``{"_bootstrap": {"resamples",
    "seed", "level", "groups"}}`` recording how the intervals were made.
    """
    members = _group_index(groups)
    rng = np.random.default_rng(seed)
    point = metric_fn(labels, probs)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(resamples):
        rows = _resample_rows(members, rng)
        for key, value in metric_fn(labels[rows], probs[rows]).items():
            draws[key].append(value)
    tail = (1 - level) / 2 * 100
    result = {
        key: {
            "value": float(point[key]),
            "low": float(np.nanpercentile(values, tail)),
            "high": float(np.nanpercentile(values, 100 - tail)),
        }
        for key, values in draws.items()
    }
    result["_bootstrap"] = {"resamples": resamples, "seed": seed, "level": level, "groups": len(members)}
    return result


def patient_bootstrap_mean(
    values: np.ndarray,
    groups: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile interval of the mean of a per-scan quantity over patient resamples: for
    two models on the same scans, ``correct_b - correct_a`` gives the paired interval of their
    accuracy difference."""
    result = patient_bootstrap(
        np.asarray(values, dtype=float),
        np.zeros((len(values), 1)),  # the per-scan values stand where labels stand; nothing else is read
        groups,
        resamples,
        seed,
        metric_fn=lambda v, _: {"mean": float(v.mean())},
        level=level,
    )
    return result["mean"]["low"], result["mean"]["high"]


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test on paired outcomes: only the discordant images carry evidence.

    Returns the counts ``a_only`` (A right, B wrong) and ``b_only`` and the two-sided
    p-value of the binomial test of ``b_only`` out of the discordant pairs at 1/2.
    """
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(b_only, discordant, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p_value}


@dataclass
class PairedDifference:
    """B minus A for one metric, with its paired patient-bootstrap interval."""

    metric: str
    difference: float
    low: float
    high: float

    @property
    def shown(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def sentence(self, name_a: str = "A", name_b: str = "B") -> str:
        """The comparison in plain words, in points (percentage points)."""
        points = 100 * self.difference
        better, worse = (name_b, name_a) if points >= 0 else (name_a, name_b)
        verdict = f"shown ({better} is better)" if self.shown else "not shown (the interval includes no difference)"
        return (
            f"{self.metric}: {better} is better than {worse} by {abs(points):.1f} points, "
            f"95% CI {100 * self.low:+.1f} to {100 * self.high:+.1f} ({name_b} - {name_a}): {verdict}"
        )


def paired_bootstrap_difference(
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    groups: Sequence[str],
    metrics: Sequence[str] = ("accuracy", "f1"),
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> list[PairedDifference]:
    """Intervals of B - A, resampling the same patients for both models each time."""
    members = _group_index(groups)
    rng = np.random.default_rng(seed)
    point_a, point_b = headline_metrics(labels, probs_a), headline_metrics(labels, probs_b)
    draws: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(resamples):
        rows = _resample_rows(members, rng)
        a = headline_metrics(labels[rows], probs_a[rows])
        b = headline_metrics(labels[rows], probs_b[rows])
        for metric in metrics:
            draws[metric].append(b[metric] - a[metric])
    return [
        PairedDifference(
            metric=metric,
            difference=point_b[metric] - point_a[metric],
            low=float(np.percentile(draws[metric], 2.5)),
            high=float(np.percentile(draws[metric], 97.5)),
        )
        for metric in metrics
    ]
