"""Several trained networks as one model: the mean of their calibrated probabilities.

A seed ensemble (the same recipe trained from different seeds) is the cheapest accuracy a
small data set gives: on the 307 real OCT2017 scans two seeds of plain Inception-v4 are
several points above either alone (``benchmarks/real_scans.py``). :class:`ProbabilityEnsemble`
is that model as one ``nn.Module``, so predict, evaluate, serve and the ONNX export run it
like any other: each member's logits go through its own calibration (temperature, then its
class-prior correction), the probabilities are averaged, and the output is their logarithm,
so that a softmax of the output gives the averaged probabilities back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PROBABILITY_FLOOR = 1e-12
"""Clamp before the logarithm: a probability of exactly 0 would give -inf logits."""


class ProbabilityEnsemble(nn.Module):
    """Members' calibrated probabilities, averaged; returned as log-probabilities.

    Args:
        members: networks with the same classes and input (checked by the bundle loader).
        temperatures: each member's calibration temperature.
        biases: each member's class-prior correction, added after the temperature (``None``
            or an empty list: none).
    """

    temperatures: torch.Tensor  # buffers (M, 1, 1) and (M, 1, K), declared for type checkers
    biases: torch.Tensor

    def __init__(
        self,
        members: Sequence[nn.Module],
        temperatures: Sequence[float],
        biases: Sequence[Sequence[float] | None],
    ) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        if not len(members) == len(temperatures) == len(biases):
            raise ValueError("one temperature and one bias per member")
        self.members = nn.ModuleList(members)
        self.num_classes = int(getattr(members[0], "num_classes", 0))
        self.in_chans = int(getattr(members[0], "in_chans", 1))
        # The detector and Grad-CAM read the first member's stages (its features are exact).
        self.feature_info = getattr(members[0], "feature_info", None)
        width = self.num_classes
        rows = [list(b) if b else [0.0] * width for b in biases]
        self.register_buffer("temperatures", torch.tensor([float(t) for t in temperatures]).view(-1, 1, 1))
        self.register_buffer("biases", torch.tensor(rows, dtype=torch.float32).unsqueeze(1))

    def combine(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each member's logits ``(N, K)`` -> the log of their mean calibrated probability."""
        stacked = torch.stack([x.float() for x in logits])  # (M, N, K)
        probs = torch.softmax(stacked / self.temperatures + self.biases, dim=-1).mean(dim=0)
        return torch.log(probs.clamp_min(PROBABILITY_FLOOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean calibrated probability, ``(N, K)``."""
        return self.combine([member(x) for member in self.members])

    @property
    def first(self) -> nn.Module:
        """The member whose stages the detector reads and whose maps ``explain`` shows."""
        return self.members[0]


def explained_network(model: nn.Module) -> nn.Module:
    """The network whose internals (attention masks, Grad-CAM layer, stages) stand for
    ``model``: itself, or an ensemble's first member."""
    return model.first if isinstance(model, ProbabilityEnsemble) else model
