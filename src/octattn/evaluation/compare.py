"""Two models on the same test images: McNemar's exact test and paired bootstrap differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from octattn.data.layout import load_samples
from octattn.evaluation.evaluate import predict_samples
from octattn.evaluation.uncertainty import mcnemar_exact, paired_bootstrap_difference
from octattn.inference.predictor import Predictor
from octattn.precision import EVALUATION_PRECISION


def model_display_name(model: str | Path) -> str:
    """What a comparison calls a model: its run folder's name (a bundle in ``RUN/model`` is ``RUN``)."""
    path = Path(str(model).removeprefix("local-dir:").removeprefix("hf-hub:"))
    return path.parent.name if path.name == "model" and path.parent.name else path.name or str(model)


def display_names(model_a: str | Path, model_b: str | Path) -> tuple[str, str]:
    """Two distinct names for a comparison's models (``A: NAME`` / ``B: NAME`` when the folders share one)."""
    name_a, name_b = model_display_name(model_a), model_display_name(model_b)
    if name_a == name_b:
        return f"A: {name_a}", f"B: {name_b}"
    return name_a, name_b


def compare_models(
    model_a: str | Path,
    model_b: str | Path,
    data: str | Path,
    split: str = "test",
    batch_size: int = 32,
    seed: int = 0,
    precision: str = EVALUATION_PRECISION,
) -> list[str]:
    """The comparison as lines of plain text (also what ``octattn compare`` prints), each model
    named by its run folder so a reader never has to remember which is A and which is B."""
    samples = load_samples(data, split)
    outputs = []
    for model in (model_a, model_b):
        predictor = Predictor(model, precision=precision)
        samples, logits, _ = predict_samples(predictor, samples, batch_size)  # raises on a bad file
        outputs.append(predictor.probabilities(logits))
    labels = np.array([s.label for s in samples])
    correct_a, correct_b = outputs[0].argmax(1) == labels, outputs[1].argmax(1) == labels
    test = mcnemar_exact(correct_a, correct_b)
    a, b = display_names(model_a, model_b)
    lines = [
        f"{len(samples)} {split} images, {len({s.group for s in samples})} patients; {a} = {model_a}, {b} = {model_b}; "
        f"arithmetic {predictor.precision}",
        f"accuracy: {a} {100 * correct_a.mean():.1f}%, {b} {100 * correct_b.mean():.1f}%",
        f"McNemar exact test: {a} right where {b} is wrong on {test['a_only']} image(s), {b} right where {a} is "
        f"wrong on {test['b_only']}; p = {test['p_value']:.3g}",
    ]
    groups = [s.group for s in samples]
    lines += [d.sentence(a, b) for d in paired_bootstrap_difference(labels, outputs[0], outputs[1], groups, seed=seed)]
    return lines
