"""Inception-v4 with residual attention modules, built on timm's own Inception-v4.

The backbone is timm's :class:`~timm.models.inception_v4.InceptionV4`, subclassed, so
every backbone parameter keeps timm's name (``features.19.branch0.conv.weight``,
``last_linear.weight``) and timm's pretrained weights load unchanged. The attention
modules live beside the backbone in :attr:`InceptionV4Attention.attention`, keyed by the
index of the ``features`` block they follow; inserting them into ``features`` would
renumber it and break every pretrained key after the insertion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.models import generate_default_cfgs, register_model
from timm.models.inception_v4 import InceptionV4
from torch import nn

from octattn.errors import ConfigError
from octattn.models.attention import AttentionModule, InitMode


@dataclass(frozen=True)
class AttentionPlacement:
    """One attention module: applied after ``features[after]``, of the given order."""

    after: int
    order: int

    @classmethod
    def parse(cls, item: AttentionPlacement | Mapping[str, Any]) -> AttentionPlacement:
        """Build a placement from itself or a mapping such as ``{"after": 9, "order": 2}``."""
        if isinstance(item, AttentionPlacement):
            return item
        try:
            return cls(after=int(item["after"]), order=int(item["order"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"attention placement {item!r} needs integer 'after' and 'order'") from exc


DEFAULT_PLACEMENT: tuple[AttentionPlacement, ...] = (
    AttentionPlacement(after=9, order=2),
    AttentionPlacement(after=13, order=1),
    AttentionPlacement(after=17, order=1),
)
"""Our reading of the paper's Fig. 2 (the figure itself is not available): three modules
in the middle layers. The paper says the 35x35 Inception-A stage allows at most two
down-samplings (35 -> 17 -> 9), so the order-2 module follows the last Inception-A block
(``features.9``, 384 channels, 35x35 at 299 px); two order-1 modules follow the fourth
and the last Inception-B blocks (``features.13`` and ``features.17``, 1024 channels,
17x17), where one more down-sampling leaves a 9x9 mask."""


def _block_channels(features: nn.Sequential, in_chans: int) -> list[int]:
    """Output channels of every ``features`` block, read off one tiny dry run."""
    channels = []
    was_training = features.training
    features.eval()
    with torch.no_grad():
        x = torch.zeros(1, in_chans, 75, 75)
        for block in features:
            x = block(x)
            channels.append(int(x.shape[1]))
    features.train(was_training)
    return channels


class InceptionV4Attention(InceptionV4):
    """Shang et al.'s network: timm's Inception-v4 with residual attention modules.

    Args:
        num_classes: outputs of the new classifier (``last_linear``).
        in_chans: 1 for grayscale OCT (default), 3 for RGB.
        placement: where the modules go, as :class:`AttentionPlacement` items or mappings
            ``{"after": block_index, "order": 1 | 2}``; default :data:`DEFAULT_PLACEMENT`.
        attention_init: ``"identity"`` (near-identity start, default) or ``"he"``; see
            :class:`~octattn.models.attention.AttentionModule`.
        p, t, r: residual-unit counts of each module (Wang et al.'s 1, 2, 1).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 1,
        placement: Iterable[AttentionPlacement | Mapping[str, Any]] | None = None,
        attention_init: InitMode = "identity",
        p: int = 1,
        t: int = 2,
        r: int = 1,
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
        items = DEFAULT_PLACEMENT if placement is None else placement
        self.placement = tuple(AttentionPlacement.parse(item) for item in items)
        afters = [item.after for item in self.placement]
        if len(set(afters)) != len(afters):
            raise ConfigError(f"two attention modules after the same block: {afters}")
        channels = _block_channels(self.features, in_chans)
        self.attention = nn.ModuleDict()
        for item in sorted(self.placement, key=lambda it: it.after):
            if not 0 <= item.after < len(self.features):
                raise ConfigError(
                    f"attention 'after' must be a features index 0-{len(self.features) - 1}, got {item.after}"
                )
            self.attention[str(item.after)] = AttentionModule(
                channels[item.after], order=item.order, p=p, t=t, r=r, init=attention_init
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the backbone, applying each attention module after its block."""
        for index, block in enumerate(self.features):
            x = block(x)
            key = str(index)
            if key in self.attention:
                x = self.attention[key](x)
        return x

    def attention_masks(self) -> dict[str, torch.Tensor]:
        """Soft masks of the last forward pass, keyed ``"after_<block>"`` (N, C, H, W)."""
        masks = {}
        for key, module in self.attention.items():
            assert isinstance(module, AttentionModule)
            if module.last_mask is not None:
                masks[f"after_{key}"] = module.last_mask
        return masks

    def placement_config(self) -> list[dict[str, int]]:
        """The placement as plain data, for configs and model bundles."""
        return [asdict(item) for item in self.placement]


default_cfgs = generate_default_cfgs(
    {
        "inception_v4_attention.untrained": {
            "num_classes": 4,
            "input_size": (1, 299, 299),
            "pool_size": (8, 8),
            "crop_pct": 1.0,
            "interpolation": "bicubic",
            "mean": IMAGENET_INCEPTION_MEAN,
            "std": IMAGENET_INCEPTION_STD,
            "first_conv": "features.0.conv",
            "classifier": "last_linear",
        }
    }
)


@register_model  # type: ignore[untyped-decorator,unused-ignore]
def inception_v4_attention(pretrained: bool = False, **kwargs: Any) -> InceptionV4Attention:
    """timm entry point: ``timm.create_model("inception_v4_attention", ...)``.

    Pretrained backbone weights are loaded by :func:`octattn.create_model` (``pretrained``
    or ``weights=PATH``), which checks every key; this entry point builds the network only.
    """
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("use octattn.create_model('inception_v4_attention', pretrained=True) for pretrained weights")
    return InceptionV4Attention(**kwargs)


def attention_modules(model: nn.Module) -> Sequence[AttentionModule]:
    """All attention modules of a model, in forward order (empty for the baselines)."""
    return [m for m in model.modules() if isinstance(m, AttentionModule)]
