"""Grad-CAM (Selvaraju et al., 2017) for every octattn model, baselines included.

The map is taken at the same place in each network: the input of the last reduction
block (Inception-v4: ``features.18``; Inception-v3: ``Mixed_7a``), 17x17 at 299 px. In
the attention model that tensor already carries the last attention module's output, so
attention and plain networks are compared at one depth. The usual choice, the last block,
is 8x8 at 299 px and a single pixel at the demo's 91 px: too coarse to localise anything.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.inception_v3 import InceptionV3
from torch import nn

from octattn.models.ensemble import explained_network


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose *input* Grad-CAM explains (see the module docstring); an ensemble's
    first member's (its output, the ensemble's, is what the gradient is taken of)."""
    model = explained_network(model)
    if isinstance(model, InceptionV3):
        return model.Mixed_7a
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(f"no Grad-CAM target known for {type(model).__name__}")
    return features[18]


def grad_cam(model: nn.Module, image: torch.Tensor, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM of one prepared image ``(C, H, W)`` at the image's size, in [0, 1].

    Returns the map and the class it explains (the predicted one unless given).
    """
    store: dict[str, torch.Tensor] = {}

    def keep(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        store["activation"] = inputs[0]

    handle = target_layer(model).register_forward_pre_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = image[None].detach().requires_grad_(True)  # ensures a graph under frozen weights
            logits = model(x)
            chosen = int(logits.argmax(1)) if class_index is None else class_index
            # The gradient with respect to the activation only: no parameter gets a .grad
            # (a served model would otherwise carry gradients around between requests).
            (gradient,) = torch.autograd.grad(logits[0, chosen], store["activation"])
    finally:
        handle.remove()
        model.train(was_training)
    activation = store["activation"].detach().float()  # fp32 maps also under bf16 autocast
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach()
    peak = float(cam.max())
    return (cam / peak).cpu().numpy() if peak > 0 else cam.cpu().numpy(), chosen
