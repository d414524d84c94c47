"""Does a saliency map point at the lesion? Scored against the phantoms' true masks.

* Pointing game (Zhang et al., 2016): a hit when the map's maximum lies on the lesion,
  or within ``tolerance`` pixels (Euclidean) of it, at least one cell of the map's own grid
  (a 9x9 map cannot point finer than a ninth of the scan). Its chance level, the share of
  the scan within the tolerance of the lesion (where a peak thrown at random lands), is
  reported beside it.
* Energy inside the lesion: the share of the map's (min-subtracted) mass that falls on
  lesion pixels. A map that knows nothing scores the lesion's share of the image, which
  is reported beside it as the chance level.

This is where the paper's claim that the attention module "learns the knowledge about
the disease region" is put to a test it can fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

POINTING_TOLERANCE = 8


@dataclass(frozen=True)
class LocalisationScore:
    """Scores of one map against one lesion mask."""

    hit: bool
    energy_inside: float
    lesion_share: float
    near_share: float = float("nan")
    """The share of the scan within the tolerance of the lesion: the pointing game's chance."""


def score_map(saliency: np.ndarray, lesion: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> LocalisationScore:
    """Score a map (any real values, the lesion mask's shape) against a boolean lesion mask."""
    if saliency.shape != lesion.shape:
        raise ValueError(f"map {saliency.shape} and mask {lesion.shape} differ in shape")
    if not lesion.any():
        raise ValueError("the mask has no lesion pixel (NORMAL scans cannot be scored)")
    peak = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    distance = distance_transform_edt(~lesion)  # Euclidean distance to the nearest lesion pixel
    near = distance <= tolerance
    mass = saliency - saliency.min()
    total = float(mass.sum())
    inside = float(mass[lesion].sum()) / total if total > 0 else 0.0
    return LocalisationScore(
        hit=bool(near[peak]), energy_inside=inside, lesion_share=float(lesion.mean()), near_share=float(near.mean())
    )


def summarise(scores: list[LocalisationScore]) -> dict[str, float]:
    """Means over scans: hit rate, energy inside, and the chance level of the latter."""
    if not scores:
        return {"n": 0, "pointing_hit_rate": float("nan"), "energy_inside": float("nan"), "chance": float("nan")}
    return {
        "n": len(scores),
        "pointing_hit_rate": float(np.mean([s.hit for s in scores])),
        "pointing_chance": float(np.mean([s.near_share for s in scores])),
        "energy_inside": float(np.mean([s.energy_inside for s in scores])),
        "chance": float(np.mean([s.lesion_share for s in scores])),
    }
