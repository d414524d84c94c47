"""Synthetic OCT B-scans with a ground-truth lesion mask: the offline default data set.

A phantom is a curved, tilted, layered retina under a dark vitreous: a bright nerve-fibre
layer, alternating plexiform (brighter) and nuclear (darker) layers, a foveal pit, the
bright photoreceptor line and RPE band, and a choroid that fades with depth; multiplied
by gamma-distributed speckle, as OCT's coherent noise is multiplicative. Per class:

* DRUSEN: dome-shaped elevations of the RPE over drusen material (mask: the material);
* DME: retinal thickening around the fovea with dark intraretinal cysts (mask: cysts);
* CNV: an irregular hyper-reflective lesion above the RPE, subretinal fluid over it,
  and the retina lifted by both (mask: lesion and fluid);
* NORMAL: none (empty mask).

Lesion sizes are drawn so that they stay visible when the 256x248 scan is shrunk to
the demo's input size (a 6-pixel druse vanishes at 107 px; ours are 14-30 pixels high).
A :class:`Difficulty` shrinks the lesions and fades them into their surroundings:
``"hard"`` phantoms have drusen 6-13 pixels high at 248 px (a few pixels at 147 px, as
real drusen are at 299 px) at 55% of their contrast, so that a comparison of models is
not decided at the ceiling. Everything is numpy, seeded, and about 2 ms per 256x248
image on one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

from octattn.classes import CLASS_NAMES

if TYPE_CHECKING:
    from octattn.data.phantom_style import PhantomStyle

# Reflectivity of the neurosensory retina against normalised depth (0 = ILM, 1 = top of
# the RPE): NFL bright, GCL, IPL, INL dark, OPL, ONL dark, ELM, photoreceptor line.
_LAYER_DEPTH = np.array([0.0, 0.08, 0.14, 0.28, 0.36, 0.46, 0.52, 0.58, 0.84, 0.88, 0.92, 0.96, 1.0])
_LAYER_VALUE = np.array([0.85, 0.7, 0.42, 0.52, 0.22, 0.24, 0.48, 0.16, 0.14, 0.32, 0.2, 0.8, 0.55])


@dataclass(frozen=True)
class Difficulty:
    """How visible the lesions are.

    Args:
        lesion_scale: multiplies every lesion's size (drusen, cysts, CNV lesion and
            fluid, the DME thickening); 1 is the standard phantom.
        contrast: share of each lesion's intensity difference to what it replaces
            (1 = full contrast, 0 = a lesion seen only through the geometry it deforms).
    """

    lesion_scale: float = 1.0
    contrast: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.lesion_scale <= 2 and 0 <= self.contrast <= 1):
            raise ValueError(f"difficulty needs 0 < lesion_scale <= 2 and 0 <= contrast <= 1, got {self}")


DIFFICULTIES: dict[str, Difficulty] = {
    "standard": Difficulty(),
    "hard": Difficulty(lesion_scale=0.45, contrast=0.55),
}
"""Named settings for ``octattn data synth --difficulty``."""


@dataclass(frozen=True)
class Phantom:
    """One synthetic scan: ``image`` (H, W) uint8 and ``mask`` (H, W) bool lesion pixels."""

    image: np.ndarray
    mask: np.ndarray
    label: int


def _dome(x: np.ndarray, centre: float, half_width: float, height: float) -> np.ndarray:
    t = np.clip(1 - ((x - centre) / half_width) ** 2, 0, None)
    return height * np.sqrt(t)


def generate_phantom(
    label: int,
    rng: np.random.Generator,
    width: int = 256,
    height: int = 248,
    difficulty: Difficulty = DIFFICULTIES["standard"],
    style: PhantomStyle | None = None,
) -> Phantom:
    """Draw one phantom of class ``label`` (index into :data:`CLASS_NAMES`).

    The random draws do not depend on ``difficulty``: the same seed gives the same scans,
    with smaller and fainter lesions under a harder setting. With a ``style`` (learnt from
    real scans, :mod:`octattn.data.phantom_style`) the phantom is rendered as a device
    renders a scan instead (:func:`_render_like_device`): the retina's place and thickness
    drawn from the style's ranges, lesions of varied size, vessel shadows, choroidal
    texture, correlated speckle over a noise floor, log compression, one real scan's
    grey-level distribution, and registration wedges as often as the real scans have them.
    """
    name = CLASS_NAMES[label]
    sy, sx = height / 248.0, width / 256.0
    k = difficulty.lesion_scale * (rng.uniform(0.45, 1.0) if style is not None else 1.0)
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    cx = width * rng.uniform(0.4, 0.6)

    # Geometry per column: retina surface (ILM) and RPE top, before lesions.
    # Real scans bow both ways (mostly a bowl, edges higher); the standard phantom mostly domes.
    curvature = (rng.uniform(-1.6, 0.8) if style is not None else rng.uniform(-0.6, 1.6)) * 1e-3 / sx
    tilt = rng.uniform(-0.15, 0.15)
    if style is None:
        rpe_depth, thick = rng.uniform(0.52, 0.62), rng.uniform(0.17, 0.22)
    else:  # the retina where real scans hold it; thinner than the measured range is not a retina
        thick = rng.uniform(max(0.1, style.retina_thickness[0]), max(0.14, style.retina_thickness[1]))
        rpe_depth = rng.uniform(*style.retina_top) + thick
    rpe = height * rpe_depth + curvature * (x - cx) ** 2 + tilt * (x - cx)
    thickness = height * thick * np.ones_like(x)
    pit = rng.uniform(0.45, 0.7) * np.exp(-(((x - cx) / (width * rng.uniform(0.05, 0.08))) ** 2))
    lift = np.zeros_like(x)  # how far the whole retina is pushed up above the RPE
    rpe_lift = np.zeros_like(x)  # how far the RPE itself is pushed up (drusen)
    mask = np.zeros((height, width), dtype=bool)

    if name == "DRUSEN":
        for _ in range(rng.integers(2, 5)):
            centre = cx + rng.uniform(-0.35, 0.35) * width
            rpe_lift = np.maximum(
                rpe_lift, _dome(x, centre, rng.uniform(12, 26) * sx * k, rng.uniform(14, 30) * sy * k)
            )
    elif name == "DME":
        thickness = thickness + _dome(
            x, cx + rng.uniform(-10, 10) * sx, width * rng.uniform(0.2, 0.32), height * rng.uniform(0.1, 0.18) * k
        )
        pit *= 0.2
    elif name == "CNV":
        centre = cx + rng.uniform(-0.2, 0.2) * width
        half = rng.uniform(22, 40) * sx * k
        ripple = 1 + 0.25 * np.sin(x / rng.uniform(3, 6) + rng.uniform(0, 6))
        lesion_h = _dome(x, centre, half, rng.uniform(12, 24) * sy * k) * ripple
        fluid_h = _dome(
            x, centre + rng.uniform(-8, 8) * sx * k, half * rng.uniform(1.0, 1.4), rng.uniform(8, 18) * sy * k
        )
        lift = lesion_h + fluid_h
        pit *= 0.5

    rpe_top = rpe - rpe_lift
    outer = rpe_top - lift  # bottom of the neurosensory retina
    ilm = outer - thickness * (1 - pit) + 0.35 * rpe_lift
    depth = (y - ilm) / np.maximum(outer - ilm, 1.0)

    image = np.full((height, width), 0.04, dtype=np.float32)  # vitreous
    retina = (depth >= 0) & (depth < 1)
    image[retina] = np.interp(depth[retina], _LAYER_DEPTH, _LAYER_VALUE).astype(np.float32)
    rpe_band = (y >= rpe_top) & (y < rpe_top + 6 * sy)
    image[rpe_band] = 0.95
    below = y >= np.maximum(rpe_top + 6 * sy, rpe + 6 * sy * (rpe_lift > 0))
    choroid = 0.5 * np.exp(-(y - rpe) / (height * rng.uniform(0.08, 0.14)))
    image = np.where(below, choroid, image)
    unlesioned = image.copy()

    if name == "DRUSEN":
        material = (y >= rpe_top + 6 * sy) & (y < rpe + 6 * sy) & (rpe_lift > 1)
        image[material] = 0.5
        mask |= material
    elif name == "CNV":
        lesion = (y >= rpe_top - lesion_h) & (y < rpe_top) & (lesion_h > 1)
        fluid = (y >= outer) & (y < rpe_top - lesion_h) & (lift > 1)
        image[lesion] = 0.85
        image[fluid] = 0.06
        mask |= lesion | fluid
    elif name == "DME":
        for _ in range(rng.integers(3, 7)):
            col = int(np.clip(cx + rng.uniform(-0.22, 0.22) * width, 0, width - 1))
            cy = ilm[col] + (outer[col] - ilm[col]) * rng.uniform(0.35, 0.7)
            ry, rx = rng.uniform(6, 13) * sy * k, rng.uniform(6, 16) * sx * k
            cyst = ((y - cy) / ry) ** 2 + ((x - col) / rx) ** 2 < 1
            image[cyst] = 0.05
            mask |= cyst
    if difficulty.contrast < 1:  # fade each lesion towards what it replaced
        image[mask] = unlesioned[mask] + difficulty.contrast * (image[mask] - unlesioned[mask])

    if style is not None:
        return Phantom(image=_render_like_device(image, ilm, outer, rpe, rng, style), mask=mask, label=label)
    gain = rng.uniform(0.8, 1.15)
    speckle = rng.gamma(shape=4.0, scale=0.25, size=(height, width)).astype(np.float32)
    image = np.clip(image * gain * speckle * 255.0, 0, 255).astype(np.uint8)
    return Phantom(image=image, mask=mask, label=label)


def _speckle(rng: np.random.Generator, shape: tuple[int, int], grain: tuple[float, float], looks: int) -> np.ndarray:
    """Speckle averaged over ``looks`` frames (Spectralis-like devices average B-scans, which
    lowers speckle contrast to about 1/sqrt(looks)): a gamma field with mean 1, its grain set
    by smoothing."""
    field = gaussian_filter(rng.gamma(looks, 1.0 / looks, shape).astype(np.float32), grain)
    return field / field.mean()


def _render_like_device(
    reflectivity: np.ndarray,
    ilm: np.ndarray,
    outer: np.ndarray,
    rpe: np.ndarray,
    rng: np.random.Generator,
    style: PhantomStyle,
) -> np.ndarray:
    """Turn a layer model (log-domain reflectivity, 0-1) into an 8-bit scan as a device shows it."""
    from octattn.data.phantom_style import QUANTILES

    height, width = reflectivity.shape
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    v = reflectivity.copy()
    # Vessel shadows: retinal vessels in the inner retina absorb light, darkening every row below.
    for _ in range(rng.integers(1, 6)):
        col, half = rng.uniform(0, width), rng.uniform(1.5, 5.0)
        profile = np.exp(-(((x - col) / half) ** 2))
        below = y > ilm + 0.2 * (outer - ilm)
        v = np.where(below, v - rng.uniform(0.1, 0.3) * profile, v)
    # Choroidal texture: vertical streaks and lumina under the RPE, fading with depth.
    streaks = gaussian_filter(rng.standard_normal(size=(width,)).astype(np.float32), 1.5)
    streaks /= streaks.std() + 1e-6
    vessels = gaussian_filter(rng.standard_normal(size=(height, width)).astype(np.float32), (3, 5))
    vessels /= vessels.std() + 1e-6
    choroid = y > rpe + 6
    v = np.where(choroid, v * (1 + 0.15 * streaks + 0.1 * vessels), v)
    # A 30 dB linear signal with speckle over a speckled noise floor, then log-compressed.
    grain = (rng.uniform(0.4, 0.7), rng.uniform(0.6, 1.1))  # axial finer than lateral, in pixels
    looks = int(rng.integers(2, 9))
    signal = 10 ** (3 * np.clip(v, 0, 1)) * _speckle(rng, (height, width), grain, looks)
    floor = 10 ** (3 * rng.uniform(0.08, 0.16)) * _speckle(rng, (height, width), grain, looks)
    shown = gaussian_filter(np.log10(signal + floor), 0.5)
    # One real scan's grey levels, matched by rank.
    target = np.asarray(style.quantiles[rng.integers(len(style.quantiles))], dtype=np.float32)
    ranks = np.argsort(np.argsort(shown.ravel())).astype(np.float32) / (shown.size - 1)
    out = np.interp(ranks, QUANTILES, target).reshape(height, width)
    if rng.uniform() < style.wedge_rate:  # the white wedge that registration leaves at an edge
        edge = rng.uniform(0, 0.12) * height + rng.uniform(-0.15, 0.15) * (x - rng.uniform(0, width))
        wedge = y < edge if rng.uniform() < 0.5 else y > height - 1 - edge
        out[wedge] = 255
    return np.clip(out, 0, 255).astype(np.uint8)


def generate_phantoms(
    per_class: int,
    seed: int = 0,
    width: int = 256,
    height: int = 248,
    difficulty: Difficulty = DIFFICULTIES["standard"],
) -> list[Phantom]:
    """``per_class`` phantoms of each class, interleaved by class, from one seed."""
    rng = np.random.default_rng(seed)
    return [
        generate_phantom(label, rng, width, height, difficulty)
        for _ in range(per_class)
        for label in range(len(CLASS_NAMES))
    ]
