"""``octattn explain`` and ``octattn explain-eval``: saliency maps to files, and their scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from octattn.classes import CLASS_NAMES
from octattn.data.decode import load_scan
from octattn.data.layout import load_samples
from octattn.data.synth import mask_path_for
from octattn.errors import BadImageError, OctattnError
from octattn.explain.attention import contrast, display_map, summarised_masks
from octattn.explain.gradcam import grad_cam, target_layer
from octattn.explain.localisation import POINTING_TOLERANCE, LocalisationScore, score_map, summarise
from octattn.explain.render import overlay, png_bytes, resize_map
from octattn.inference.predictor import Predictor
from octattn.io import atomic_write_bytes
from octattn.models.ensemble import explained_network
from octattn.models.inception import InceptionV4Attention
from octattn.progress import progress

DISPLAY_SIZE = (512, 496)  # (width, height): the commonest OCT2017 scan size


def saliency_maps(predictor: Predictor, gray: np.ndarray) -> dict[str, np.ndarray]:
    """Every map of one scan at the scan's size: ``attention_after_<block>`` (channel mean),
    ``attention_after_<block>_weighted`` (trunk-energy weighted) and ``gradcam``."""
    maps = {}
    for name, summaries in summarised_masks(predictor, gray).items():
        maps[f"attention_{name}"] = summaries["mean"]
        maps[f"attention_{name}_weighted"] = summaries["weighted"]
    with predictor.autocast():
        cam, _ = grad_cam(predictor.model, predictor.prepare(gray).to(predictor.device))
    maps["gradcam"] = resize_map(cam, gray.shape)  # computed at the model's input size
    return maps


def map_cells(predictor: Predictor, shape: tuple[int, int]) -> dict[str, float]:
    """The size, in pixels of a scan of ``shape``, of one cell of each map's own grid: the
    attention masks' and Grad-CAM's resolution at the model's input size (one probe pass)."""
    height, width = predictor.config.preprocess.size
    model = predictor.model
    seen: dict[str, tuple[int, ...]] = {}
    hook = target_layer(model).register_forward_pre_hook(lambda _m, i: seen.__setitem__("gradcam", i[0].shape[-2:]))
    try:
        with torch.no_grad():
            model(predictor.prepare(np.zeros((height, width), dtype=np.uint8))[None].to(predictor.device))
    finally:
        hook.remove()
    network = explained_network(model)
    if isinstance(network, InceptionV4Attention):
        for name, mask in network.attention_masks().items():
            seen[f"attention_{name}"] = seen[f"attention_{name}_weighted"] = tuple(mask.shape[-2:])
    return {name: max(shape[0] / grid[0], shape[1] / grid[1]) for name, grid in seen.items()}


def explain_images(
    model_path: str | Path, paths: Sequence[str | Path], out_dir: str | Path, precision: str = "fp32"
) -> tuple[list[tuple[Path, float]], list[BadImageError]]:
    """Write ``<stem>_<map>.png`` overlays for each image, each map on its fixed 0-1 scale;
    returns each file with its map's contrast, and the unreadable images."""
    predictor = Predictor(model_path, precision=precision)
    out = Path(out_dir)
    written: list[tuple[Path, float]] = []
    failures: list[BadImageError] = []
    for path in paths:
        try:
            gray = load_scan(path, DISPLAY_SIZE)
        except BadImageError as exc:
            failures.append(exc)
            continue
        prediction = predictor.predict_arrays([gray], [str(path)])[0]
        for name, values in saliency_maps(predictor, gray).items():
            target = out / f"{Path(path).stem}_{prediction.label}_{name}.png"
            atomic_write_bytes(target, png_bytes(overlay(gray, display_map(values))))
            written.append((target, contrast(values)))
    return written, failures


def explain_eval(
    model_path: str | Path, phantom_dir: str | Path, split: str = "test", limit: int = 0
) -> dict[str, Any]:
    """Localisation scores of every map over the lesion phantoms of ``split``.

    Returns per map: the pointing-game hit rate, the energy inside the lesion and its
    chance level, over the DRUSEN, DME and CNV phantoms (NORMAL has no lesion).
    """
    predictor = Predictor(model_path)
    samples = [s for s in load_samples(phantom_dir, split) if s.class_name != "NORMAL"]
    if limit:
        samples = samples[:limit]
    scores: dict[str, list[LocalisationScore]] = {}
    per_class: dict[str, dict[str, list[LocalisationScore]]] = {}
    for sample in progress(samples, desc="scoring maps"):
        mask_file = mask_path_for(phantom_dir, sample.path)
        if not mask_file.exists():
            raise OctattnError(f"{mask_file}: no lesion mask (explain-eval needs phantoms from `octattn data synth`)")
        gray = load_scan(sample.path)
        lesion = load_scan(mask_file) > 127
        cells = map_cells(predictor, gray.shape)
        for name, values in saliency_maps(predictor, gray).items():
            # a tolerance of at least one cell of the map: a coarser map cannot point finer
            score = score_map(values, lesion, max(POINTING_TOLERANCE, cells[name]))
            scores.setdefault(name, []).append(score)
            per_class.setdefault(name, {}).setdefault(sample.class_name, []).append(score)
    return {
        "split": split,
        "images": len(samples),
        "tolerance_px": {name: max(POINTING_TOLERANCE, cell) for name, cell in map_cells(predictor, gray.shape).items()}
        if samples
        else {},
        "maps": {name: summarise(values) for name, values in scores.items()},
        "per_class": {
            name: {c: summarise(v) for c, v in classes.items() if c in CLASS_NAMES}
            for name, classes in per_class.items()
        },
    }


def format_explain_eval(result: dict[str, Any]) -> str:
    """A table of the localisation scores."""
    lines = [
        f"{result['images']} lesion phantoms ({result['split']} split)",
        f"{'map':<28}{'pointing hits':>14}{'chance':>8}{'energy inside':>15}{'chance':>8}{'tolerance':>11}",
    ]
    for name, row in result["maps"].items():
        lines.append(
            f"{name:<28}{100 * row['pointing_hit_rate']:>13.1f}%{100 * row.get('pointing_chance', float('nan')):>7.1f}%"
            f"{100 * row['energy_inside']:>14.1f}%{100 * row['chance']:>7.1f}%"
            f"{result.get('tolerance_px', {}).get(name, POINTING_TOLERANCE):>9.0f}px"
        )
    return "\n".join(lines)
