"""Run a model bundle on scans: the one code path behind evaluate, predict, explain and serve.

:class:`Predictor` applies the bundle's own pre-processing (the deterministic eval
transform), its calibration temperature, and batches the work. Decoding failures are
returned per file, never raised half-way through a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from octattn.data.decode import load_scan
from octattn.data.transforms import eval_transform
from octattn.errors import BadImageError, OctattnError
from octattn.evaluation.calibration import softmax
from octattn.inference.bundle import BundleConfig, load_bundle
from octattn.precision import autocast_for, resolve_precision
from octattn.progress import progress

NO_TIER = "none"
"""The referral of a class that the bundle gives no tier (never a wrong tier)."""


@dataclass
class ScanPrediction:
    """The prediction for one scan."""

    source: str
    label: str
    probabilities: dict[str, float]
    referral: str
    logits: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "source": self.source,
            "class": self.label,
            "probabilities": self.probabilities,
            "referral": self.referral,
        }


@dataclass
class BatchResult:
    """Predictions in input order, and the inputs that could not be read."""

    predictions: list[ScanPrediction]
    failures: list[BadImageError]


class Predictor:
    """A loaded bundle, ready to classify scans.

    Args:
        model_path: a bundle folder, a run folder, ``local-dir:`` or ``hf-hub:`` name.
        device: where to run (``"cpu"``, ``"cuda"``).
        tta: also run the horizontally flipped scan and average the probabilities.
        precision: ``"fp32"``, ``"bf16"``, or ``"auto"`` (bf16 where the hardware computes
            it natively; :mod:`octattn.precision`).
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", tta: bool = False, precision: str = "fp32") -> None:
        model, config = load_bundle(model_path, device)
        # channels_last: about twice the CPU throughput of the default layout for Inception.
        self.model: nn.Module = model.to(memory_format=torch.channels_last)
        self._setup(config, torch.device(device), tta, precision)

    def _setup(self, config: BundleConfig, device: torch.device, tta: bool, precision: str = "fp32") -> None:
        self.config: BundleConfig = config
        self.device = device
        self.tta = tta
        try:
            self.precision = resolve_precision(precision, device)
        except ValueError as exc:
            raise OctattnError(str(exc)) from None
        self.transform = eval_transform(config.preprocess)
        height, width = config.preprocess.size
        self.decode_size = (width, height)

    @property
    def class_names(self) -> list[str]:
        """Class names in output order."""
        return self.config.class_names

    def prepare(self, gray: np.ndarray) -> torch.Tensor:
        """One decoded scan -> the model's input tensor ``(C, H, W)``."""
        return self.transform(gray)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context every pass of this model runs in (bf16 autocast, or nothing for fp32)."""
        return autocast_for(self.precision, self.device)

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """One pass of the network: logits ``(N, K)``. Backends override only this."""
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.model(batch).float().cpu().numpy()

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits ``(N, K)`` for a prepared batch ``(N, C, H, W)``, flip-averaged under ``tta``."""
        out = self.forward(batch)
        if self.tta:
            # Average in probability space, then map back to logits for one interface.
            probs = (softmax(out) + softmax(self.forward(batch.flip(-1)))) / 2
            out = np.log(np.clip(probs, 1e-12, None))
        return out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax at the bundle's temperature."""
        return softmax(logits, self.config.temperature)

    def describe(self, source: str, logits: np.ndarray) -> ScanPrediction:
        """A :class:`ScanPrediction` from one row of logits."""
        probs = self.probabilities(logits[None])[0]
        label = self.class_names[int(np.argmax(probs))]
        return ScanPrediction(
            source=source,
            label=label,
            probabilities={name: float(p) for name, p in zip(self.class_names, probs, strict=True)},
            referral=self.config.referral.get(label) or NO_TIER,
            logits=[float(v) for v in logits],
        )

    def predict_arrays(self, arrays: Sequence[np.ndarray], sources: Sequence[str]) -> list[ScanPrediction]:
        """Classify decoded scans."""
        if not arrays:
            return []
        batch = torch.stack([self.prepare(a) for a in arrays])
        rows = self.logits(batch)
        return [self.describe(s, r) for s, r in zip(sources, rows, strict=True)]

    def predict_files(self, paths: Iterable[str | Path], batch_size: int = 16) -> BatchResult:
        """Classify files in batches; unreadable files are collected, the rest still predicted."""
        predictions: list[ScanPrediction] = []
        failures: list[BadImageError] = []
        arrays: list[np.ndarray] = []
        sources: list[str] = []

        def flush() -> None:
            predictions.extend(self.predict_arrays(arrays, sources))
            arrays.clear()
            sources.clear()

        for path in progress(paths, desc="predicting"):
            try:
                arrays.append(load_scan(path, self.decode_size))
                sources.append(str(path))
            except BadImageError as exc:
                failures.append(exc)
            if len(arrays) >= batch_size:
                flush()
        flush()
        return BatchResult(predictions, failures)
