"""Figures of the report, each a function returning PNG bytes (matplotlib, no display).

Loss curves (the paper's Fig. 4), ROC curves (Fig. 5), confusion matrix, reliability
diagram, a montage of misclassified scans (Fig. 1) and attention overlays (Fig. 6).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def loss_curves(runs: dict[str, np.ndarray]) -> bytes:
    """Training loss per step of several runs on one plot (moving average of 10 steps)."""
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    for name, losses in runs.items():
        smoothed = _smooth(np.asarray(losses, dtype=float), 10)
        axis.plot(np.arange(len(smoothed)) + 1, smoothed, label=name)
    axis.set_xlabel("training step")
    axis.set_ylabel("training loss (moving average of 10 steps)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("Training loss (paper Fig. 4)")
    return _png(figure)


def roc_curves(report: dict[str, Any], title: str) -> bytes:
    """One-vs-rest ROC per class and the micro average, AUCs in the legend."""
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    for name, curve in report["roc"].items():
        auc = report["auc_micro"] if name == "micro" else report["per_class"][name]["auc"]
        style = "--" if name == "micro" else "-"
        axis.plot(curve["fpr"], curve["tpr"], style, label=f"{name} (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"{title}: ROC, macro AUC {report['auc_macro']:.3f}")
    axis.legend(loc="lower right", fontsize=8)
    return _png(figure)


def confusion(report: dict[str, Any], title: str) -> bytes:
    """Confusion matrix with counts (rows: truth, columns: prediction)."""
    matrix = np.array(report["confusion_matrix"])
    names = report["class_names"]
    figure, axis = plt.subplots(figsize=(4.4, 4.0))
    axis.imshow(matrix, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    axis.set_xticks(range(len(names)), names)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title}: confusion matrix")
    return _png(figure)


def reliability(report: dict[str, Any], title: str) -> bytes:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    bins = [b for b in report["reliability"] if b["count"] > 0]
    figure, axis = plt.subplots(figsize=(4.4, 4.0))
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.05
    axis.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, alpha=0.7, label="accuracy")
    axis.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(f"{title}: reliability, ECE {report['ece']:.3f}")
    return _png(figure)


def risk_coverage(report: dict[str, Any], title: str) -> bytes:
    """Error among the accepted scans against the share accepted (most confident first), with
    the abstention point chosen on validation."""
    abstention = report["abstention"]
    curve = abstention["curve"]
    figure, axis = plt.subplots(figsize=(4.4, 4.0))
    axis.plot(curve["coverage"], curve["risk"], label=f"test (AURC {curve['aurc']:.3f})")
    if "coverage" in abstention and abstention.get("target") is not None:
        axis.axhline(
            1 - abstention["target"], color="grey", ls=":", label=f"target error {1 - abstention['target']:.2f}"
        )
        axis.axvline(abstention["coverage"], color="tab:red", ls="--", label=f"coverage {abstention['coverage']:.2f}")
    axis.set_xlabel("coverage (share of scans accepted)")
    axis.set_ylabel("risk (error among the accepted)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, max(0.05, max(curve["risk"] or [0]) * 1.1))
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(f"{title}: risk-coverage")
    return _png(figure)


def ood_scores(report: dict[str, Any], title: str) -> bytes:
    """The detector's score on validation and on this split, with the threshold."""
    ood = report["ood"]
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    finite = [v for v in ood["scores"] if v is not None and np.isfinite(v)]
    values = [*ood["validation_scores"], *finite, ood["threshold"]]
    bins = np.histogram_bin_edges(np.log10(np.clip(values, 1e-3, None)), bins=30).tolist()
    for name, scores in (("validation", ood["validation_scores"]), ("test", finite)):
        if scores:
            axis.hist(np.log10(np.clip(scores, 1e-3, None)), bins=bins, alpha=0.55, label=f"{name} ({len(scores)})")
    axis.axvline(np.log10(ood["threshold"]), color="tab:red", ls="--", label="threshold")
    axis.set_xlabel("log10 out-of-distribution score (1 = a typical training image)")
    axis.set_ylabel("scans")
    axis.legend(fontsize=8)
    axis.set_title(f"{title}: {ood['flagged']} of {len(ood['scores'])} flagged")
    return _png(figure)


def mask_health(epochs: Sequence[dict[str, str]], title: str) -> bytes | None:
    """Mask mean, contrast and moved share of each attention module over the epochs.

    Reads the ``mask_<module>_<field>`` columns of ``metrics.csv``; ``None`` when a run
    logged none (a model without attention, or a run from before they were logged).
    """
    fields = (("mean", "mean mask"), ("contrast", "spatial contrast"), ("moved", "channels moved"))
    modules = sorted(
        {
            key[len("mask_") : -len("_mean")]
            for key in (epochs[0] if epochs else {})
            if key.startswith("mask_") and key.endswith("_mean")
        },
        key=lambda name: int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0,
    )
    if not modules:
        return None
    figure, axes = plt.subplots(1, len(fields), figsize=(3.6 * len(fields), 3.0))
    for axis, (key, label) in zip(axes, fields, strict=True):
        for module in modules:
            # the epochs measured: a run with val_every > 1 leaves the others "nan"
            points = [(int(row["epoch"]), float(row[f"mask_{module}_{key}"])) for row in epochs]
            measured = [(e, v) for e, v in points if not math.isnan(v)]
            axis.plot([e for e, _ in measured], [v for _, v in measured], marker="o", ms=3, label=module)
        axis.set_xlabel("epoch")
        axis.set_title(label, fontsize=9)
        axis.grid(alpha=0.3)
    axes[-1].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{title}: attention health", fontsize=10)
    return _png(figure)


def image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    columns: int = 4,
    overlays: Sequence[np.ndarray | None] | None = None,
) -> bytes:
    """Scans in a grid with captions; an overlay (values in [0, 1]) is drawn as a heat map."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.9 * rows), squeeze=False)
    for k, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if k >= len(images):
            continue
        axis.imshow(images[k], cmap="gray")
        if overlays is not None and overlays[k] is not None:
            axis.imshow(overlays[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        axis.set_title(captions[k], fontsize=8)
    return _png(figure)
