"""A run folder: creating it safely, its logs, its provenance and its best-epoch bundle.

Everything a run writes lives in its folder: ``config.yaml`` (resolved), ``split.json``,
``checkpoint.pt``, ``metrics.csv`` (per epoch, with the masks' health), ``steps.csv``
(training loss per step: the paper's Fig. 4), ``model/`` (the best epoch's bundle) and
``skipped.json``.
"""

from __future__ import annotations

import csv
import io
import platform
import shutil
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import octattn
from octattn.classes import CLASS_NAMES, referral_tiers
from octattn.errors import OctattnError
from octattn.evaluation.calibration import fit_prior_power, fit_temperature, prior_shift
from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle
from octattn.io import atomic_write_text
from octattn.models.weights import preprocess_for
from octattn.training.config import TrainConfig
from octattn.training.distributed import DistInfo

METRICS_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "images_per_s",
    "epoch_seconds",
    "lr_backbone",
)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(octattn.__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(config: TrainConfig, epoch: int) -> dict[str, Any]:
    """Where a bundle came from: data, config, code version, machine, date."""
    return {
        "data": config.data,
        "config": config.to_dict(),
        "epoch": epoch,
        "octattn": octattn.__version__,
        "commit": _git_commit(),
        "torch": torch.__version__,
        "host": platform.node(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise OctattnError(
                f"{run_dir}: run folder exists; pass --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def metrics_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    """The fixed columns, then any per-run ones (the masks' health) in their first order: over
    every row, since an epoch left unvalidated (``val_every``) measures no health."""
    extra = [key for row in history for key in row if key not in METRICS_COLUMNS]
    return [*METRICS_COLUMNS, *dict.fromkeys(extra)]


def write_logs(run_dir: Path, history: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
        buffer = io.StringIO()
        # "nan" where an epoch measured nothing (not validated): every cell reads as a float
        writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="nan", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    atomic_write_text(run_dir / "metrics.csv", table(history, metrics_columns(history)))
    atomic_write_text(run_dir / "steps.csv", table(steps, ("epoch", "step", "loss")))


def open_tensorboard(run_dir: Path, info: DistInfo) -> Any:
    if not info.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def save_best_bundle(
    run_dir: Path,
    model: nn.Module,
    config: TrainConfig,
    logits: np.ndarray,
    labels: np.ndarray,
    epoch: int,
    classes: Sequence[str] = CLASS_NAMES,
    prior_counts: tuple[Sequence[float], Sequence[float]] | None = None,
) -> None:
    """Write ``RUN/model``: the weights, class names and referral tiers, pre-processing,
    provenance and a temperature fitted on validation; with ``prior_counts`` (the training
    scans' own class counts, and those the loss saw) also a class-prior correction whose
    power is fitted on validation (:func:`octattn.evaluation.calibration.fit_prior_power`)."""
    temperature = fit_temperature(logits, labels) if len(labels) else 1.0
    prior: dict[str, Any] = {}
    if prior_counts is not None and len(labels):
        shift = prior_shift(*prior_counts)
        power = fit_prior_power(logits, labels, temperature, shift)
        prior = {"prior_power": power, "logit_bias": (power * shift).tolist()}
    bundle = BundleConfig(
        architecture=architecture_of(config.model, model),
        preprocess=preprocess_for(config.model, config.image_size, config.in_chans),
        class_names=list(classes),
        temperature=temperature,
        **prior,
        provenance=provenance(config, epoch),
        referral=referral_tiers(classes, config.referral),
    )
    save_bundle(run_dir / "model", model, bundle)
