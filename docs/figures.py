"""Figures of the README that are not screenshots: ``python docs/figures.py [--study RUN PHANTOMS]``.

``docs/phantoms.png``: one phantom per class (top), the same scans at the ``hard``
difficulty, phantoms rendered in the realistic style learnt from real scans, lesion-sized
phantoms in that style (the real-scan benchmark's part d backbone's), and real oct2017-mini
test scans of the same classes (bottom), all at 256x248.

``docs/attention-study.png`` (with ``--study``): lesion phantoms of the attention study's
test split, each with the true lesion outlined, then the masks after ``features.9``
(channel mean and trunk-weighted) and Grad-CAM of the run's model.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

from octattn.classes import CLASS_NAMES
from octattn.data.decode import load_scan
from octattn.data.layout import load_samples
from octattn.data.phantom import DIFFICULTIES, generate_phantom
from octattn.data.phantom_anatomy import generate_lesion_sized_phantom
from octattn.data.phantom_style import default_style
from octattn.data.synth import mask_path_for

DOCS = Path(__file__).resolve().parent
REAL = DOCS.parent.parent / "shared" / "data" / "oct2017-mini" / "test"


def phantoms_figure() -> None:
    """Standard, hard, realistic and lesion-sized phantoms beside real scans."""
    rows = []
    for difficulty in ("standard", "hard"):
        rng = np.random.default_rng(7)
        rows.append([generate_phantom(label, rng, difficulty=DIFFICULTIES[difficulty]).image for label in range(4)])
    rng = np.random.default_rng(7)
    rows.append([generate_phantom(label, rng, style=default_style()).image for label in range(4)])
    rng = np.random.default_rng(7)
    rows.append([generate_lesion_sized_phantom(label, rng, style=default_style()).image for label in range(4)])
    rows.append(
        [
            np.asarray(Image.fromarray(load_scan(sorted((REAL / name).iterdir())[0])).resize((256, 248)))
            for name in CLASS_NAMES
        ]
    )
    grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3 // 4, grid.shape[0] * 3 // 4)).save(DOCS / "phantoms.png")


def study_figure(run: Path, phantoms: Path, per_class: int = 2) -> None:
    """Masks and Grad-CAM of a study run over lesion phantoms, the true lesion outlined."""
    from octattn.explain.attention import display_map
    from octattn.explain.render import overlay
    from octattn.explain.run import saliency_maps
    from octattn.inference.predictor import Predictor
    from octattn.reporting.plots import image_grid

    predictor = Predictor(run)
    samples = [s for s in load_samples(phantoms, "test") if s.class_name != "NORMAL"]
    chosen = [s for name in ("CNV", "DME", "DRUSEN") for s in [x for x in samples if x.class_name == name][:per_class]]
    images, captions = [], []
    for sample in chosen:
        gray = load_scan(sample.path)
        lesion = load_scan(mask_path_for(phantoms, sample.path)) > 127
        outline = lesion & ~binary_erosion(lesion, iterations=1)
        maps = saliency_maps(predictor, gray)
        shown = gray.copy()
        shown[outline] = 255
        images.append(np.repeat(shown[..., None], 3, axis=2))
        captions.append(f"{sample.class_name} (lesion outlined)")
        for name in ("attention_after_9", "attention_after_9_weighted", "gradcam"):
            painted = overlay(gray, display_map(maps[name]))
            painted[outline] = (255, 255, 255)
            images.append(painted)
            captions.append(name.removeprefix("attention_"))
    # Speckle compresses badly: a 256-colour palette keeps the README's figure under 1 MiB
    grid = Image.open(io.BytesIO(image_grid(images, captions, columns=4))).convert("RGB")
    grid.quantize(colors=256).save(DOCS / "attention-study.png", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", nargs=2, metavar=("RUN", "PHANTOMS"), help="also draw a study run's masks")
    args = parser.parse_args()
    phantoms_figure()
    if args.study:
        study_figure(Path(args.study[0]), Path(args.study[1]))


if __name__ == "__main__":
    main()
