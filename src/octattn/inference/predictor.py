"""Run a model bundle on scans: the one code path behind evaluate, predict, explain and serve.

:class:`Predictor` applies the bundle's own pre-processing (the deterministic eval
transform), its calibration temperature, and batches the work. Decoding failures are
returned per file, never raised half-way through a batch.

Every prediction says whether the scan is like the training data (``ood``: the cheap checks
of :mod:`octattn.inference.checks`, then the bundle's detector, :mod:`octattn.inference.ood`).
A flagged scan gets no class call and no referral tier unless ``allow_ood``; its
probabilities are still given. The referral follows, in order: not assessed (flagged);
urgent where the bundle's urgent operating point is reached; uncertain (refer to a human)
where the confidence is below the bundle's abstention threshold; else the class's tier.
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
from octattn.inference.bundle import BundleConfig, load_bundle, resolve_bundle_dir
from octattn.inference.checks import cheap_finding
from octattn.inference.ood import LogitsAndFeatures, OodDetector, split_stages
from octattn.precision import autocast_for, resolve_precision
from octattn.progress import progress

NO_TIER = "none"
"""The referral of a class that the bundle gives no tier (never a wrong tier)."""
NOT_ASSESSED = "not assessed"
"""The class of a scan flagged as unlike the training data (unless ``allow_ood``)."""
UNCERTAIN = "uncertain: refer to a human"


@dataclass
class ScanPrediction:
    """The prediction for one scan."""

    source: str
    label: str
    probabilities: dict[str, float]
    referral: str
    logits: list[float] = field(default_factory=list)
    ood: bool | None = None
    """True: unlike the training data; False: like it; None: the bundle has no detector."""
    ood_score: float | None = None
    ood_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "source": self.source,
            "class": self.label,
            "probabilities": self.probabilities,
            "referral": self.referral,
            "ood": self.ood,
            "ood_score": self.ood_score,
            "ood_reason": self.ood_reason,
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

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        tta: bool = False,
        precision: str = "fp32",
        allow_ood: bool = False,
    ) -> None:
        model, config = load_bundle(model_path, device)
        # channels_last: about twice the CPU throughput of the default layout for Inception.
        self.model: nn.Module = model.to(memory_format=torch.channels_last)
        self._setup(config, torch.device(device), tta, precision, model_path, allow_ood)

    def _setup(
        self,
        config: BundleConfig,
        device: torch.device,
        tta: bool,
        precision: str = "fp32",
        model_path: str | Path | None = None,
        allow_ood: bool = False,
    ) -> None:
        self.config: BundleConfig = config
        self.allow_ood = allow_ood
        self.ood: OodDetector | None = OodDetector.load(resolve_bundle_dir(model_path)) if model_path else None
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
        """One pass of the network: logits ``(N, K)``. Backends override this and
        :meth:`forward_features`."""
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.model(batch).float().cpu().numpy()

    @torch.no_grad()
    def forward_features(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, K)`` and the concatenated pooled stage features ``(N, D)`` in one pass."""
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            logits, features = LogitsAndFeatures(self.model)(batch)
        return logits.float().cpu().numpy(), features.float().cpu().numpy()

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits ``(N, K)`` for a prepared batch ``(N, C, H, W)``, flip-averaged under ``tta``."""
        return self.logits_and_scores(batch)[0]

    def logits_and_scores(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (flip-averaged under ``tta``) and the detector's score of each scan (None
        without a detector; the unflipped scan's)."""
        scores = None
        if self.ood is not None:
            out, features = self.forward_features(batch)
            scores = self.ood.score(split_stages(features, self.ood.dims))
        else:
            out = self.forward(batch)
        if self.tta:
            # The mean of the two views' calibrated probabilities, as an ensemble averages its
            # members' (so TTA and ensembling commute), mapped back to logits at the bundle's
            # temperature and bias: probabilities() then gives that mean again.
            probs = (self.probabilities(out) + self.probabilities(self.forward(batch.flip(-1)))) / 2
            bias = np.asarray(self.config.logit_bias or 0.0, dtype=np.float64)
            out = self.config.temperature * (np.log(np.clip(probs, 1e-12, None)) - bias)
        return out, scores

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax at the bundle's temperature, after its class-prior
        correction where it has one."""
        return softmax(logits, self.config.temperature, self.config.logit_bias)

    def describe(
        self, source: str, logits: np.ndarray, score: float | None = None, finding: str | None = None
    ) -> ScanPrediction:
        """A :class:`ScanPrediction` from one row of logits, the detector's score and what the
        cheap checks found (see the module docstring for the order of the referral)."""
        probs = self.probabilities(logits[None])[0]
        label = self.class_names[int(np.argmax(probs))]
        flagged = finding is not None or (score is not None and self.ood is not None and score > self.ood.threshold)
        ood = True if flagged else (False if self.ood is not None else None)
        reason = finding or (
            f"score {score:.2f} above the detector's threshold {self.ood.threshold:.2f}"
            if flagged and self.ood is not None and score is not None
            else ""
        )
        decision = self.config.decision
        urgent = [self.class_names.index(c) for c, t in self.config.referral.items() if t == "urgent"]
        if flagged and not self.allow_ood:
            label, referral = NOT_ASSESSED, f"not assessed: unlike the training data ({reason})"
        elif (
            decision.get("urgent_threshold") is not None
            and urgent
            and probs[urgent].sum() >= decision["urgent_threshold"]
        ):
            referral = "urgent"
        elif decision.get("abstain_threshold") is not None and probs.max() < decision["abstain_threshold"]:
            referral = UNCERTAIN
        else:
            referral = self.config.referral.get(label) or NO_TIER
        return ScanPrediction(
            source=source,
            label=label,
            probabilities={name: float(p) for name, p in zip(self.class_names, probs, strict=True)},
            referral=referral,
            logits=[float(v) for v in logits],
            ood=ood,
            ood_score=None if score is None else float(score),
            ood_reason=reason,
        )

    def predict_arrays(
        self,
        arrays: Sequence[np.ndarray],
        sources: Sequence[str],
        findings: Sequence[str | None] | None = None,
    ) -> list[ScanPrediction]:
        """Classify decoded scans (``findings``: the cheap checks' result for each, where run)."""
        if not arrays:
            return []
        batch = torch.stack([self.prepare(a) for a in arrays])
        rows, scores = self.logits_and_scores(batch)
        found = list(findings) if findings is not None else [cheap_finding(a) for a in arrays]
        return [
            self.describe(s, r, None if scores is None else float(scores[i]), found[i])
            for i, (s, r) in enumerate(zip(sources, rows, strict=True))
        ]

    def predict_files(self, paths: Iterable[str | Path], batch_size: int = 16) -> BatchResult:
        """Classify files in batches; unreadable files are collected, the rest still predicted."""
        predictions: list[ScanPrediction] = []
        failures: list[BadImageError] = []
        arrays: list[np.ndarray] = []
        sources: list[str] = []
        findings: list[str | None] = []

        def flush() -> None:
            predictions.extend(self.predict_arrays(arrays, sources, findings))
            arrays.clear()
            sources.clear()
            findings.clear()

        for path in progress(paths, desc="predicting"):
            try:
                gray = load_scan(path, self.decode_size)
            except BadImageError as exc:
                failures.append(exc)
            else:
                arrays.append(gray)
                sources.append(str(path))
                findings.append(cheap_finding(gray, path))
            if len(arrays) >= batch_size:
                flush()
        flush()
        return BatchResult(predictions, failures)
