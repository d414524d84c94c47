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
from typing import Any, cast

import torch
from timm.layers import register_notrace_function
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.inception_v4 import InceptionV4
from torch import nn
from torch.utils.checkpoint import checkpoint

from octattn.errors import ConfigError
from octattn.models import attention as attention_blocks
from octattn.models.attention import AttentionModule, InitMode

# FX traces Python code with proxies: the bilinear up-sampling to another tensor's size
# must stay one call in the graph (as timm does for its own size-dependent helpers).
register_notrace_function(attention_blocks.upsample_to)


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
        attention_mask: ``False`` runs the modules without their masks (an ablation; see
            :class:`~octattn.models.attention.AttentionModule`).
        p, t, r: residual-unit counts of each module (Wang et al.'s 1, 2, 1).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 1,
        placement: Iterable[AttentionPlacement | Mapping[str, Any]] | None = None,
        attention_init: InitMode = "identity",
        attention_mask: bool = True,
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
                channels[item.after], order=item.order, p=p, t=t, r=r, init=attention_init, use_mask=attention_mask
            )
        # timm's stage taps, each after its attention module where one follows the block.
        self.feature_info = [
            {**info, "module": f"attention.{end}" if str(end) in self.attention else f"features.{end}"}
            for info, end in zip(self.feature_info, self.stage_ends, strict=True)
        ]
        self.grad_checkpointing = False

    @torch.jit.ignore  # type: ignore[misc,untyped-decorator,unused-ignore]
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's and module's activations in backward instead of keeping them.

        Trades about a third more compute for memory, so that a GPU trains at a larger batch.
        """
        self.grad_checkpointing = enable

    @torch.jit.ignore  # type: ignore[misc,untyped-decorator,unused-ignore]
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups: an attention module joins the block it follows."""
        return {"stem": r"^features\.[012]\.", "blocks": r"^(?:features|attention)\.(\d+)"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the backbone, applying each attention module after its block."""
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            return self._checkpointed_features(x)
        for index, block in enumerate(self.features):
            x = block(x)
            # A loop over the modules rather than a lookup by key: TorchScript indexes a
            # ModuleDict only with constants, and three string comparisons cost nothing.
            for key, module in self.attention.items():
                if key == str(index):
                    x = module(x)
        return x

    @torch.jit.ignore  # type: ignore[misc,untyped-decorator,unused-ignore]
    def _checkpointed_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._stages(x, checkpointed=True)[0]

    def _stages(
        self, x: torch.Tensor, checkpointed: bool = False, keep: Sequence[int] = (), last: int = -1
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Blocks and modules in order; the outputs of the blocks in ``keep`` (after their
        module), stopping after block ``last`` (-1: all)."""
        kept = []
        for index, block in enumerate(self.features):
            if 0 <= last < index:
                break
            steps = [block] + ([self.attention[str(index)]] if str(index) in self.attention else [])
            for step in steps:
                x = checkpoint(step, x, use_reentrant=False) if checkpointed else step(x)
            if index in keep:
                kept.append(x)
        return x, kept

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature interface: the stage outputs of :attr:`feature_info` (after attention).

        Args:
            x: input images.
            indices: the last n stages for an int, all for ``None``, or the stage indices.
            norm: unused (the network has no final norm).
            stop_early: stop after the last stage asked for.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return the stage outputs alone.
        """
        if output_fmt != "NCHW":
            raise ValueError("output_fmt must be NCHW")
        take, max_index = feature_take_indices(len(self.stage_ends), indices)
        take_blocks = [self.stage_ends[i] for i in take]
        last_block = self.stage_ends[max_index] if stop_early else -1
        checkpointed = self.grad_checkpointing and self.training
        x, intermediates = self._stages(x, checkpointed, take_blocks, last_block)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks, modules and head that the stages asked for do not need."""
        take, max_index = feature_take_indices(len(self.stage_ends), indices)
        last_block = self.stage_ends[max_index]
        if max_index < len(self.stage_ends) - 1:
            self.num_features = self.head_hidden_size = cast(int, self.feature_info[max_index]["num_chs"])
        self.features = self.features[: last_block + 1]
        for key in [k for k in self.attention if int(k) > last_block]:
            del self.attention[key]
        if prune_head or max_index < len(self.stage_ends) - 1:
            self.reset_classifier(0, "")
        return list(take)

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


INPUT_SIZE = (1, 299, 299)
"""What the paper feeds the network: one gray channel, resized directly to 299x299."""

_OCT_CFG = {
    "num_classes": 4,
    "input_size": INPUT_SIZE,
    "pool_size": (8, 8),
    "crop_pct": 1.0,
    "crop_mode": "squash",  # the paper's direct resize, aspect ratio not kept
    "interpolation": "bicubic",
    "mean": (0.5,),
    "std": (0.5,),
    "first_conv": "features.0.conv",
    "classifier": "last_linear",
    "label_names": ("CNV", "DME", "DRUSEN", "NORMAL"),
    "license": "apache-2.0",
}

default_cfgs = generate_default_cfgs(
    {
        # The ImageNet backbone of the paper's transfer learning (timm's Inception-v4
        # weights; the attention modules and the 4-way classifier start from their init).
        "inception_v4_attention.tf_in1k": {
            **_OCT_CFG,
            "hf_hub_id": "timm/inception_v4.tf_in1k",
            "num_classes": 1000,
            "input_size": (3, 299, 299),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "label_names": None,
        },
        # The default (the '*' marks it, as the other tag has weights): the paper's
        # network, untrained, for gray 299 px scans.
        "inception_v4_attention.untrained*": _OCT_CFG,
    }
)


def _keep_new_layers(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """An ImageNet checkpoint holds no attention module: those keep their init, and every
    other tensor still loads strictly."""
    new = {k: v for k, v in model.state_dict().items() if k.startswith("attention.") and k not in state_dict}
    return {**state_dict, **new}


@register_model  # type: ignore[untyped-decorator,unused-ignore]
def inception_v4_attention(pretrained: bool = False, **kwargs: Any) -> InceptionV4Attention:
    """timm entry point: ``timm.create_model("inception_v4_attention", ...)``.

    Built by timm's own builder, so ``pretrained_cfg``, ``feature_info``,
    ``features_only=True``, ``local-dir:`` and ``hf-hub:`` work as for any timm model.
    ``pretrained=True`` with the ``.tf_in1k`` tag loads ImageNet backbone weights (the
    attention modules keep their init);
    :func:`octattn.create_model` loads them with a strict check of every backbone key.
    """
    return build_model_with_cfg(
        InceptionV4Attention,
        "inception_v4_attention",
        pretrained,
        pretrained_filter_fn=_keep_new_layers,
        feature_cfg={"feature_cls": "getter"},
        **kwargs,
    )


def attention_modules(model: nn.Module) -> Sequence[AttentionModule]:
    """All attention modules of a model, in forward order (empty for the baselines)."""
    return [m for m in model.modules() if isinstance(m, AttentionModule)]
