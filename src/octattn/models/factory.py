"""``create_model``: every network octattn trains, by name, with optional pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn

import octattn.models.inception  # noqa: F401  (registers inception_v4_attention with timm)
from octattn.classes import NUM_CLASSES
from octattn.errors import ConfigError
from octattn.models.weights import (
    PRETRAINED_SOURCES,
    fetch_pretrained,
    load_backbone_weights,
    read_safetensors,
)

MODEL_NAMES: tuple[str, ...] = ("inception_v4_attention", "inception_v4", "inception_v3")
"""The paper's model first, then its two baselines (Inception-v4; Kermany et al.'s v3)."""

DEFAULT_IN_CHANS = 1
"""OCT B-scans are grayscale: one input channel carries all the information, costs a
third of the first convolution's input, and timm folds the pretrained RGB filters into it
(their sum), which on a gray image computes exactly what the RGB network would."""


def create_model(
    name: str = "inception_v4_attention",
    num_classes: int = NUM_CLASSES,
    in_chans: int = DEFAULT_IN_CHANS,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name, optionally with ImageNet backbone weights.

    Args:
        name: one of :data:`MODEL_NAMES`.
        num_classes: width of the new classifier.
        in_chans: 1 (grayscale, default) or 3.
        pretrained: fetch timm's ImageNet weights from the Hugging Face hub.
        weights: a local ``.safetensors`` file with those weights (no network needed);
            takes precedence over ``pretrained``.
        **kwargs: passed to the architecture (``placement``, ``attention_init``, ``p``,
            ``t``, ``r``, ``drop_rate`` for the attention model).

    Raises:
        ConfigError: unknown name. WeightsError: weights missing, unreadable or unfit.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3, got {in_chans}")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if weights is not None or pretrained:
        path = Path(weights) if weights is not None else fetch_pretrained(name)
        load_backbone_weights(model, read_safetensors(path), PRETRAINED_SOURCES[name], str(path))
    return model
