"""``octattn adapt``: a bundle's BatchNorm statistics re-estimated on unlabeled scans of
another device or data set (AdaBN: Li et al., Pattern Recognition 2018).

A network's BatchNorm layers normalise with the mean and variance of the images it learnt
from; scans from another device (other grey levels, speckle, noise floor) arrive shifted,
and every layer after the first passes the shift on. Re-estimating the statistics on the
new scans, with no labels and no weight changed, is the cheapest domain adaptation there
is. What the adapted bundle can no longer carry: the out-of-distribution detector and the
operating points were fitted on the old features and probabilities, so they are dropped
(``octattn fit-ood`` fits them again where labelled scans of the new device exist); the
calibration is kept and may no longer fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from octattn.data.decode import load_scan
from octattn.data.transforms import eval_transform
from octattn.errors import BadImageError, OctattnError
from octattn.inference.bundle import load_bundle, save_bundle
from octattn.models.batchnorm import reestimate_batchnorm

MIN_IMAGES = 32
"""Fewer scans than this give statistics too noisy to replace the trained ones."""


@dataclass
class AdaptSummary:
    """What ``adapt`` did: scans read, scans that could not be read, the bundle written."""

    images: int
    unreadable: list[BadImageError]
    out_dir: Path


def adapt_bundle(
    model_path: str | Path,
    scans: Sequence[Path],
    out_dir: str | Path,
    batch_size: int = 32,
    overwrite: bool = False,
    source: str = "",
) -> AdaptSummary:
    """Write a copy of ``model_path`` whose BatchNorm statistics come from ``scans``.

    Raises:
        OctattnError: ``out_dir`` exists (without ``overwrite``), the model is an ensemble, or
            fewer than :data:`MIN_IMAGES` scans could be read.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise OctattnError(f"{out}: already exists (pass --overwrite to replace it)")
    where = source or "the scans given"
    if len(scans) < MIN_IMAGES:
        raise OctattnError(f"{where}: {len(scans)} scan(s); adapting needs at least {MIN_IMAGES}")
    model, config = load_bundle(model_path)
    if config.ensemble:
        raise OctattnError(f"{model_path}: an ensemble; adapt each member, then make the ensemble again")
    transform = eval_transform(config.preprocess)
    height, width = config.preprocess.size
    unreadable: list[BadImageError] = []

    def batches() -> Iterator[torch.Tensor]:
        prepared: list[torch.Tensor] = []
        for path in scans:
            try:
                prepared.append(transform(load_scan(path, (width, height))))
            except BadImageError as exc:
                unreadable.append(exc)
                continue
            if len(prepared) == batch_size:
                yield torch.stack(prepared)
                prepared = []
        if prepared:
            yield torch.stack(prepared)

    seen = reestimate_batchnorm(model, batches(), "cpu")
    if seen < MIN_IMAGES:
        raise OctattnError(f"{where}: only {seen} readable scan(s); adapting needs at least {MIN_IMAGES}")
    config.provenance = {
        **config.provenance,
        "adapted": {
            "from": str(model_path),
            "scans": seen,
            "source": source,
            "method": "BatchNorm statistics re-estimated on unlabeled scans (AdaBN)",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    config.decision = {}  # chosen on the old probabilities
    save_bundle(out, model, config)  # also drops a detector fitted on the old features
    return AdaptSummary(images=seen, unreadable=unreadable, out_dir=out)
