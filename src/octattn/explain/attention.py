"""The attention modules' soft masks over a scan (the paper's Fig. 6).

A module's mask M has the trunk's shape (N, C, h, w); we show its mean over channels,
bilinearly up-sampled to the scan, where (1 + M) enhances features: bright = enhanced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from octattn.data.decode import load_scan
from octattn.inference.predictor import Predictor
from octattn.models import InceptionV4Attention


def mask_maps(predictor: Predictor, gray: np.ndarray) -> dict[str, np.ndarray]:
    """Each attention module's channel-mean mask for one scan, at the scan's size, in [0, 1].

    Empty for models without attention. The masks come from the same forward pass that
    classifies the scan (the modules keep their last mask).
    """
    model = predictor.model
    if not isinstance(model, InceptionV4Attention):
        return {}
    with torch.no_grad():
        model(predictor.prepare(gray)[None].to(predictor.device))
    maps = {}
    for name, mask in model.attention_masks().items():
        mean = mask.float().mean(dim=1, keepdim=True)
        up = F.interpolate(mean, size=gray.shape, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
        maps[name] = up
    return maps


def normalise_map(values: np.ndarray) -> np.ndarray:
    """Stretch a map to [0, 1] for display (a mask's range is often narrow)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def attention_overlays(
    model_path: str | Path, paths: Sequence[str | Path], display_size: tuple[int, int] = (256, 248)
) -> tuple[list[np.ndarray], list[list[np.ndarray | None]], list[str]]:
    """For each scan: the scan, then each module's normalised mask; with captions.

    Returns flat lists of images and captions laid out row by row (scan, mask, mask, ...)
    and the overlays per row (``None`` for the plain scan).
    """
    predictor = Predictor(model_path)
    images: list[np.ndarray] = []
    overlays: list[list[np.ndarray | None]] = []
    captions: list[str] = []
    for path in paths:
        gray = load_scan(path, display_size)
        maps = mask_maps(predictor, gray)
        prediction = predictor.predict_arrays([gray], [str(path)])[0]
        row: list[np.ndarray | None] = [None]
        images.append(gray)
        captions.append(f"{Path(path).name}\npredicted {prediction.label}")
        for name, values in maps.items():
            images.append(gray)
            row.append(normalise_map(values))
            captions.append(f"mask {name} (range {values.min():.2f}-{values.max():.2f})")
        overlays.append(row)
    return images, overlays, captions
