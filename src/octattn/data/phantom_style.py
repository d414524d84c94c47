"""What real scans look like, measured, so that phantoms can be made to look the same.

:func:`measure_scan` reads the statistics a classifier sees first in a B-scan: its
grey-level distribution (33 quantiles, without saturated wedge pixels), the noise floor above the retina, the speckle
contrast inside it, where the retina lies and how thick it is (from the brightest row,
the RPE, and the first row that rises half-way to it, the ILM, in each column), and
whether the scan has the saturated white wedges that image registration leaves at its
edges. :func:`learn_style` pools them over a folder of real scans into a
:class:`PhantomStyle` (JSON), which ``generate_phantom(..., style=...)`` draws from: the
retina's place and thickness from the measured ranges, and each phantom's grey levels
matched to one real scan's quantiles. The measured statistics travel; the images never do.

``octattn data style DIR --out style.json`` learns one; :func:`default_style` is the style
learnt from the 100 named OCT2017 training scans of ``oct2017-mini`` (Heidelberg
Spectralis), shipped with the package.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, uniform_filter

from octattn.errors import DataError
from octattn.io import atomic_write_text

QUANTILES = np.linspace(0.0, 1.0, 33)
"""The grey-level quantiles kept per scan (0 = darkest pixel, 1 = brightest)."""

MEASURE_SIZE = (256, 248)
"""Scans are measured at the phantoms' own size (width, height)."""

_DEFAULT_STYLE = Path(__file__).with_name("styles") / "oct2017.json"


@dataclass(frozen=True)
class ScanStats:
    """The statistics of one scan (at :data:`MEASURE_SIZE`)."""

    quantiles: list[float]
    noise_floor: float
    speckle_contrast: float
    retina_top: float
    retina_thickness: float
    wedge: bool


@dataclass(frozen=True)
class PhantomStyle:
    """Targets for realistic phantoms, learnt from real scans by :func:`learn_style`.

    Attributes:
        source: what the style was learnt from (a description, never a path).
        scans: how many scans.
        quantiles: one grey-level quantile vector per scan (phantoms draw one each).
        retina_top: (low, high) of the ILM's depth as a share of the height (10th-90th
            percentile over the scans).
        retina_thickness: (low, high) of the ILM-RPE distance as a share of the height.
        wedge_rate: share of scans with a saturated registration wedge.
        speckle_contrast: median local std/mean in the retina (for comparison).
        noise_floor: median grey level above the retina (for comparison).
    """

    source: str
    scans: int
    quantiles: list[list[float]]
    retina_top: tuple[float, float]
    retina_thickness: tuple[float, float]
    wedge_rate: float
    speckle_contrast: float
    noise_floor: float
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the style as JSON (atomically)."""
        atomic_write_text(Path(path), json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> PhantomStyle:
        """Read a style written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            data["retina_top"] = tuple(data["retina_top"])
            data["retina_thickness"] = tuple(data["retina_thickness"])
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{path}: not a phantom style file ({exc})") from exc


def default_style() -> PhantomStyle:
    """The style learnt from real OCT2017 scans that ships with octattn."""
    return PhantomStyle.load(_DEFAULT_STYLE)


