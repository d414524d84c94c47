"""One experiment = one :class:`TrainConfig`: read from YAML, overridden by ``key=value``.

The resolved configuration is saved as ``RUN/config.yaml`` beside the run's outputs, so a
run can always be repeated and its numbers traced to their settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from octattn.data.transforms import PREPROCESS_MODES
from octattn.errors import ConfigError
from octattn.models import MODEL_NAMES, POLICIES
from octattn.models.attention import INIT_MODES


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper presets' recipe: the
    paper's policy, ratio of learning rates (1:100), weight decay and 20 epochs, with AdamW
    (SGD at the paper's rates diverges; see the README).

    Model: ``model``, ``placement`` (None = default), ``attention_init``, ``attention_mask``
    (false: the modules without their masks, an ablation), ``in_chans``,
    ``pretrained`` (fetch ImageNet weights) or ``weights`` (local safetensors file).
    Recipe: ``policy``, ``optimizer`` (sgd | adamw), ``lr_backbone``, ``lr_new``,
    ``lr_mask_factor`` (the soft-mask branches at ``lr_new`` times this), ``momentum``,
    ``weight_decay``, ``schedule`` (constant | cosine | step),
    ``warmup_steps``, ``epochs``, ``batch_size`` (global, over all processes),
    ``grad_clip`` (0 = off), ``label_smoothing``.
    Data: ``data`` (folder or CSV), ``cache`` (a cache folder from ``octattn data cache``),
    ``image_size``, ``preprocess`` (resize | crop), ``hflip_prob``, ``balance``
    (triple | sampler | none), ``balance_classes``, ``balance_factor``, ``val_fraction``
    (patient-grouped split of the training folder; 0 = use the data's val/ folder),
    ``skip_bad``, ``num_workers`` (loader processes per training process; -1 = what the
    machine has: its usable cores shared among the processes on this node, at most 8).
    Engine: ``seed``, ``amp`` (auto = bf16 where the GPU or CPU computes it natively, else off), ``channels_last``,
    ``compile``, ``grad_checkpointing`` (recompute each block's activations in backward:
    less than half the memory at batch 32, 299 px; attention model only), ``bn`` (train |
    frozen: every BatchNorm in eval mode),
    ``bn_recalibrate`` (images used to re-estimate BatchNorm statistics before each
    validation; 0 = off), ``threads`` (CPU threads; 0 = torch's default).
    """

    model: str = "inception_v4_attention"
    placement: list[dict[str, int]] | None = None
    attention_init: str = "identity"
    attention_mask: bool = True
    in_chans: int = 1
    pretrained: bool = True
    weights: str | None = None
    policy: str = "paper"
    optimizer: str = "adamw"
    lr_backbone: float = 1e-5
    lr_new: float = 1e-3
    lr_mask_factor: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    epochs: int = 20
    batch_size: int = 32
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    data: str | None = None
    cache: str | None = None
    image_size: int = 299
    preprocess: str = "resize"
    hflip_prob: float = 0.0
    balance: str = "triple"
    balance_classes: list[str] = field(default_factory=lambda: ["DME", "DRUSEN"])
    balance_factor: int = 3
    val_fraction: float = 0.1
    skip_bad: bool = False
    num_workers: int = -1
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    grad_checkpointing: bool = False
    bn: str = "train"
    bn_recalibrate: int = 0
    threads: int = 0

    def validate(self) -> TrainConfig:
        """Check every choice; returns self for chaining."""
        choices = {
            "model": MODEL_NAMES,
            "policy": POLICIES,
            "optimizer": ("sgd", "adamw"),
            "schedule": ("constant", "cosine", "step"),
            "preprocess": PREPROCESS_MODES,
            "balance": ("triple", "sampler", "none"),
            "amp": ("auto", "bf16", "off"),
            "bn": ("train", "frozen"),
            "attention_init": INIT_MODES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 75:
            raise ConfigError("epochs and batch_size must be positive and image_size at least 75")
        if self.grad_checkpointing and self.model != "inception_v4_attention":
            raise ConfigError(
                f"grad_checkpointing needs model=inception_v4_attention: timm's {self.model} does not support it"
            )
        if not self.lr_mask_factor > 0:
            raise ConfigError(f"lr_mask_factor must be positive, got {self.lr_mask_factor}")
        if self.num_workers < -1:
            raise ConfigError(f"num_workers must be -1 (automatic) or at least 0, got {self.num_workers}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML / JSON)."""
        return asdict(self)


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _coerce(key: str, value: Any) -> Any:
    default = TrainConfig.__dataclass_fields__[key].default
    if key == "amp" and value is False:
        # YAML 1.1 reads a bare ``off`` (``amp=off``, ``amp: off``) as false
        return "off"
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{key} must be a whole number, got {value}")
        return int(value)
    if default is not None and default is not dataclasses.MISSING and not isinstance(value, type(default)):
        raise ConfigError(f"{key} must be a {type(default).__name__}, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any], origin: str = "config") -> TrainConfig:
    """Build a config from a mapping, rejecting unknown keys with their names."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in data.items()}).validate()


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Values are parsed as YAML scalars (``epochs=3``, ``pretrained=false``,
    ``placement=[{after: 9, order: 2}]``).
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        data.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        data[key.strip()] = yaml.safe_load(value)
    return config_from_dict(data, origin)


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """The config with ``data``, ``cache`` and ``weights`` as absolute paths, so that a run
    folder means the same thing from any working directory (``RUN/paths.json`` keeps the
    path as typed)."""

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else path

    return dataclasses.replace(
        config, data=absolute(config.data), cache=absolute(config.cache), weights=absolute(config.weights)
    )


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from octattn.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
