"""Write phantoms as an OCT2017-style tree with their lesion masks beside it.

``OUT/{train,val,test}/CLASS/CLASS-PATIENT-1.png`` and the masks at
``OUT/masks/SPLIT/CLASS/<same name>.png`` (255 = lesion). Every phantom is its own
patient, numbered from the seed, so patient-grouped tools treat phantoms like real data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from octattn.classes import CLASS_NAMES
from octattn.data.phantom import DIFFICULTIES, Difficulty, Phantom, generate_phantom
from octattn.data.phantom_style import PhantomStyle
from octattn.errors import DataError
from octattn.io import atomic_write_text

PhantomGenerator = Callable[[int, np.random.Generator, int, int, Difficulty, PhantomStyle | None], Phantom]
"""Draws one phantom: (label, rng, width, height, difficulty, style) -> :class:`Phantom`."""


def mask_path_for(root: str | Path, image_path: str | Path) -> Path:
    """Where the lesion mask of a phantom written by :func:`write_phantom_tree` lies."""
    image_path = Path(image_path)
    return Path(root) / "masks" / image_path.parent.parent.name / image_path.parent.name / image_path.name


def write_phantom_tree(
    out_dir: str | Path,
    per_class: dict[str, int],
    seed: int = 0,
    size: tuple[int, int] = (256, 248),
    overwrite: bool = False,
    difficulty: str = "standard",
    style: PhantomStyle | None = None,
    generator: PhantomGenerator = generate_phantom,
) -> dict[str, int]:
    """Generate and write phantoms; ``per_class`` maps split name -> images per class.

    ``difficulty`` names a setting of :data:`~octattn.data.phantom.DIFFICULTIES`; a
    ``style`` (:mod:`octattn.data.phantom_style`) renders them like real scans. Returns
    the number of images written per split. ``generator`` draws each phantom (another
    anatomy, :func:`octattn.data.phantom_anatomy.generate_lesion_sized_phantom`).
    """
    if difficulty not in DIFFICULTIES:
        raise DataError(f"unknown phantom difficulty {difficulty!r}; choose from {', '.join(DIFFICULTIES)}")
    out = Path(out_dir)
    if (out / "phantoms.json").exists() and not overwrite:
        raise DataError(f"{out}: phantoms already written here (pass --overwrite to replace them)")
    rng = np.random.default_rng(seed)
    width, height = size
    written = {}
    patient = 1_000_000 + (seed % 1000) * 100_000
    for split, count in per_class.items():
        written[split] = 0
        for _ in range(count):
            for label, name in enumerate(CLASS_NAMES):
                phantom = generator(label, rng, width, height, DIFFICULTIES[difficulty], style)
                patient += 1
                image_path = out / split / name / f"{name}-{patient}-1.png"
                image_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(phantom.image).save(image_path, compress_level=1)
                mask_path = mask_path_for(out, image_path)
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(phantom.mask.astype(np.uint8) * 255).save(mask_path, compress_level=1)
                written[split] += 1
    atomic_write_text(
        out / "phantoms.json",
        json.dumps(
            {
                "seed": seed,
                "size": list(size),
                "per_class": per_class,
                "difficulty": difficulty,
                "style": style.source if style is not None else None,
            }
        ),
    )
    return written
