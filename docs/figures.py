"""Figures of the README that are not screenshots: ``python docs/figures.py``.

``docs/phantoms.png``: one phantom per class (top) beside real oct2017-mini scans of the
same classes (bottom), all at 256x248.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from octattn.classes import CLASS_NAMES
from octattn.data.decode import load_scan
from octattn.data.phantom import generate_phantom

DOCS = Path(__file__).resolve().parent
REAL = DOCS.parent.parent / "shared" / "data" / "oct2017-mini" / "test"


def main() -> None:
    rng = np.random.default_rng(7)
    phantoms = [generate_phantom(label, rng).image for label in range(len(CLASS_NAMES))]
    real = [
        np.asarray(Image.fromarray(load_scan(sorted((REAL / name).iterdir())[0])).resize((256, 248)))
        for name in CLASS_NAMES
    ]
    grid = np.concatenate([np.concatenate(phantoms, axis=1), np.concatenate(real, axis=1)], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3 // 4, grid.shape[0] * 3 // 4)).save(DOCS / "phantoms.png")


if __name__ == "__main__":
    main()
