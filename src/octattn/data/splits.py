"""Patient-grouped, class-stratified train/validation splits, saved with each run.

Scans of one patient are near copies of each other (neighbouring B-scans of one eye):
a split by image puts the same retina on both sides and inflates accuracy. Here every
patient (or, when the name carries no patient id, every file) lands on one side only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from octattn.data.layout import Sample
from octattn.errors import DataError
from octattn.io import atomic_write_text


def patient_split(
    samples: Sequence[Sample], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (train, val) with no patient on both sides.

    Uses scikit-learn's ``StratifiedGroupKFold`` with ``round(1 / val_fraction)`` folds
    and takes the first fold as validation: classes keep their proportions as far as
    whole patients allow. Seeded: the same inputs and seed give the same split.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    groups = [s.group for s in samples]
    if len(set(groups)) < 2:
        raise DataError("a patient-grouped split needs at least two patients")
    labels = np.array([s.label for s in samples])
    # scikit-learn needs some class with at least one member per fold: on tiny data sets
    # the folds are capped, and validation gets a larger share than asked for.
    largest_class = int(np.bincount(labels).max())
    n_splits = max(2, min(round(1 / val_fraction), len(set(groups)), largest_class))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(samples)), labels, groups))
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def split_record(train: Sequence[Sample], val: Sequence[Sample], seed: int, val_fraction: float) -> dict[str, Any]:
    """The split as plain data: which files and which patient groups went where."""
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "train": sorted(str(s.path) for s in train),
        "val": sorted(str(s.path) for s in val),
        "val_groups": sorted({s.group for s in val}),
    }


def save_split(
    path: str | Path, train: Sequence[Sample], val: Sequence[Sample], seed: int, val_fraction: float
) -> None:
    """Write the split to JSON (atomically), so a run can be audited and repeated."""
    atomic_write_text(path, json.dumps(split_record(train, val, seed, val_fraction), indent=1))
