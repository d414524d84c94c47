"""Residual attention (Wang et al., 2017) as the paper mixes it into Inception-v4.

A module splits into a *trunk* ``T(x)`` of residual units and a *soft mask* ``M(x)`` in
(0, 1) computed by an hourglass (max-pool down, residual units, bilinear up), and outputs
``(1 + M(x)) * T(x)``: the mask can only enhance trunk features, never erase them, which
is what keeps a stack of such modules trainable.

Inception feature maps are odd-sized (35, 17 at 299 px; 7, 3 at 75 px), so every
up-sampling goes to the exact size of the tensor it meets rather than to a size fixed
in advance: the module works for any input the backbone accepts.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

InitMode = Literal["identity", "gentle", "he"]
INIT_MODES: tuple[str, ...] = ("identity", "gentle", "he")

MASK_INIT_BIAS = {"identity": -4.0, "gentle": -2.0}
"""Initial logit of the soft mask under the near-identity starts. ``identity``:
sigmoid(-4) = 0.018, so ``(1 + M)`` starts uniform at 1.018 while the sigmoid passes 1.8%
of its gradient. ``gentle``: sigmoid(-2) = 0.119, a uniform gain of 1.119 with 10.5% of
the gradient passed (5.9 times as much)."""


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1 (C/4), BN-ReLU-3x3, BN-ReLU-1x1 (C).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output; defaults to ``in_channels``.
        stride: stride of the 3x3 convolution.

    The shortcut is the identity unless the shape changes, then a strided 1x1
    projection of the pre-activated input (as in He et al.'s pre-activation ResNet).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        mid = max(out_channels // 4, 1)
        self.pre_act = _bn_relu(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.act1 = _bn_relu(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.act2 = _bn_relu(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_act(x)
        # The projection sees the pre-activated input; the identity sees the raw input.
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(pre)
        out = self.conv3(self.act2(self.conv2(self.act1(self.conv1(pre)))))
        return out + skip


def _units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualUnit(channels) for _ in range(count)])


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear up-sampling of ``x`` to the exact spatial size of ``like``."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SoftMaskHourglass(nn.Module):
    """The soft-mask branch's body: ``levels`` nested max-pool / residual / up-sample steps.

    One level: max-pool (3x3, stride 2), ``r`` units, and at the deepest level another
    ``r`` units (Wang et al. give the deepest level 2r), then bilinear up-sampling back to
    the input's exact size. Two levels nest a one-level hourglass inside, with a residual
    skip unit at the outer level that is added to the inner level's up-sampled output.

    Args:
        channels: channels throughout (the mask keeps the trunk's width).
        levels: number of down-sampling levels (the module's *order*).
        r: residual units per step.
    """

    def __init__(self, channels: int, levels: int, r: int = 1) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"an hourglass needs at least one level, got {levels}")
        self.down = _units(channels, r)
        self.inner: SoftMaskHourglass | None = None
        self.skip: nn.Module | None = None
        if levels > 1:
            self.inner = SoftMaskHourglass(channels, levels - 1, r)
            self.skip = ResidualUnit(channels)
        self.up = _units(channels, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(F.max_pool2d(x, kernel_size=3, stride=2, padding=1))
        if self.inner is not None and self.skip is not None:
            y = self.inner(y) + self.skip(y)
        return upsample_to(self.up(y), x)


def _fx_tracing() -> bool:
    """Whether torch.fx is tracing (the mask would be a proxy, not a tensor)."""
    tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing", torch.fx._symbolic_trace.is_fx_tracing)
    return bool(tracing())


class AttentionModule(nn.Module):
    """Residual attention module of order 1 or 2 (Wang et al. 2017; Shang et al. Fig. 3).

    ``p`` units, then a trunk of ``t`` units beside a soft-mask hourglass with ``order``
    levels and a BN-ReLU-1x1-BN-ReLU-1x1-sigmoid head; output ``(1 + M) * T``; then ``p``
    units. The spatial size and channels of the input are kept.

    Args:
        channels: channels of the feature map the module is applied to.
        order: 1 (one down-sampling level) or 2 (two levels, order 1 nested inside).
        p: residual units before the split and after the merge.
        t: residual units in the trunk.
        r: residual units per hourglass step.
        init: ``"identity"`` starts the module as (nearly) the identity, so a pretrained
            backbone keeps its function at step 0: the last convolution of every residual
            unit is zeroed (the unit starts as its shortcut) and the mask head's last
            convolution is zeroed with bias :data:`MASK_INIT_BIAS`, making ``1 + M`` a
            uniform 1.018. ``"gentle"`` is the same with bias -2 (``1 + M`` = 1.119).
            ``"he"`` is the plain He (Kaiming) initialisation the paper uses.
        use_mask: ``False`` is an ablation, not the paper's module: the output is
            ``post(T)``, the trunk's residual units alone (the mask branch is built but not
            run, so it gets no gradient). It separates what the masks add from what the
            modules' extra trainable units add.

    The mask of the last forward pass is kept in :attr:`last_mask` (detached, trunk-sized)
    so explanations read it without a second pass (in eager mode; not under torch.compile
    or ONNX export, which must not trace a side effect).
    """

    def __init__(
        self,
        channels: int,
        order: int = 1,
        p: int = 1,
        t: int = 2,
        r: int = 1,
        init: InitMode = "identity",
        use_mask: bool = True,
    ) -> None:
        super().__init__()
        self.use_mask = use_mask
        if order not in (1, 2):
            raise ValueError(f"attention order must be 1 or 2, got {order}")
        self.order = order
        self.pre = _units(channels, p)
        self.trunk = _units(channels, t)
        self.mask_body = SoftMaskHourglass(channels, order, r)
        self.mask_head = nn.Sequential(
            _bn_relu(channels),
            nn.Conv2d(channels, channels, 1, bias=False),
            _bn_relu(channels),
            nn.Conv2d(channels, channels, 1, bias=True),
        )
        self.post = _units(channels, p)
        self.last_mask: torch.Tensor | None = None
        self.reset_parameters(init)

    def reset_parameters(self, init: InitMode = "identity") -> None:
        """(Re)initialise every weight of the module; see the class docstring."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if init == "he":
            return
        if init not in MASK_INIT_BIAS:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INIT_MODES)}")
        for m in self.modules():
            if isinstance(m, ResidualUnit):
                nn.init.zeros_(m.conv3.weight)
        last = self.mask_head[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, MASK_INIT_BIAS[init])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        if not self.use_mask:
            return self.post(trunk)
        mask = torch.sigmoid(self.mask_head(self.mask_body(x)))
        # A side effect that TorchScript, torch.compile and export must not trace. Two `if`s:
        # TorchScript skips a block under `if not torch.jit.is_scripting()` only on its own.
        if not torch.jit.is_scripting():  # noqa: SIM102
            if not torch.compiler.is_compiling() and not _fx_tracing():
                self.last_mask = mask.detach()
        return self.post((1 + mask) * trunk)
