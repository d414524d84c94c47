"""Cheap checks that come before the model: images that cannot be OCT B-scans, and why.

A B-scan is gray (colour files of OCT have three equal channels), has structure, and is at
most a few times wider than high (OCT2017: up to 1536x496; OCTDL: up to 1101x410). Each
check says what it found in words; the first that fires marks the image as unlike the
training data, before any model is run.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLOUR_SPREAD = 8.0
"""Mean spread between an image's colour channels (gray levels) above which it is colour."""
FLAT_STD = 2.0
"""Standard deviation (gray levels) below which an image is constant."""
ASPECT_RANGE = (0.3, 5.0)
"""Width / height outside which no B-scan falls."""
THUMBNAIL = (96, 96)


def colour_spread(source: str | Path | bytes) -> float:
    """Mean over pixels of the largest difference between colour channels (0 for gray)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(handle) as image:
            if image.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "1"):
                return 0.0
            image.draft("RGB", THUMBNAIL)
            image.thumbnail(THUMBNAIL)
            rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    except (OSError, ValueError):
        return 0.0  # the decoder reports unreadable files; this check only looks at colour
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def cheap_finding(gray: np.ndarray, source: str | Path | bytes | None = None) -> str | None:
    """What makes this image unlike any B-scan, in words, or None when nothing does."""
    height, width = gray.shape
    aspect = width / height
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        low, high = ASPECT_RANGE
        return f"an extreme aspect ratio ({width}x{height}); B-scans are {low}-{high}x as wide as high"
    if float(gray.std()) < FLAT_STD:
        return f"a constant image (gray level {float(gray.mean()):.0f} everywhere)"
    if source is not None:
        spread = colour_spread(source)
        if spread > COLOUR_SPREAD:
            return f"a colour image (its channels differ by {spread:.0f} gray levels on average); B-scans are gray"
    return None
