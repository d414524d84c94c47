"""BatchNorm statistics re-estimated on a fixed set of images.

Used twice: when training ends (a short from-scratch run's running averages lag its weights;
a cumulative average over fixed images fixes that) and by ``octattn adapt``, which
re-estimates them on unlabeled scans of another device or data set (AdaBN: Li et al.,
"Adaptive Batch Normalization for practical domain adaptation", Pattern Recognition 2018).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def trainable_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose parameters train (frozen layers keep their statistics)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(p.requires_grad for p in m.parameters(False))
    ]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str) -> int:
    """Replace the trainable BatchNorm layers' running statistics by their cumulative average
    over ``batches`` (image tensors); returns the number of images seen. The model is left
    in eval mode; nothing else in it changes."""
    layers = trainable_batchnorms(model)
    if not layers:
        return 0
    model.eval()
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
        layer.train()
    seen = 0
    try:
        for images in batches:
            model(images.to(device))
            seen += len(images)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.eval()
    return seen
