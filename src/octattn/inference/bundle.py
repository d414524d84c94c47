"""Model bundles: how a trained model travels. A folder that is also a timm model folder:

* ``model.safetensors``: every tensor of the model (loads without executing code);
* ``config.json`` in timm's format (``architecture``, ``num_classes``, ``label_names``,
  ``pretrained_cfg`` with the input size, normalisation and resize, ``model_args``), so
  ``timm.create_model("local-dir:FOLDER")`` and ``"hf-hub:ORG/NAME"`` build the trained
  network; plus octattn's own fields under ``"octattn"``: class names, pre-processing,
  calibration temperature, referral rule and provenance (data, configuration, commit, date).

An ensemble bundle (``octattn ensemble``) has no weights of its own: its ``config.json``
lists member bundles in sub-folders, each a complete bundle (and timm model folder), and
loads as one :class:`~octattn.models.ensemble.ProbabilityEnsemble`.

Loading a bundle needs nothing else and runs no code from it: the architecture is
rebuilt from :func:`octattn.create_model` by name, and the tensors are loaded strictly.
Bundles written before the timm layout (``weights.safetensors`` + a flat octattn config,
version 1) still load. A model may be named by a folder, a run folder holding one in
``model/``, ``local-dir:FOLDER`` or ``hf-hub:ORG/NAME`` (fetched once into the hub cache).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from octattn.classes import CLASS_NAMES, referral_tiers
from octattn.data.transforms import Preprocess
from octattn.errors import OctattnError, WeightsError
from octattn.io import atomic_save, atomic_write_text
from octattn.models import create_model
from octattn.models.ensemble import ProbabilityEnsemble
from octattn.models.weights import PRETRAINED_SOURCES, read_safetensors

BUNDLE_FORMAT = "octattn-bundle"
BUNDLE_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
HUB_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"


@dataclass
class BundleConfig:
    """The JSON half of a bundle."""

    architecture: dict[str, Any]
    preprocess: Preprocess
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    temperature: float = 1.0
    logit_bias: list[float] = field(default_factory=list)
    """Added to ``logits / temperature`` before the softmax (empty: none): the class-prior
    correction of a balanced run, ``prior_power * prior_shift`` (:mod:`octattn.evaluation.calibration`)."""
    prior_power: float | None = None
    """The power of the prior correction, fitted on validation; None: no correction."""
    provenance: dict[str, Any] = field(default_factory=dict)
    referral: dict[str, str | None] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    """Operating points chosen on validation: ``abstain_threshold`` (confidence below which the
    referral is "uncertain: refer to a human"), ``urgent_threshold`` (summed urgent probability
    at which the referral is urgent), with the targets they were chosen for."""
    ensemble: list[str] = field(default_factory=list)
    """An ensemble bundle's member folders, relative to it (empty: one network). The
    ensemble's own temperature is 1 and it has no prior correction: each member's
    calibration is applied inside the model (:mod:`octattn.models.ensemble`)."""

    def __post_init__(self) -> None:
        # Each class's tier (None: no tier); OCT2017's tiers where the bundle names none.
        self.referral = referral_tiers(self.class_names, self.referral or None)

    def to_dict(self) -> dict[str, Any]:
        """``config.json``: timm's model-folder fields, and octattn's under ``"octattn"``."""
        arch = dict(self.architecture)
        name = arch.pop("name")
        num_classes = int(arch.pop("num_classes", len(self.class_names)))
        return {
            "architecture": name,
            "num_classes": num_classes,
            "label_names": list(self.class_names),
            "pretrained_cfg": timm_pretrained_cfg(name, self.preprocess, self.class_names),
            "model_args": arch,
            "octattn": {
                "format": BUNDLE_FORMAT,
                "version": BUNDLE_VERSION,
                "class_names": list(self.class_names),
                "preprocess": self.preprocess.to_dict(),
                "calibration": self.calibration(),
                "referral": dict(self.referral),
                "decision": dict(self.decision),
                "provenance": self.provenance,
                **({"ensemble": list(self.ensemble)} if self.ensemble else {}),
            },
        }

    def calibration(self) -> dict[str, Any]:
        """The ``calibration`` fields: the temperature, and the prior correction where there is one."""
        if self.prior_power is None:
            return {"temperature": self.temperature}
        return {"temperature": self.temperature, "prior_power": self.prior_power, "logit_bias": list(self.logit_bias)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> BundleConfig:
        """Parse ``config.json`` (this layout or version 1's), with a clear error for anything else."""
        try:
            if data.get("format") == BUNDLE_FORMAT:  # version 1: octattn's flat config
                return cls(
                    architecture=dict(data["architecture"]),
                    preprocess=Preprocess.from_dict(data["preprocess"]),
                    class_names=list(data["class_names"]),
                    temperature=float(data.get("calibration", {}).get("temperature", 1.0)),
                    provenance=dict(data.get("provenance", {})),
                    referral=_stored_referral(data),
                )
            ours = data.get("octattn")
            if not isinstance(ours, dict) or ours.get("format") != BUNDLE_FORMAT:
                what = (
                    "a timm model folder without octattn's fields (class names, pre-processing, calibration)"
                    if "architecture" in data
                    else "not an octattn model bundle config"
                )
                raise OctattnError(f"{origin}: {what}")
            return cls(
                architecture={
                    "name": str(data["architecture"]),
                    "num_classes": int(data["num_classes"]),
                    **dict(data.get("model_args", {})),
                },
                preprocess=Preprocess.from_dict(ours["preprocess"]),
                class_names=list(ours["class_names"]),
                temperature=float(ours.get("calibration", {}).get("temperature", 1.0)),
                **_prior_correction(ours.get("calibration", {}), int(data["num_classes"]), origin),
                provenance=dict(ours.get("provenance", {})),
                referral=_stored_referral(ours),
                decision=dict(ours.get("decision", {})),
                ensemble=[str(member) for member in ours.get("ensemble", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise OctattnError(f"{origin}: incomplete bundle config ({exc})") from exc


def _prior_correction(calibration: dict[str, Any], num_classes: int, origin: str) -> dict[str, Any]:
    """A bundle's prior correction (none where it was written without one)."""
    if calibration.get("prior_power") is None:
        return {}
    bias = [float(b) for b in calibration.get("logit_bias", [])]
    if len(bias) != num_classes:
        raise OctattnError(f"{origin}: calibration.logit_bias has {len(bias)} values for {num_classes} classes")
    return {"prior_power": float(calibration["prior_power"]), "logit_bias": bias}


def _stored_referral(fields: dict[str, Any]) -> dict[str, str | None]:
    """A bundle's referral mapping; bundles written before class sets said "unknown" for none."""
    stored = fields.get("referral") or {}
    return {name: (None if tier in (None, "unknown") else str(tier)) for name, tier in stored.items()}


def timm_pretrained_cfg(name: str, preprocess: Preprocess, class_names: list[str]) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a bundle: what ``timm.data.resolve_data_config`` reads.

    The input is the bundle's own (channels, size, normalisation, interpolation), resized
    directly to it without keeping the aspect ratio (``crop_mode="squash"``, the paper's
    direct resize).
    """
    source = PRETRAINED_SOURCES[name]
    height, width = preprocess.size
    channels = preprocess.in_chans
    return {
        "input_size": [channels, height, width],
        "interpolation": preprocess.interpolation,
        "mean": [preprocess.mean] * channels,
        "std": [preprocess.std] * channels,
        "crop_pct": 1.0,
        "crop_mode": "squash",
        "num_classes": len(class_names),
        "first_conv": source.first_conv,
        "classifier": source.classifier,
        "label_names": list(class_names),
    }


def architecture_of(model_name: str, model: nn.Module) -> dict[str, Any]:
    """What :func:`create_model` needs to rebuild ``model``."""
    arch: dict[str, Any] = {
        "name": model_name,
        "num_classes": int(getattr(model, "num_classes", len(CLASS_NAMES))),
        "in_chans": int(getattr(model, "in_chans", 1)),
    }
    placement = getattr(model, "placement_config", None)
    if callable(placement):
        arch["placement"] = placement()
    modules = list(getattr(model, "attention", {}).values())
    if modules and not getattr(modules[0], "use_mask", True):
        arch["attention_mask"] = False
    return arch


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle folder: itself, a run folder's ``model/``, ``local-dir:FOLDER``, or
    ``hf-hub:ORG/NAME`` (its two files fetched once into the hub cache)."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        return fetch_hub_bundle(text.removeprefix(HUB_PREFIX))
    path = Path(text.removeprefix(LOCAL_PREFIX))
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file() and (weights_file(candidate).is_file() or _is_ensemble(candidate)):
            return candidate
    raise OctattnError(f"{path}: not a model bundle (no {CONFIG_FILE} + {WEIGHTS_FILE}) nor a run folder with one")


def _is_ensemble(folder: Path) -> bool:
    """Whether ``folder/config.json`` names ensemble members (weights live in their folders)."""
    try:
        ours = json.loads((folder / CONFIG_FILE).read_text()).get("octattn", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(ours, dict) and bool(ours.get("ensemble"))


def weights_file(folder: Path) -> Path:
    """The weights of a bundle folder (``model.safetensors``, or version 1's name)."""
    legacy = folder / LEGACY_WEIGHTS_FILE
    return legacy if legacy.is_file() and not (folder / WEIGHTS_FILE).is_file() else folder / WEIGHTS_FILE


def weights_digest(folder: Path) -> str:
    """SHA-256 (hex) of a bundle's weights: of its weights file, or of its members' in order."""
    digest = hashlib.sha256()
    config = read_bundle_config(folder)
    for each in member_folders(folder, config) if config.ensemble else [folder]:
        digest.update(weights_file(each).read_bytes())
    return digest.hexdigest()


def fetch_hub_bundle(repo_id: str) -> Path:
    """Download (or find in the hub cache) a bundle published with ``octattn push``."""
    from octattn.hub import HubUnavailable, hub_file

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise OctattnError(f"{HUB_PREFIX}{repo_id}: a Hub model is named hf-hub:ORG/NAME")
    instead = "copy the model folder here and pass its path"
    try:
        config = hub_file(repo_id, CONFIG_FILE, "model", instead)
        weights = hub_file(repo_id, WEIGHTS_FILE, "model", instead)
    except HubUnavailable as exc:
        raise OctattnError(str(exc)) from exc
    if config.parent != weights.parent:  # the hub cache keeps one snapshot folder per revision
        raise OctattnError(f"{HUB_PREFIX}{repo_id}: config and weights came from different revisions")
    return config.parent


def save_bundle(out_dir: str | Path, model: nn.Module, config: BundleConfig) -> Path:
    """Write a bundle atomically (each file is complete or absent)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    atomic_write_text(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
    (out / LEGACY_WEIGHTS_FILE).unlink(missing_ok=True)  # a version-1 file would shadow nothing, but confuse
    (out / "ood.safetensors").unlink(missing_ok=True)  # fitted on other weights: refitted when training ends
    return out


def read_bundle_config(path: str | Path) -> BundleConfig:
    """Read only the JSON half of a bundle."""
    folder = resolve_bundle_dir(path)
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise OctattnError(f"{folder / CONFIG_FILE}: not valid JSON ({exc})") from exc
    return BundleConfig.from_dict(data, str(folder / CONFIG_FILE))


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, BundleConfig]:
    """Rebuild a bundle's model (eval mode) and return it with its config.

    Raises:
        OctattnError: not a bundle, or its weights do not fit its architecture; an ensemble
            whose members are missing or disagree with it.
    """
    folder = resolve_bundle_dir(path)
    config = read_bundle_config(folder)
    model = load_ensemble(folder, config) if config.ensemble else _load_network(folder, config)
    return model.to(device).eval(), config


def _load_network(folder: Path, config: BundleConfig) -> nn.Module:
    """One network: its architecture rebuilt by name, its weights loaded strictly."""
    arch = dict(config.architecture)
    name = arch.pop("name")
    model = create_model(name, **arch)
    weights = weights_file(folder)
    state = read_safetensors(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"{weights}: does not fit {name} ({detail})") from None
    return model


def member_folders(folder: Path, config: BundleConfig) -> list[Path]:
    """An ensemble bundle's member folders, each checked to lie inside the bundle."""
    root = folder.resolve()
    members = []
    for name in config.ensemble:
        member = (folder / name).resolve()
        if root not in member.parents:
            raise OctattnError(f"{folder / CONFIG_FILE}: ensemble member {name!r} lies outside the bundle")
        members.append(member)
    return members


def load_ensemble(folder: Path, config: BundleConfig) -> nn.Module:
    """An ensemble bundle's members, loaded and checked against the ensemble's classes and
    input, as one :class:`ProbabilityEnsemble`."""
    networks, temperatures, biases = [], [], []
    for member in member_folders(folder, config):
        if not (member / CONFIG_FILE).is_file():
            raise OctattnError(f"{member}: ensemble member missing (the bundle {folder} is incomplete)")
        member_config = read_bundle_config(member)
        if member_config.ensemble:
            raise OctattnError(f"{member}: an ensemble member is itself an ensemble")
        check_same_task(member_config, config, str(member))
        networks.append(_load_network(member, member_config))
        temperatures.append(member_config.temperature)
        biases.append(member_config.logit_bias)
    return ProbabilityEnsemble(networks, temperatures, biases)


def check_same_task(member: BundleConfig, reference: BundleConfig, origin: str) -> None:
    """Raise unless ``member`` has ``reference``'s classes (in order) and pre-processing."""
    if member.class_names != reference.class_names:
        raise OctattnError(f"{origin}: classes {member.class_names} differ from {reference.class_names}")
    if member.preprocess.to_dict() != reference.preprocess.to_dict():
        raise OctattnError(
            f"{origin}: pre-processing {member.preprocess.to_dict()} differs from {reference.preprocess.to_dict()}"
        )
