"""The attention modules' soft masks over a scan (the paper's Fig. 6).

A module's mask M has the trunk's shape (N, C, h, w): one map per channel. Two summaries
of it, each bilinearly up-sampled to the scan (bright = enhanced):

* ``mean``: the mean over channels, the usual picture (and the paper's, as far as its
  Fig. 6 shows). Channels that enhance different places cancel out in it.
* ``weighted``: at each position, the mean of the channels' masks weighted by how strongly
  each channel of the trunk fires there, ``sum_c |T_c| M_c / sum_c |T_c|``: the gain that
  ``(1 + M) * T`` actually applies to the features present at that position. A mask that
  enhances exactly the channels that fire on a lesion lights up the lesion here even when
  its channel mean is flat.
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
from octattn.models.attention import AttentionModule
from octattn.models.ensemble import explained_network

MASK_SUMMARIES: tuple[str, ...] = ("mean", "weighted")


def _summarise(mask: torch.Tensor, trunk: torch.Tensor, summary: str) -> torch.Tensor:
    """One ``(1, 1, h, w)`` map from a module's ``(1, C, h, w)`` mask (see the module docstring)."""
    if summary == "mean":
        return mask.mean(dim=1, keepdim=True)
    energy = trunk.abs()
    return (energy * mask).sum(dim=1, keepdim=True) / energy.sum(dim=1, keepdim=True).clamp_min(1e-12)


def mask_maps(predictor: Predictor, gray: np.ndarray, summary: str = "mean") -> dict[str, np.ndarray]:
    """Each attention module's mask for one scan, summarised over channels, at the scan's size.

    Args:
        predictor: a loaded model.
        gray: the scan, 8-bit gray.
        summary: ``"mean"`` or ``"weighted"`` (see the module docstring).

    Returns ``{"after_<block>": map}`` with values in [0, 1]; empty for models without
    attention. The masks come from the same forward pass that classifies the scan.
    """
    return {name: maps[summary] for name, maps in summarised_masks(predictor, gray, (summary,)).items()}


def summarised_masks(
    predictor: Predictor, gray: np.ndarray, summaries: Sequence[str] = MASK_SUMMARIES
) -> dict[str, dict[str, np.ndarray]]:
    """``{"after_<block>": {summary: map}}`` for one scan, from one forward pass."""
    unknown = [s for s in summaries if s not in MASK_SUMMARIES]
    if unknown:
        raise ValueError(f"unknown mask summary {unknown[0]!r}; expected one of {', '.join(MASK_SUMMARIES)}")
    model = explained_network(predictor.model)  # an ensemble shows its first member's masks
    if not isinstance(model, InceptionV4Attention):
        return {}
    trunks: dict[str, torch.Tensor] = {}
    hooks = [
        module.trunk.register_forward_hook(lambda _m, _i, out, key=key: trunks.__setitem__(f"after_{key}", out))
        for key, module in model.attention.items()
        if isinstance(module, AttentionModule)
    ]
    try:
        with torch.no_grad(), predictor.autocast():
            model(predictor.prepare(gray)[None].to(predictor.device))
    finally:
        for hook in hooks:
            hook.remove()
    result: dict[str, dict[str, np.ndarray]] = {}
    for name, mask in model.attention_masks().items():
        result[name] = {}
        for summary in summaries:
            small = _summarise(mask.float(), trunks[name].float(), summary)
            up = F.interpolate(small, size=gray.shape, mode="bilinear", align_corners=False)
            result[name][summary] = up[0, 0].cpu().numpy()
    return result


def display_map(values: np.ndarray) -> np.ndarray:
    """A map on its fixed scale for display: masks and Grad-CAM (already divided by its peak)
    both live in [0, 1] and are drawn there, never stretched, so a near-flat mask looks flat."""
    return np.clip(values, 0.0, 1.0)


def contrast(values: np.ndarray) -> float:
    """A map's contrast: its range (max - min) on its own scale, stated beside every picture."""
    return float(values.max() - values.min())


def attention_overlays(
    model_path: str | Path, paths: Sequence[str | Path], display_size: tuple[int, int] = (256, 248)
) -> tuple[list[np.ndarray], list[list[np.ndarray | None]], list[str]]:
    """For each scan: the scan, then each module's mask on its fixed 0-1 scale; with captions
    that state each mask's range and contrast.

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
            row.append(display_map(values))
            captions.append(
                f"mask {name}: {values.min():.3f}-{values.max():.3f}\ncontrast {contrast(values):.3f}, scale 0-1"
            )
        overlays.append(row)
    return images, overlays, captions
