"""Is attention alive? Summaries of the soft masks that a run logs every epoch.

For each attention module, over a fixed sample of scans:

* ``mean``: the mean mask value. ``(1 + M)`` scales the trunk's features by 1 + mean on
  average; the near-identity start is sigmoid(-4) = 0.018.
* ``contrast``: the spatial standard deviation of the channel-mean mask, averaged over
  scans. A mask that attends to a place differs between places; 0 means uniform.
* ``channel_contrast``: the spatial standard deviation of each channel's mask, averaged
  over channels and scans. Channels can attend to different places and cancel out in the
  channel mean; this one sees them.
* ``moved``: the share of channels whose mask moved away from where it started: its mean
  or its spatial standard deviation changed by more than :data:`MOVED_THRESHOLD` since
  the run's first measurement (before the first step).

A module whose ``moved`` stays near 0 and whose contrasts stay near 0 is switched off:
``(1 + M)`` is a constant and the network classifies through the trunk alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

MOVED_THRESHOLD = 0.05
"""A channel has moved when its mean mask or its spatial spread changed by more than this
(mask units, so 0.05 is a 5% change of the gain ``1 + M`` it applies)."""

HEALTH_FIELDS: tuple[str, ...] = ("mean", "contrast", "channel_contrast", "moved")


@dataclass
class ChannelProfile:
    """Per-channel mean and spatial spread of one module's mask over a sample of scans."""

    mean: torch.Tensor  # (C,)
    spread: torch.Tensor  # (C,)


class MaskMeter:
    """Accumulates mask statistics over batches; call :meth:`update` after each forward pass."""

    def __init__(self) -> None:
        self._channel_sum: dict[str, torch.Tensor] = {}
        self._channel_spread: dict[str, torch.Tensor] = {}
        self._contrast_sum: dict[str, float] = {}
        self._images = 0

    def update(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Add one batch of masks, keyed by module (each ``(N, C, H, W)``)."""
        batch = 0
        for name, mask in masks.items():
            m = mask.detach().float()
            batch = m.shape[0]
            flat = m.flatten(2)  # (N, C, H*W)
            channel_mean = flat.mean(dim=2).sum(dim=0)
            channel_spread = flat.std(dim=2, correction=0).sum(dim=0)
            contrast = flat.mean(dim=1).std(dim=1, correction=0).sum()
            self._channel_sum[name] = self._channel_sum.get(name, 0) + channel_mean.cpu()
            self._channel_spread[name] = self._channel_spread.get(name, 0) + channel_spread.cpu()
            self._contrast_sum[name] = self._contrast_sum.get(name, 0.0) + float(contrast)
        self._images += batch

    def profiles(self) -> dict[str, ChannelProfile]:
        """Per-channel profile of every module seen so far."""
        n = max(self._images, 1)
        return {
            name: ChannelProfile(mean=total / n, spread=self._channel_spread[name] / n)
            for name, total in self._channel_sum.items()
        }

    def summary(self, start: Mapping[str, ChannelProfile] | None = None) -> dict[str, dict[str, float]]:
        """``{module: {mean, contrast, channel_contrast, moved}}``; ``moved`` needs ``start``."""
        n = max(self._images, 1)
        result = {}
        for name, profile in self.profiles().items():
            row = {
                "mean": float(profile.mean.mean()),
                "contrast": self._contrast_sum[name] / n,
                "channel_contrast": float(profile.spread.mean()),
                "moved": float("nan"),
            }
            if start is not None and name in start:
                row["moved"] = moved_share(start[name], profile)
            result[name] = row
        return result


def moved_share(start: ChannelProfile, now: ChannelProfile, threshold: float = MOVED_THRESHOLD) -> float:
    """Share of channels whose mean or spatial spread changed by more than ``threshold``."""
    changed = ((now.mean - start.mean).abs() > threshold) | ((now.spread - start.spread).abs() > threshold)
    return float(changed.float().mean())


def health_columns(modules: Iterable[str]) -> list[str]:
    """The ``metrics.csv`` columns of these modules: ``mask_<module>_<field>``."""
    return [f"mask_{name}_{field}" for name in modules for field in HEALTH_FIELDS]


def flatten_health(summary: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """One row of ``metrics.csv`` columns from :meth:`MaskMeter.summary`."""
    return {f"mask_{name}_{field}": float(values[field]) for name, values in summary.items() for field in HEALTH_FIELDS}


def describe_health(summary: Mapping[str, Mapping[str, float]]) -> str:
    """The epoch line's part: ``masks after_9 0.02/0.001/0% ...`` and a warning when all are off.

    Each module shows mean / contrast / moved (see the module docstring).
    """
    if not summary:
        return ""
    parts = []
    for name, row in summary.items():
        moved = "-" if row["moved"] != row["moved"] else f"{100 * row['moved']:.0f}%"
        parts.append(f"{name} {row['mean']:.3f}/{row['contrast']:.3f}/{moved}")
    text = "masks (mean/contrast/moved): " + ", ".join(parts)
    if all(row["moved"] < 0.05 and row["contrast"] < 0.01 for row in summary.values()):
        text += " [attention switched off: every mask is still uniform and at its start]"
    return text


def profiles_to_tensors(profiles: Mapping[str, ChannelProfile]) -> dict[str, torch.Tensor]:
    """Plain tensors for a checkpoint (``weights_only`` loading)."""
    out = {}
    for name, p in profiles.items():
        out[f"{name}.mean"] = p.mean.clone()
        out[f"{name}.spread"] = p.spread.clone()
    return out


def profiles_from_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, ChannelProfile]:
    """Inverse of :func:`profiles_to_tensors`."""
    names = {key.rsplit(".", 1)[0] for key in tensors}
    return {name: ChannelProfile(mean=tensors[f"{name}.mean"], spread=tensors[f"{name}.spread"]) for name in names}
