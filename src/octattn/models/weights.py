"""Pretrained backbone weights: from timm's hub repositories or from a local file.

Weights travel as safetensors only: a pickle (``.pth``, ``.bin``) can execute code when
loaded, so octattn never unpickles what a user hands it. Loading is strict: every
backbone tensor must be present with the right shape; only the new layers (attention
modules, the 4-way classifier) may be missing from the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

from octattn.data.transforms import Preprocess
from octattn.errors import WeightsError


@dataclass(frozen=True)
class PretrainedSource:
    """Where a backbone's ImageNet weights live on the Hugging Face hub, and its layout."""

    hub_repo: str
    first_conv: str
    classifier: str

    @property
    def url(self) -> str:
        """Direct download address of the safetensors file."""
        return f"https://huggingface.co/{self.hub_repo}/resolve/main/model.safetensors"


PRETRAINED_SOURCES: dict[str, PretrainedSource] = {
    "inception_v4": PretrainedSource("timm/inception_v4.tf_in1k", "features.0.conv", "last_linear"),
    "inception_v4_attention": PretrainedSource("timm/inception_v4.tf_in1k", "features.0.conv", "last_linear"),
    "inception_v3": PretrainedSource("timm/inception_v3.tv_in1k", "Conv2d_1a_3x3.conv", "fc"),
}


def preprocess_for(model_name: str, size: int, in_chans: int = 1) -> Preprocess:
    """The input spec a model's pretrained weights expect, read from timm's pretrained config.

    Mean and standard deviation are averaged over the RGB channels: a gray scan fed to the
    folded one-channel filter is the RGB image with three equal channels.
    """
    from timm.models import get_pretrained_cfg

    tag = PRETRAINED_SOURCES[model_name].hub_repo.removeprefix("timm/")
    cfg = get_pretrained_cfg(tag)
    if cfg is None:
        return Preprocess(size=(size, size), in_chans=in_chans)
    return Preprocess(
        size=(size, size),
        in_chans=in_chans,
        mean=float(sum(cfg.mean) / len(cfg.mean)),
        std=float(sum(cfg.std) / len(cfg.std)),
        interpolation=cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bilinear",
    )


NEW_LAYER_PREFIXES = ("attention.",)
"""Parameters that no ImageNet checkpoint holds: they start from their own init."""


def fetch_pretrained(model_name: str) -> Path:
    """The ImageNet weights of a model's backbone: from the hub cache, else downloaded.

    Raises:
        WeightsError: offline or unreachable (said once, without the hub's retries), with
            the file to get and how to pass it.
    """
    from octattn.hub import HubUnavailable, hub_file

    source = PRETRAINED_SOURCES[model_name]
    try:
        return hub_file(
            source.hub_repo,
            "model.safetensors",
            "pretrained weights",
            f"on a machine with internet download {source.url} and pass it with --weights PATH",
        )
    except HubUnavailable as exc:
        raise WeightsError(str(exc)) from exc


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict, with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix != ".safetensors":
        raise WeightsError(
            f"{path}: only .safetensors weights are accepted (pickled checkpoints can run code when loaded)"
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc


def _summarise(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_backbone_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: PretrainedSource,
    origin: str,
) -> None:
    """Load ImageNet backbone weights into ``model``, strictly.

    The input convolution is folded to the model's channel count (timm's
    ``adapt_input_conv``: one channel gets the sum of the RGB filters), and a classifier
    of another width (ImageNet's 1000 classes) is dropped, so the new head keeps its init.

    Raises:
        WeightsError: a backbone tensor is missing, unexpected or of the wrong shape.
    """
    own = model.state_dict()
    state = dict(state_dict)
    conv_key = f"{source.first_conv}.weight"
    if conv_key in state and conv_key in own and state[conv_key].shape[1] != own[conv_key].shape[1]:
        state[conv_key] = adapt_input_conv(own[conv_key].shape[1], state[conv_key])
    for suffix in ("weight", "bias"):
        key = f"{source.classifier}.{suffix}"
        if key in state and key in own and state[key].shape != own[key].shape:
            del state[key]
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    optional = (*NEW_LAYER_PREFIXES, f"{source.classifier}.")
    missing = sorted(
        k for k in own if k not in state and not k.startswith(optional) and not k.endswith("num_batches_tracked")
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_summarise(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_summarise(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} of the wrong shape ({_summarise(mismatched)})")
    if problems:
        raise WeightsError(f"{origin}: does not fit this backbone: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