def _retina_rows(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per column: the ILM row and the RPE row of a smoothed scan, and the noise floor."""
    smooth = gaussian_filter(gray.astype(np.float32), (3, 2))
    rpe = smooth.argmax(axis=0)
    floor = float(np.median(smooth[: max(4, gray.shape[0] // 20)]))
    ilm = np.empty_like(rpe)
    for col, bottom in enumerate(rpe):
        half = floor + 0.5 * (smooth[bottom, col] - floor)
        above = np.flatnonzero(smooth[: bottom + 1, col] >= half)
        ilm[col] = above[0] if above.size else bottom
    return ilm, rpe, floor


def measure_scan(gray: np.ndarray) -> ScanStats:
    """The statistics of one 8-bit grey scan (any size; measured at :data:`MEASURE_SIZE`)."""
    if gray.ndim != 2:
        raise ValueError("measure_scan needs a 2-D grey image")
    image = np.asarray(Image.fromarray(gray).resize(MEASURE_SIZE, Image.Resampling.BILINEAR), dtype=np.float32)
    height, width = image.shape
    # Registration wedges are runs of saturated pixels touching the top or bottom edge.
    saturated = image >= 250
    wedge = bool(saturated[:3].mean() > 0.05 or saturated[-3:].mean() > 0.05)
    ilm, rpe, _ = _retina_rows(np.where(saturated, 0, image))
    columns = slice(width // 8, width - width // 8)  # edges hold wedges and roll-off
    top = float(np.median(ilm[columns])) / height
    thickness = float(np.median((rpe - ilm)[columns])) / height
    floor = float(np.median(image[: max(2, int(top * height) - 6)][~saturated[: max(2, int(top * height) - 6)]]))
    # Speckle contrast: local std over local mean in a band just above the RPE.
    mean = uniform_filter(image, 5)
    std = np.sqrt(np.maximum(uniform_filter(image**2, 5) - mean**2, 0))
    rows = np.arange(height)[:, None]
    band = (rows >= ilm[None, :] + 2) & (rows <= rpe[None, :] - 2) & (mean > 1)
    contrast = float(np.median((std / np.maximum(mean, 1))[band])) if band.any() else 0.0
    # The grey levels of the scan itself: wedge pixels are left out (phantoms add their own).
    tissue = image[~saturated] if (~saturated).any() else image.ravel()
    return ScanStats(
        quantiles=[float(q) for q in np.quantile(tissue, QUANTILES)],
        noise_floor=floor,
        speckle_contrast=contrast,
        retina_top=top,
        retina_thickness=thickness,
        wedge=wedge,
    )


def learn_style(paths: list[Path], source: str) -> PhantomStyle:
    """Pool :func:`measure_scan` over real scans into a :class:`PhantomStyle`."""
    from octattn.data.decode import load_scan

    if not paths:
        raise DataError(f"{source}: no scans to learn a phantom style from")
    stats = [measure_scan(load_scan(path)) for path in paths]
    tops = np.array([s.retina_top for s in stats])
    thick = np.array([s.retina_thickness for s in stats])
    return PhantomStyle(
        source=source,
        scans=len(stats),
        quantiles=[[round(q, 2) for q in s.quantiles] for s in stats],
        retina_top=(float(np.percentile(tops, 10)), float(np.percentile(tops, 90))),
        retina_thickness=(float(np.percentile(thick, 10)), float(np.percentile(thick, 90))),
        wedge_rate=float(np.mean([s.wedge for s in stats])),
        speckle_contrast=float(np.median([s.speckle_contrast for s in stats])),
        noise_floor=float(np.median([s.noise_floor for s in stats])),
    )


def style_distance(style: PhantomStyle, stats: list[ScanStats]) -> dict[str, float]:
    """How far scans' statistics lie from a style's: the grey-level quantiles (mean absolute
    difference of the median quantile vectors, in grey levels), speckle contrast, noise
    floor and retina geometry (differences of the medians)."""
    real_q = np.median(np.asarray(style.quantiles), axis=0)
    other_q = np.median(np.asarray([s.quantiles for s in stats]), axis=0)
    mid_top = float(np.mean(style.retina_top))
    mid_thick = float(np.mean(style.retina_thickness))
    return {
        "quantiles": float(np.mean(np.abs(real_q - other_q))),
        "speckle_contrast": abs(style.speckle_contrast - float(np.median([s.speckle_contrast for s in stats]))),
        "noise_floor": abs(style.noise_floor - float(np.median([s.noise_floor for s in stats]))),
        "retina_top": abs(mid_top - float(np.median([s.retina_top for s in stats]))),
        "retina_thickness": abs(mid_thick - float(np.median([s.retina_thickness for s in stats]))),
    }
