"""Class balance: the paper's tripling of DME and DRUSEN, and a class-weighted sampler.

The paper: "We try to triple the images belong to DME and DRUSEN by rotating 10 degrees
(both left and right) and flipping horizontal." Three operations (rotate left, rotate
right, flip) and a factor of three, so two new copies per image. Our reading: the
original, plus one copy rotated 10 degrees left and one rotated 10 degrees right, each of
the two also flipped horizontally. Every operation the paper names is used, the factor
is exactly three, and each copy differs from the original and from the other copy (a
plain flip alone would be a third copy and a fourth image). Larger factors take further
copies from :data:`COPY_SEQUENCE` (a plain flip, then plain rotations).

The copies are a deterministic expansion of the sample list (``Sample.augment``); no
file is written, the training transform applies them on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import WeightedRandomSampler

from octattn.classes import canonical
from octattn.data.layout import Sample
from octattn.errors import ConfigError

COPY_SEQUENCE: tuple[str, ...] = ("", "rot+10,hflip", "rot-10,hflip", "hflip", "rot+10", "rot-10")
"""Copies in the order they are taken: factor 3 takes the first three."""

PAPER_BALANCED_CLASSES: tuple[str, ...] = ("DME", "DRUSEN")


def expand_classes(
    samples: Sequence[Sample], classes: Sequence[str] = PAPER_BALANCED_CLASSES, factor: int = 3
) -> list[Sample]:
    """Repeat each sample of ``classes`` ``factor`` times as distinct augmented copies.

    Args:
        samples: the training samples.
        classes: class names to expand (the paper: DME and DRUSEN).
        factor: total copies per image, 1 to ``len(COPY_SEQUENCE)``; 1 changes nothing.
    """
    if not 1 <= factor <= len(COPY_SEQUENCE):
        raise ConfigError(f"balance factor must be 1-{len(COPY_SEQUENCE)}, got {factor}")
    names = {canonical(name) for name in classes}
    expanded: list[Sample] = []
    for sample in samples:
        copies = COPY_SEQUENCE[:factor] if sample.class_name in names else ("",)
        expanded.extend(sample.with_augment(augment) for augment in copies)
    return expanded


def inverse_frequency_weights(samples: Sequence[Sample], num_classes: int) -> torch.Tensor:
    """Cross-entropy class weights ``n / (k * n_c)``: each class weighs as much in the loss as
    it would in a balanced set (scikit-learn's ``balanced``); a class with no sample gets 0."""
    counts = torch.bincount(torch.as_tensor([s.label for s in samples], dtype=torch.long), minlength=num_classes)
    present = int((counts > 0).sum())
    weights = torch.zeros(num_classes, dtype=torch.float32)
    weights[counts > 0] = len(samples) / (present * counts[counts > 0].float())
    return weights


def class_weighted_sampler(
    samples: Sequence[Sample], generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """A sampler that draws every class equally often in expectation (1 / class count)."""
    counts: dict[int, int] = {}
    for sample in samples:
        counts[sample.label] = counts.get(sample.label, 0) + 1
    weights = [1.0 / counts[s.label] for s in samples]
    return WeightedRandomSampler(weights, num_samples=len(samples), replacement=True, generator=generator)
