"""Heat maps over scans, as RGB images for PNG files and the service."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) over a uint8 gray scan -> uint8 RGB."""
    if heat.shape != gray.shape:
        raise ValueError(f"heat map {heat.shape} and scan {gray.shape} differ in shape")
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    base = np.repeat((gray.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    return np.clip(255 * ((1 - alpha) * base + alpha * colours), 0, 255).astype(np.uint8)


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``shape`` = (height, width)."""
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB (or gray) uint8 array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
