"""Is this scan like the ones the model learnt from? An out-of-distribution detector.

The detector is Mahalanobis distance (Lee et al., NeurIPS 2018) on the network's own
features, at more than one depth: each stage that timm's ``feature_info`` names (after the
attention module where one follows a block) is global-average pooled, and per stage the
squared distance to the nearest class mean under a covariance shared by the classes is
divided by its median on the training images; the score is the mean over stages. Low stages
see texture and intensity (a white square, noise), deep ones content (a photograph, text).

The covariance is Ledoit-Wolf shrunk (scikit-learn): an OCT data set often has fewer
training images than a deep stage has channels (1,536), where the plain estimate is
singular. (pytorch-ood's ``Mahalanobis`` inverts the unshrunk matrix with a 1e-6 ridge,
which is unstable there; that is why it is not used.) The threshold is the validation
score that keeps at least ``keep`` (99%) of the validation images.

The detector is stored in the bundle as ``ood.safetensors`` (means, precisions, scales,
the validation scores and the threshold), never pickled.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.covariance import LedoitWolf
from torch import nn

from octattn.errors import OctattnError
from octattn.models.ensemble import ProbabilityEnsemble, explained_network

OOD_FILE = "ood.safetensors"
KEEP = 0.99
"""Share of the validation images the threshold keeps."""


def stage_modules(model: nn.Module) -> list[str]:
    """The modules whose outputs the detector pools: timm's ``feature_info`` stages (what
    ``forward_intermediates`` returns), recorded in the detector by name."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise OctattnError(f"{type(model).__name__} has no feature_info: no stages to fit a detector on")
    return [str(stage["module"]) for stage in info]


class LogitsAndFeatures(nn.Module):
    """A model's logits and the global-average-pooled output of each ``feature_info`` stage,
    concatenated, in one pass (timm's ``forward_intermediates``). The same module runs in
    PyTorch and is what the ONNX export traces, so both backends score alike. For an
    ensemble: its combined logits, and its first member's stages."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        network: Any = explained_network(self.model)  # timm's interface, not typed on nn.Module
        final, stages = network.forward_intermediates(x)
        logits = network.forward_head(final)
        if isinstance(self.model, ProbabilityEnsemble):  # the other members add their logits only
            logits = self.model.combine([logits, *(member(x) for member in self.model.members[1:])])
        return logits, torch.cat([stage.float().mean(dim=(2, 3)) for stage in stages], dim=1)


def split_stages(features: np.ndarray, dims: Sequence[int]) -> list[np.ndarray]:
    """A concatenated ``(N, sum(dims))`` feature array as one array per stage."""
    bounds = np.cumsum([0, *dims])
    return [np.asarray(features[:, a:b], dtype=np.float64) for a, b in itertools.pairwise(bounds)]


def _squared_distances(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row to its nearest class mean."""
    best = np.full(len(features), np.inf)
    for mean in means:
        centred = features - mean
        # a matrix product (BLAS), not einsum's loops: 100x faster at 1,536 channels
        best = np.minimum(best, ((centred @ precision) * centred).sum(axis=1))
    return best


@dataclass
class OodDetector:
    """Per stage: class means ``(C, D)``, a shared precision ``(D, D)`` and a scale (the median
    training distance); the threshold on the combined score; the validation scores."""

    stages: list[str]
    means: list[np.ndarray]
    precisions: list[np.ndarray]
    scales: list[float]
    threshold: float
    validation_scores: np.ndarray
    keep: float = KEEP

    @classmethod
    def fit(
        cls,
        stages: Sequence[str],
        train: Sequence[np.ndarray],
        labels: np.ndarray,
        validation: Sequence[np.ndarray],
        keep: float = KEEP,
    ) -> OodDetector:
        """Fit on the training images' stage features and labels; the threshold keeps ``keep``
        of the validation images (the training images would flatter it)."""
        means, precisions, scales = [], [], []
        for features in train:
            classes = sorted(set(labels.tolist()))
            class_means = np.stack([features[labels == c].mean(axis=0) for c in classes])
            centred = features - class_means[[classes.index(c) for c in labels]]
            precision = LedoitWolf(assume_centered=True).fit(centred).precision_
            distances = _squared_distances(features, class_means, precision)
            means.append(class_means)
            precisions.append(precision)
            scales.append(float(np.median(distances)) or 1.0)
        detector = cls(list(stages), means, precisions, scales, float("inf"), np.zeros(0), keep)
        scores = detector.score(validation)
        detector.validation_scores = scores
        detector.threshold = float(np.quantile(scores, keep, method="higher")) if len(scores) else float("inf")
        return detector

    def score(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """The combined score of each image: 1 is a typical training image, larger is stranger."""
        if len(features) != len(self.stages):
            raise OctattnError(f"the detector needs {len(self.stages)} stages of features, got {len(features)}")
        per_stage = [
            _squared_distances(np.asarray(f, dtype=np.float64), m, p) / s
            for f, m, p, s in zip(features, self.means, self.precisions, self.scales, strict=True)
        ]
        return np.mean(per_stage, axis=0)

    @property
    def dims(self) -> list[int]:
        """Channels of each stage (how a concatenated feature vector splits)."""
        return [int(m.shape[1]) for m in self.means]

    def save(self, folder: str | Path) -> Path:
        """Write ``ood.safetensors`` (tensors and, in its metadata, stages and threshold)."""
        tensors: dict[str, np.ndarray] = {"validation_scores": np.asarray(self.validation_scores, dtype=np.float64)}
        for i, (mean, precision) in enumerate(zip(self.means, self.precisions, strict=True)):
            tensors[f"stage{i}.means"] = np.ascontiguousarray(mean, dtype=np.float32)
            tensors[f"stage{i}.precision"] = np.ascontiguousarray(precision, dtype=np.float32)
        meta = {"stages": self.stages, "scales": self.scales, "threshold": self.threshold, "keep": self.keep}
        path = Path(folder) / OOD_FILE
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"octattn": json.dumps(meta)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> OodDetector | None:
        """The bundle's detector, or None where it has none."""
        path = Path(folder) / OOD_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), "np") as handle:
                meta = json.loads((handle.metadata() or {})["octattn"])
            tensors = load_file(str(path))
            count = len(meta["stages"])
            return cls(
                stages=list(meta["stages"]),
                means=[tensors[f"stage{i}.means"].astype(np.float64) for i in range(count)],
                precisions=[tensors[f"stage{i}.precision"].astype(np.float64) for i in range(count)],
                scales=[float(s) for s in meta["scales"]],
                threshold=float(meta["threshold"]),
                validation_scores=tensors["validation_scores"],
                keep=float(meta.get("keep", KEEP)),
            )
        except (KeyError, ValueError, OSError) as exc:
            raise OctattnError(f"{path}: not a valid octattn detector ({exc})") from None
