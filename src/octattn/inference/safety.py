"""What a bundle knows about its own limits, fitted on its data when training ends (or later,
by ``octattn fit-ood``): the out-of-distribution detector on the training images' features,
with its threshold on validation, and the operating points chosen on validation
(abstention for a target accuracy, urgent referral for a target sensitivity, and the
volume rule's per-B-scan false-positive rates)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from octattn.data.decode import load_scan
from octattn.data.layout import Sample
from octattn.errors import BadImageError, OctattnError
from octattn.evaluation.operating_points import abstention_threshold, urgent_threshold
from octattn.inference.bundle import CONFIG_FILE, read_bundle_config, resolve_bundle_dir
from octattn.inference.ood import KEEP, OodDetector, split_stages, stage_modules
from octattn.inference.predictor import Predictor
from octattn.inference.volume_call import DEFAULT_ALPHA, fit_volume_rule
from octattn.io import atomic_write_text
from octattn.progress import progress

REFER_ALL = 1.01


@dataclass
class SafetySettings:
    """The targets the operating points are chosen for (config keys of the same names)."""

    ood_fit_images: int = 2000
    abstain_target_accuracy: float | None = 0.99
    urgent_sensitivity: float | None = 0.95
    volume_false_urgent: float = DEFAULT_ALPHA
    keep: float = KEEP


def stage_dims(model: torch.nn.Module) -> list[int]:
    """Channels of each ``feature_info`` stage."""
    return [int(stage["num_chs"]) for stage in model.feature_info]  # type: ignore[union-attr]


def features_of(
    predictor: Predictor, samples: Sequence[Sample], batch_size: int = 32, desc: str = "features"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, concatenated pooled stage features and labels of the readable ``samples``."""
    logits, features, labels = [], [], []
    for start in progress(range(0, len(samples), batch_size), desc=desc, unit="batch"):
        arrays, kept = [], []
        for sample in samples[start : start + batch_size]:
            try:
                arrays.append(load_scan(sample.path, predictor.decode_size))
                kept.append(sample.label)
            except BadImageError:
                continue  # training already listed it; the detector fits on what can be read
        if arrays:
            out, feats = predictor.forward_features(torch.stack([predictor.prepare(a) for a in arrays]))
            logits.append(out)
            features.append(feats)
            labels.extend(kept)
    if not labels:
        raise OctattnError("no readable images to fit the detector on")
    return np.concatenate(logits), np.concatenate(features), np.array(labels)


def fit_safety(
    model_path: str | Path,
    train: Sequence[Sample],
    validation: Sequence[Sample],
    settings: SafetySettings,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the detector and the operating points and write them into the bundle.

    Returns what was fitted: the threshold, the share of validation kept, and each
    operating point.
    """
    folder = resolve_bundle_dir(model_path)
    predictor = Predictor(folder, precision="fp32")
    predictor.ood = None  # a detector fitted before is replaced, never used to fit the next
    if len(train) > settings.ood_fit_images:
        order = np.random.default_rng(seed).permutation(len(train))[: settings.ood_fit_images]
        train = [train[i] for i in sorted(order)]
    if not validation:
        raise OctattnError("no validation images: the detector's threshold and the operating points need them")
    _, train_features, train_labels = features_of(predictor, train, desc="detector: training images")
    val_logits, val_features, val_labels = features_of(predictor, validation, desc="detector: validation images")
    dims = stage_dims(predictor.model)
    detector = OodDetector.fit(
        stage_modules(predictor.model),
        split_stages(train_features, dims),
        train_labels,
        split_stages(val_features, dims),
        settings.keep,
    )
    detector.save(folder)

    config = read_bundle_config(folder)
    probs = predictor.probabilities(val_logits)
    urgent = [config.class_names.index(c) for c, tier in config.referral.items() if tier == "urgent"]
    decision: dict[str, Any] = {"chosen_on": f"{len(val_labels)} validation images"}
    if settings.abstain_target_accuracy is not None:
        decision["abstain_target_accuracy"] = settings.abstain_target_accuracy
        threshold = abstention_threshold(probs, val_labels, settings.abstain_target_accuracy)
        # 1.01 lies above every probability: no confidence met the target, so every scan is referred
        decision["abstain_threshold"] = min(threshold, REFER_ALL)
    if settings.urgent_sensitivity is not None and urgent:
        urgent_at = urgent_threshold(probs, val_labels, urgent, settings.urgent_sensitivity)
        if urgent_at is not None:
            decision["urgent_sensitivity"] = settings.urgent_sensitivity
            decision["urgent_threshold"] = urgent_at
    decision["volume"] = fit_volume_rule(probs, val_labels, config.class_names, settings.volume_false_urgent).to_dict()
    config.decision = decision
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
    kept = float(np.mean(detector.validation_scores <= detector.threshold))
    return {"threshold": detector.threshold, "validation_kept": kept, **decision}
