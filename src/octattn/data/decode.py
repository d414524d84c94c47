"""Read one scan from disk into an 8-bit grayscale array, or say exactly why not.

The format is detected from the file's content (Pillow's decoders), never from its
extension: real OCT2017 copies hold JPEG data under ``.png`` names. Every mode is turned
into 8-bit gray the same way: 16-bit images are scaled by their own range, colour
images (RGB, RGBA, CMYK, palette) go through ITU-R 601 luma. A decompression-bomb limit
protects the loader and the service from a tiny file that expands to gigapixels.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from octattn.errors import BadImageError

MAX_PIXELS = 64_000_000
"""Largest image accepted (8000x8000); OCT B-scans are at most a few megapixels."""


def _to_gray8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return np.clip((array - low) * scale, 0, 255).astype(np.uint8)
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("P", "PA", "RGBA", "LA"):
        image = image.convert("RGBA").convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def load_scan(path: str | Path, target_size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a scan file into a ``(H, W)`` uint8 array.

    Args:
        path: the image file.
        target_size: ``(width, height)`` the caller will resize to. For JPEGs the decoder
            then decodes directly at a reduced scale (1/2, 1/4, 1/8; never below this
            size), which is several times faster than decoding at full size.
        max_pixels: decompression-bomb limit.

    Raises:
        BadImageError: missing, empty, not an image, truncated, too large or unusable;
            the message names the file and the problem.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(path, f"cannot read ({exc.strerror or exc})") from exc
    if size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    return _decode(path, str(path), target_size, max_pixels)


def decode_bytes(
    data: bytes, name: str = "upload", target_size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """:func:`load_scan` for bytes in memory (an upload); ``name`` is used in messages."""
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, target_size, max_pixels)


def _decode(source: Path | BinaryIO, name: str, target_size: tuple[int, int] | None, max_pixels: int) -> np.ndarray:
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadImageError(name, f"image too large ({width}x{height} > {max_pixels:,} pixels)")
            if target_size is not None and image.format == "JPEG":
                image.draft("L", target_size)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
            gray = _to_gray8(image)
    except BadImageError:
        raise
    except Image.UnidentifiedImageError:
        raise BadImageError(name, "not an image (unrecognised content)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(name, f"image too large ({exc})") from None
    except OSError as exc:
        raise BadImageError(name, f"truncated or corrupt image data ({exc})") from None
    except (ValueError, SyntaxError) as exc:
        raise BadImageError(name, f"corrupt image ({exc})") from None
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise BadImageError(name, f"unusable image shape {gray.shape}")
    return gray


def image_info(path: str | Path) -> tuple[str, str, tuple[int, int]]:
    """(format, mode, (width, height)) read from the header only, for audits."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return str(image.format), image.mode, image.size
    except Image.UnidentifiedImageError:
        raise BadImageError(path, "not an image (unrecognised content)") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot read ({exc})") from None
