"""The anatomy of a realistic phantom: lesions drawn at the sizes real OCT2017 scans show them.

The standard phantom (:mod:`octattn.data.phantom`) draws each class's lesion large and alone,
so that a model can learn it at 107 px; a model trained on those learns a cartoon and finds
none of it in real scans. Here, measured by eye on the Spectralis scans of ``oct2017-mini``
at the phantoms' 256x248:

* DRUSEN: 2-9 small RPE elevations, 3-12 pixels high and 8-28 wide, spread over the scan,
  their material moderately reflective under a bright RPE; the fovea otherwise normal;
* DME: a broad thickening, 2-12 dark intraretinal cysts of 2-9 pixels in the nuclear
  layers near the fovea, sometimes a lens of subretinal fluid and bright foci;
* CNV: an irregular, serrated elevation of the RPE (a fibrovascular detachment, 6-26
  pixels high) with heterogeneous material inside and a shadow below it, usually
  subretinal fluid over it, sometimes intraretinal cysts;
* NORMAL: none.

Nuisances every class shares, so that none of them tells a class: the fovea's pit (absent
where the scan misses the fovea), a detached posterior hyaloid in the vitreous, tilt and
either bowing, the choroid's bright band with dark vessel lumina. :func:`realistic_layers`
returns the reflectivity (0-1, log domain) and the layer rows; the device rendering (speckle,
noise floor, grey levels, wedges) is :func:`octattn.data.phantom._render_like_device`;
:func:`generate_lesion_sized_phantom` does both, for ``write_phantom_tree(generator=...)``.

An experiment, not the default: ``benchmarks/phantom_zero_shot.py`` measures whether a model
trained on these alone does better on real scans than one trained on the shipped realistic
phantoms (docs: real-scans.md, "Phantom-only probes").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

from octattn.classes import CLASS_NAMES
from octattn.data.phantom import DIFFICULTIES, Difficulty, Phantom, _render_like_device

if TYPE_CHECKING:
    from octattn.data.phantom_style import PhantomStyle

# Reflectivity against normalised depth (0 = ILM, 1 = top of the photoreceptor complex):
# NFL bright, GCL, IPL, INL dark, OPL, ONL dark (thick), ELM.
_DEPTH = np.array([0.0, 0.07, 0.13, 0.24, 0.31, 0.42, 0.49, 0.56, 0.9, 0.95, 1.0])
_VALUE = np.array([0.8, 0.62, 0.45, 0.55, 0.3, 0.32, 0.52, 0.2, 0.18, 0.3, 0.28])


def _bump(x: np.ndarray, centre: float, half_width: float, height: float) -> np.ndarray:
    t = np.clip(1 - ((x - centre) / half_width) ** 2, 0, None)
    return height * t**0.7


def _ellipses(shape: tuple[int, int], centres: list[tuple[float, float, float, float]]) -> np.ndarray:
    y, x = np.ogrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=bool)
    for cy, cx, ry, rx in centres:
        out |= ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
    return out


def realistic_layers(
    label: int, rng: np.random.Generator, width: int, height: int, difficulty: Difficulty, style: PhantomStyle
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One realistic phantom before rendering: (reflectivity, ilm, outer, rpe, mask), the
    rows per column of the inner limiting membrane, the bottom of the neurosensory retina
    and the Bruch's membrane line (the RPE's floor, before any elevation)."""
    name = CLASS_NAMES[label]
    sy, sx = height / 248.0, width / 256.0
    k = difficulty.lesion_scale
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    cx = width * rng.uniform(0.3, 0.7)

    thick = rng.uniform(max(0.09, style.retina_thickness[0]), max(0.15, style.retina_thickness[1]))
    bruch_depth = rng.uniform(*style.retina_top) + thick
    curvature = rng.uniform(-1.4, 0.6) * 1e-3 / sx
    tilt = rng.uniform(-0.2, 0.2)
    bruch = height * bruch_depth + curvature * (x - cx) ** 2 + tilt * (x - cx)
    thickness = height * thick * (1 + 0.15 * np.abs(x - cx) / width)  # thicker away from the fovea
    has_pit = rng.uniform() < 0.85
    pit = has_pit * rng.uniform(0.35, 0.75) * np.exp(-(((x - cx) / (width * rng.uniform(0.035, 0.08))) ** 2))
    rpe_lift = np.zeros_like(x)  # the RPE pushed up (drusen, a fibrovascular detachment)
    fluid_h = np.zeros_like(x)  # subretinal fluid between the RPE and the photoreceptors
    cysts: list[tuple[float, float, float, float]] = []
    foci = 0
    lumpy = None
    shadow = np.zeros_like(x)

    if name == "DRUSEN":
        for _ in range(rng.integers(2, 10)):
            centre = cx + rng.uniform(-0.4, 0.4) * width
            rpe_lift = np.maximum(rpe_lift, _bump(x, centre, rng.uniform(4, 14) * sx, rng.uniform(3, 12) * sy * k))
    elif name == "DME":
        thickness = thickness + _bump(
            x, cx + rng.uniform(-15, 15) * sx, width * rng.uniform(0.12, 0.3), height * rng.uniform(0.02, 0.1) * k
        )
        pit = pit * rng.uniform(0.0, 0.6)
        for _ in range(rng.integers(2, 13)):
            cysts.append((rng.uniform(0.25, 0.75), cx + rng.uniform(-0.2, 0.2) * width, *rng.uniform(2, 9, 2) * k))
        if rng.uniform() < 0.3:
            fluid_h = _bump(x, cx + rng.uniform(-10, 10) * sx, rng.uniform(15, 35) * sx, rng.uniform(3, 10) * sy * k)
        foci = int(rng.integers(0, 12))
    elif name == "CNV":
        centre = cx + rng.uniform(-0.15, 0.15) * width
        half = rng.uniform(15, 45) * sx * k
        wobble = gaussian_filter(rng.standard_normal(width).astype(np.float32), rng.uniform(1.5, 4) * sx)
        serration = np.clip(1 + rng.uniform(0.15, 0.4) * wobble / (wobble.std() + 1e-6), 0.3, None)
        rpe_lift = _bump(x, centre, half, rng.uniform(6, 26) * sy * k) * serration
        lumpy = rng.uniform(0.45, 0.8)
        shadow = 0.6 * np.clip(rpe_lift / (26 * sy), 0, 1)
        if rng.uniform() < 0.75:
            fluid_h = _bump(
                x, centre + rng.uniform(-10, 10) * sx, half * rng.uniform(0.8, 1.5), rng.uniform(4, 16) * sy
            )
        if rng.uniform() < 0.4:
            for _ in range(rng.integers(1, 6)):
                cysts.append((rng.uniform(0.3, 0.8), centre + rng.uniform(-1, 1) * half, *rng.uniform(2, 7, 2) * k))
        pit = pit * rng.uniform(0.0, 0.5)
        thickness = thickness * rng.uniform(1.0, 1.4)

    rpe_top = bruch - 4 * sy - rpe_lift  # the RPE band is about 4 pixels
    outer = rpe_top - 5 * sy - fluid_h  # the photoreceptor complex over the RPE, then the fluid
    ilm = outer - thickness * (1 - pit) + 0.4 * rpe_lift
    depth = (y - ilm) / np.maximum(outer - ilm, 1.0)

    v = np.full((height, width), 0.04, dtype=np.float32)  # vitreous
    retina = (depth >= 0) & (depth < 1)
    v[retina] = np.interp(depth[retina], _DEPTH, _VALUE).astype(np.float32)
    ellipsoid = (y >= outer + fluid_h) & (y < rpe_top)  # photoreceptor line and interdigitation
    v[ellipsoid] = 0.75 - 0.35 * ((y - outer - fluid_h) / (5 * sy)).__abs__()[ellipsoid].clip(0, 1)
    v[(y >= outer) & (y < outer + fluid_h) & (fluid_h[None, :] > 0.5)] = 0.06
    rpe_band = (y >= rpe_top) & (y < rpe_top + 4 * sy)
    v[rpe_band] = rng.uniform(0.85, 0.95)
    below = y >= np.maximum(rpe_top + 4 * sy, bruch)
    # Choroid: a bright band under Bruch's membrane with dark vessel lumina, fading with depth.
    decay = height * rng.uniform(0.1, 0.2)
    lumina = gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), (2.5 * sy, 3.5 * sx))
    lumina = (lumina > 0.5 * lumina.std()).astype(np.float32)
    choroid = (rng.uniform(0.5, 0.65) - 0.25 * lumina * (y > bruch + 6 * sy)) * np.exp(-(y - bruch) / decay)
    choroid = choroid * (1 - shadow[None, :])
    v = np.where(below, choroid, v)
    mask = np.zeros((height, width), dtype=bool)
    if rpe_lift.max() > 1:  # drusen or fibrovascular material between the raised RPE and Bruch's
        material = (y >= rpe_top + 4 * sy) & (y < bruch) & (rpe_lift > 1)
        texture = gaussian_filter(rng.uniform(size=(height, width)).astype(np.float32), 1.5)
        base = lumpy if lumpy is not None else rng.uniform(0.45, 0.65)
        v[material] = (base + 0.4 * (texture - texture.mean()))[material]
        mask |= material
    if fluid_h.max() > 0.5:
        mask |= (y >= outer) & (y < outer + fluid_h) & (fluid_h > 0.5)
    if cysts:
        rows = [(ilm[int(np.clip(c, 0, width - 1))], outer[int(np.clip(c, 0, width - 1))]) for _, c, _, _ in cysts]
        cyst = _ellipses(
            (height, width),
            [
                (top + d * (bottom - top), c, ry * sy, rx * sx)
                for (d, c, ry, rx), (top, bottom) in zip(cysts, rows, strict=True)
            ],
        )
        cyst &= retina
        v[cyst] = 0.05
        mask |= cyst
    if foci:  # hyper-reflective foci: small bright dots in the retina
        dots = [(rng.uniform(0.2, 0.9), cx + rng.uniform(-0.25, 0.25) * width, 1.2 * sy, 1.2 * sx) for _ in range(foci)]
        spots = _ellipses(
            (height, width),
            [(ilm[int(np.clip(c, 0, width - 1))] + d * thickness[0], c, ry, rx) for d, c, ry, rx in dots],
        )
        v[spots & retina] = 0.85
    if difficulty.contrast < 1:
        v[mask] = v[mask] * difficulty.contrast + (1 - difficulty.contrast) * 0.35
    if rng.uniform() < 0.4:  # a detached posterior hyaloid: a thin bright curve in the vitreous
        line = ilm - rng.uniform(8, 50) * sy + rng.uniform(-3, 3) * 1e-3 * (x - rng.uniform(0, width)) ** 2 / sx
        start, stop = sorted(rng.uniform(0, width, 2))
        on = (np.abs(y - line) < 0.8 * sy) & (x >= start) & (x <= stop) & (y < ilm - 2 * sy)
        v[on] = rng.uniform(0.35, 0.6)
    return v, ilm, outer, bruch, mask


def generate_lesion_sized_phantom(
    label: int,
    rng: np.random.Generator,
    width: int = 256,
    height: int = 248,
    difficulty: Difficulty = DIFFICULTIES["standard"],
    style: PhantomStyle | None = None,
) -> Phantom:
    """One phantom of :func:`realistic_layers`' anatomy, rendered in ``style`` as
    :func:`octattn.data.phantom.generate_phantom` renders its realistic ones (a
    :data:`octattn.data.synth.PhantomGenerator`).

    Raises:
        ValueError: no ``style``: this anatomy is only drawn the way a device shows it.
    """
    if style is None:
        raise ValueError("lesion-sized phantoms need a style (octattn.data.phantom_style.default_style())")
    v, ilm, outer, bruch, mask = realistic_layers(label, rng, width, height, difficulty, style)
    return Phantom(image=_render_like_device(v, ilm, outer, bruch, rng, style), mask=mask, label=label)
