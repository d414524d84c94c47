"""What a model costs: parameters and FLOPs at a given input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelCost:
    """Parameter counts and forward FLOPs of one image."""

    name: str
    params: int
    trainable_params: int
    gflops: float
    size: tuple[int, int]

    @property
    def gmacs(self) -> float:
        """Multiply-accumulates, the unit of timm's tables (one MAC = two FLOPs)."""
        return self.gflops / 2


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, or of those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def measure_cost(name: str, model: nn.Module, size: tuple[int, int] = (299, 299), in_chans: int = 1) -> ModelCost:
    """Count parameters and the FLOPs of one forward pass of one image (torch's counter)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_chans, *size))
    model.train(was_training)
    return ModelCost(
        name=name,
        params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        gflops=counter.get_total_flops() / 1e9,
        size=size,
    )
