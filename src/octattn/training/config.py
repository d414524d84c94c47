"""One experiment = one :class:`TrainConfig`: read from YAML, overridden by ``key=value``.

The resolved configuration is saved as ``RUN/config.yaml`` beside the run's outputs, so a
run can always be repeated and its numbers traced to their settings.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from octattn.classes import canonical, referral_tiers
from octattn.data.transforms import PREPROCESS_MODES
from octattn.errors import ConfigError
from octattn.models import MODEL_NAMES, POLICIES
from octattn.models.attention import INIT_MODES


def setting(default: Any, help: str) -> Any:
    """A config key: its default and the one line of help that ``octattn config show`` and the
    docs' reference print (read from the field, so the two cannot drift)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper presets' recipe: the
    paper's policy, ratio of learning rates (1:100), weight decay and 20 epochs, with AdamW
    (SGD at the paper's rates diverges; see the docs' training page). Each field's help is
    in its metadata: ``octattn config show`` prints them all."""

    # model
    model: str = setting("inception_v4_attention", "the network: " + ", ".join(MODEL_NAMES))
    placement: list[dict[str, int]] | None = setting(
        None, "attention modules as [{after: BLOCK, order: 1|2}, ...]; null = the default (9/2, 13/1, 17/1)"
    )
    attention_init: str = setting("identity", "how the attention modules start: " + " | ".join(INIT_MODES))
    attention_mask: bool = setting(True, "false: the attention modules without their soft masks (an ablation)")
    in_chans: int = setting(1, "input channels (1: gray OCT; pretrained RGB filters are folded)")
    pretrained: bool = setting(True, "fetch timm's ImageNet weights for the backbone")
    weights: str | None = setting(None, "a local .safetensors backbone file instead of fetching (offline)")
    # recipe
    policy: str = setting("paper", "what trains: paper (last three Inception-C + new layers) | last1 | all")
    optimizer: str = setting("adamw", "sgd | adamw")
    lr_backbone: float = setting(1e-5, "learning rate of the trainable backbone blocks")
    lr_new: float = setting(1e-3, "learning rate of the new layers (attention modules, classifier)")
    lr_mask_factor: float = setting(1.0, "the soft-mask branches at lr_new times this")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "weight decay of convolution and linear weights (not BN, not biases)")
    schedule: str = setting("constant", "learning-rate schedule: constant | cosine | step | onecycle")
    warmup_steps: int = setting(0, "linear warm-up steps")
    epochs: int = setting(20, "passes over the (balanced) training set")
    batch_size: int = setting(32, "global batch, split over the processes")
    grad_clip: float = setting(0.0, "clip the gradient norm at this (0 = off)")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    # data
    data: str | None = setting(None, "an OCT2017-style folder (SPLIT/CLASS/ or CLASS/) or a CSV manifest")
    classes: list[str] | None = setting(
        None, "the class set in label order; null = the data's class folders (OCT2017's four when they are those)"
    )
    referral: dict[str, str | None] | None = setting(
        None, "class -> urgent | routine | observation; null = OCT2017's tiers; a class not named gets no tier"
    )
    cache: str | None = setting(None, "a cache folder from `octattn data cache` (no JPEG decoding per epoch)")
    image_size: int = setting(299, "input size in pixels (at least 75)")
    preprocess: str = setting("resize", "resize (the paper's direct resize) | crop (random crop, Table III)")
    hflip_prob: float = setting(0.0, "probability of a horizontal flip in training")
    jitter: float = setting(
        0.0, "random tilt, shift, zoom, brightness and contrast in training: 0 = off, 1 = up to 10 deg, 5%, 10%, 20%"
    )
    randomise: float = setting(
        0.0,
        "domain randomisation in training (for phantoms): random gamma, blur, resolution and noise: "
        "0 = off, 1 = gamma 1/1.8-1.8, blur up to 1.5 px, down to half resolution, noise up to 8%",
    )
    balance: str = setting(
        "triple",
        "class balance: triple (the paper's DME/DRUSEN copies) | sampler (classes drawn evenly) | "
        "loss_weights (cross-entropy weighted by inverse class frequency) | none",
    )
    prior_correction: bool = setting(
        False,
        "when the run ends, shift its probabilities back from the balanced classes it trained on toward the "
        "training set's own frequencies, at the power (0-1) that maximises validation macro-F1",
    )
    balance_classes: list[str] = setting(["DME", "DRUSEN"], "the classes that `balance: triple` copies")
    balance_factor: int = setting(3, "copies per image of balance_classes (up to 6)")
    val_fraction: float = setting(0.1, "patient-grouped validation share of the training folder (0 = its val/)")
    val_every: int = setting(
        1,
        "validate after every N-th epoch and the last (each validation re-estimates BatchNorm first); the best "
        "epoch is chosen among the validated ones",
    )
    skip_bad: bool = setting(False, "count unreadable files as skipped instead of stopping")
    num_workers: int = setting(-1, "loader processes per training process (-1 = the machine's cores, at most 8)")
    # engine
    seed: int = setting(0, "seeds the split, the data order, the transforms and the weights")
    split_seed: int | None = setting(
        None, "seeds the validation split instead of seed (null: seed); seeds of one ensemble share it"
    )
    amp: str = setting("auto", "mixed precision: auto (bf16 where computed natively) | bf16 | off")
    channels_last: bool = setting(True, "channels_last memory format (about 2x on CPUs)")
    compile: bool = setting(False, "torch.compile the model")
    grad_checkpointing: bool = setting(False, "recompute activations in backward: less memory (attention model only)")
    bn: str = setting("train", "BatchNorm: train | frozen (every BatchNorm in eval mode)")
    bn_recalibrate: int = setting(
        0,
        "training images, drawn in the class mix the loss saw, to re-estimate BatchNorm statistics on before "
        "validation (0 = off)",
    )
    threads: int = setting(0, "CPU threads (0 = torch's default)")
    # safety: fitted on the run's own images when training ends (octattn fit-ood refits a bundle)
    ood_detector: bool = setting(True, "fit the out-of-distribution detector when training ends")
    ood_fit_images: int = setting(2000, "training images the detector is fitted on (a seeded sample of them)")
    abstain_target_accuracy: float | None = setting(
        0.99, "refer scans below the confidence at which validation is this accurate; null = never"
    )
    urgent_sensitivity: float | None = setting(
        0.95, "refer urgently above the urgent probability that catches this share of urgent validation scans"
    )
    volume_false_urgent: float = setting(0.01, "a volume's false call rate, at any number of B-scans")
    checkpoint_every: int = setting(
        1,
        "write RUN/checkpoint.pt (for --resume) after every N-th epoch; 0 = never (a crash then starts the run "
        "over); keep_checkpoint decides the last epoch's",
    )
    keep_checkpoint: bool = setting(
        True,
        "keep RUN/checkpoint.pt (model + optimizer, about 3x the bundle) when the run ends; "
        "false: the bundle only, and the last epoch's checkpoint is never written",
    )

    @property
    def validation_seed(self) -> int:
        """The seed of the patient-grouped validation split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> TrainConfig:
        """Check every choice; returns self for chaining."""
        choices = {
            "model": MODEL_NAMES,
            "policy": POLICIES,
            "optimizer": ("sgd", "adamw"),
            "schedule": ("constant", "cosine", "step", "onecycle"),
            "preprocess": PREPROCESS_MODES,
            "balance": ("triple", "sampler", "loss_weights", "none"),
            "amp": ("auto", "bf16", "off"),
            "bn": ("train", "frozen"),
            "attention_init": INIT_MODES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)):
            raise ConfigError(f"split_seed must be a whole number or null, got {self.split_seed!r}")
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
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be in [0, 1], got {self.jitter}")
        if not 0 <= self.randomise <= 1:
            raise ConfigError(f"randomise must be in [0, 1], got {self.randomise}")
        _check_epoch_cadence("val_every", self.val_every, least=1)
        _check_epoch_cadence("checkpoint_every", self.checkpoint_every, least=0)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.referral is not None:
            try:
                referral_tiers(list(self.referral), self.referral)
            except ValueError as exc:
                raise ConfigError(f"referral: {exc}") from None
        if self.classes is not None and len({canonical(c) for c in self.classes}) != len(self.classes):
            raise ConfigError(f"classes must be distinct, got {self.classes}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML / JSON)."""
        return asdict(self)


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def default_of(key: str) -> Any:
    """A key's default value."""
    f = _FIELDS[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def help_of(key: str) -> str:
    """A key's one line of help."""
    return str(_FIELDS[key].metadata.get("help", ""))


def keys() -> list[str]:
    """Every config key, in the order the config declares them."""
    return list(_FIELDS)


def unknown_key_error(key: str, origin: str) -> ConfigError:
    """``origin: unknown key 'lr'; closest: lr_new, lr_backbone`` (and where to see them all)."""
    close = difflib.get_close_matches(key, _FIELDS, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return ConfigError(f"{origin}: unknown key {key!r}{hint} (`octattn config show` lists every key)")


def _coerce(key: str, value: Any) -> Any:
    default = default_of(key)
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
        raise unknown_key_error(unknown[0], origin)
    return TrainConfig(**{k: _coerce(k, v) for k, v in data.items()}).validate()


class _ConfigLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans: only true and false. YAML 1.1 (PyYAML's default) also
    reads no, off, yes and on as booleans, so OCTDL's class ``NO`` became ``false`` and
    ``amp: off`` a boolean; here they stay the words they are."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """Parse a config value or file (YAML 1.2 booleans: see :class:`_ConfigLoader`)."""
    return yaml.load(text, Loader=_ConfigLoader)


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
            loaded = read_yaml(Path(path).read_text())
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
        if key.strip() not in _FIELDS:
            raise unknown_key_error(key.strip(), f"override {item!r}")
        data[key.strip()] = read_yaml(value)
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


def _check_epoch_cadence(key: str, value: Any, least: int) -> None:
    """Refuse a cadence in epochs (``val_every``, ``checkpoint_every``) that is not a whole number
    of at least ``least`` (YAML's true is an int to Python, never a cadence)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        never = " (0 = never)" if least == 0 else ""
        raise ConfigError(f"{key} must be a whole number of epochs, at least {least}{never}, got {value!r}")


KEEPING_KEYS = frozenset({"checkpoint_every", "keep_checkpoint"})
"""Settings that decide which files a run keeps on the way, never what it learns: a resume or a
benchmark's reuse of a finished run may differ in them."""


def differing_keys(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ between two configs, with both values (the
    :data:`KEEPING_KEYS` left out)."""
    left, right = a.to_dict(), b.to_dict()
    return {key: (left[key], right[key]) for key in left if key not in KEEPING_KEYS and left[key] != right[key]}


RUN_CONFIG = "config.yaml"


def config_for_resume(
    run_dir: str | Path, config_path: str | Path | None, overrides: Sequence[str] = (), force: bool = False
) -> TrainConfig:
    """The config a ``--resume`` continues with: the run's own ``config.yaml``.

    A config file or overrides that change any key are refused, naming each key with the
    run's value and the given one, unless ``force``: resuming under another recipe silently
    would be a different experiment under the old run's name.

    Raises:
        ConfigError: the given config differs from the run's and ``force`` is false.
    """
    saved = Path(run_dir) / RUN_CONFIG
    if not saved.exists():  # nothing ran yet: --resume starts the run
        return load_config(config_path, overrides)
    own = absolute_paths(load_config(saved))
    given = absolute_paths(load_config(config_path if config_path is not None else saved, overrides))
    changed = differing_keys(own, given)
    if changed and not force:
        listed = "; ".join(f"{key}: {old!r} in the run, {new!r} given" for key, old, new in _rows(changed))
        raise ConfigError(
            f"{saved}: --resume with a different config ({listed}); pass --force to resume with it anyway"
        )
    return given


def _rows(changed: dict[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(key, old, new) for key, (old, new) in changed.items()]


def describe(config: TrainConfig) -> list[dict[str, Any]]:
    """Every key with its value, its default and its help (what ``octattn config show`` prints)."""
    values = config.to_dict()
    return [{"key": k, "value": values[k], "default": default_of(k), "help": help_of(k)} for k in keys()]
