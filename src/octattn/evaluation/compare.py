"""Two models on the same test images: McNemar's exact test and paired bootstrap differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from octattn.data.layout import load_samples
from octattn.evaluation.evaluate import predict_samples
from octattn.evaluation.uncertainty import mcnemar_exact, paired_bootstrap_difference
from octattn.inference.predictor import Predictor


def compare_models(
    model_a: str | Path, model_b: str | Path, data: str | Path, split: str = "test", batch_size: int = 32, seed: int = 0
) -> list[str]:
    """The comparison as lines of plain text (also what ``octattn compare`` prints)."""
    samples = load_samples(data, split)
    outputs = []
    for model in (model_a, model_b):
        predictor = Predictor(model)
        samples, logits, _ = predict_samples(predictor, samples, batch_size)  # raises on a bad file
        outputs.append(predictor.probabilities(logits))
    labels = np.array([s.label for s in samples])
    correct_a, correct_b = outputs[0].argmax(1) == labels, outputs[1].argmax(1) == labels
    test = mcnemar_exact(correct_a, correct_b)
    lines = [
        f"{len(samples)} {split} images, {len({s.group for s in samples})} patients; A = {model_a}, B = {model_b}",
        f"accuracy: A {100 * correct_a.mean():.1f}%, B {100 * correct_b.mean():.1f}%",
        f"McNemar exact test: A right where B is wrong on {test['a_only']} image(s), B right where A is wrong "
        f"on {test['b_only']}; p = {test['p_value']:.3g}",
    ]
    groups = [s.group for s in samples]
    lines += [
        d.sentence("A", "B") for d in paired_bootstrap_difference(labels, outputs[0], outputs[1], groups, seed=seed)
    ]
    return lines
