"""Tiny image trees for data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_scan(path: Path, seed: int = 0, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> Path:
    """A small random grayscale image at ``path`` (format by ``fmt``, not by the name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(path, fmt)
    return path


def make_tree(root: Path, layout: dict[str, dict[str, list[str]]]) -> Path:
    """``layout[split][class] = [file names]``; each file gets distinct random content."""
    seed = 0
    for split, classes in layout.items():
        for cls, names in classes.items():
            for name in names:
                seed += 1
                write_scan(root / split / cls / name, seed)
    return root
