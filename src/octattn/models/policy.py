"""Which parameters train, at which learning rate: the paper's transfer-learning recipe.

Policies:

* ``"paper"``: the last three Inception-C blocks (``features.19-21``; for Inception-v3
  ``Mixed_7a-c``) train at the backbone learning rate (0.001); the attention modules and
  the new classifier at the new-layer rate (0.1); everything else is frozen.
* ``"last1"``: the paper's ablation, only the last Inception-C block (``features.21``;
  ``Mixed_7c``) of the backbone trains.
* ``"all"``: every parameter trains (training from scratch, or full fine-tuning).

Frozen parameters get ``requires_grad=False``, so autograd computes no weight gradient
for them and stops the backward pass below the first layer that needs one; frozen
BatchNorm layers are held in eval mode by :func:`set_train_mode`, so their running
statistics stay the pretrained ones.

Weight decay (1e-4 in the paper) applies to convolution and linear weights, not to
BatchNorm scales and shifts or biases: decaying those pulls normalised activations
towards zero without regularising the function (the usual practice of timm and
torchvision's references).
"""

from __future__ import annotations

from typing import Any

from timm.models.inception_v3 import InceptionV3
from torch import nn

from octattn.errors import ConfigError

POLICIES: tuple[str, ...] = ("paper", "last1", "all")

_TRAINED_BLOCKS = {
    "inception_v4": {"paper": ("features.19", "features.20", "features.21"), "last1": ("features.21",)},
    "inception_v3": {"paper": ("Mixed_7a", "Mixed_7b", "Mixed_7c"), "last1": ("Mixed_7c",)},
}
_NEW_LAYERS = {"inception_v4": ("attention", "last_linear"), "inception_v3": ("fc",)}


def _family(model: nn.Module) -> str:
    return "inception_v3" if isinstance(model, InceptionV3) else "inception_v4"


def _starts_with_module(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def parameter_roles(model: nn.Module, policy: str) -> dict[str, str]:
    """Map every parameter name to ``"new"``, ``"backbone"`` (trained) or ``"frozen"``."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    family = _family(model)
    new = _NEW_LAYERS[family]
    roles = {}
    for name, _ in model.named_parameters():
        if _starts_with_module(name, new):
            roles[name] = "new"
        elif policy == "all" or _starts_with_module(name, _TRAINED_BLOCKS[family][policy]):
            roles[name] = "backbone"
        else:
            roles[name] = "frozen"
    return roles


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not name.endswith(".bias")


def _in_mask_branch(name: str) -> bool:
    return ".mask_body." in name or ".mask_head." in name


def param_groups(
    model: nn.Module,
    policy: str = "paper",
    lr_backbone: float = 1e-3,
    lr_new: float = 0.1,
    weight_decay: float = 1e-4,
    lr_mask_factor: float = 1.0,
) -> list[dict[str, Any]]:
    """Freeze what ``policy`` freezes and return the optimizer's parameter groups.

    Returns up to four groups (backbone / new x decayed / not decayed), each with
    ``name``, ``params``, ``lr`` and ``weight_decay``; empty groups are left out. With
    ``lr_mask_factor`` other than 1, the attention modules' soft-mask branches get groups of
    their own (``mask``) at ``lr_new * lr_mask_factor``: the lever for masks that learn
    slowly from a near-identity start.
    """
    roles = parameter_roles(model, policy)
    if lr_mask_factor != 1.0:
        roles = {n: "mask" if r == "new" and _in_mask_branch(n) else r for n, r in roles.items()}
    rates = {"backbone": lr_backbone, "new": lr_new, "mask": lr_new * lr_mask_factor}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        role = roles[name]
        param.requires_grad_(role != "frozen")
        if role != "frozen":
            groups.setdefault((role, _decays(name, param)), []).append(param)
    result = []
    for (role, decay), params in sorted(groups.items()):
        result.append(
            {
                "name": f"{role}{'' if decay else '_no_decay'}",
                "params": params,
                "lr": rates[role],
                "weight_decay": weight_decay if decay else 0.0,
            }
        )
    return result


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, but BatchNorm layers with no trainable parameter stay in eval mode."""
    model.train()
    for module in model.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if is_bn and not any(p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()
