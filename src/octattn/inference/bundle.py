"""Model bundles: how a trained model travels. A folder with two files:

* ``weights.safetensors``: every tensor of the model (loads without executing code);
* ``config.json``: architecture, class names, pre-processing, calibration temperature
  and provenance (data, configuration, commit, date).

Loading a bundle needs nothing else and runs no code from it: the architecture is
rebuilt from :func:`octattn.create_model` by name, and the tensors are loaded strictly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from octattn.classes import CLASS_NAMES
from octattn.data.transforms import Preprocess
from octattn.errors import OctattnError, WeightsError
from octattn.io import atomic_save, atomic_write_text
from octattn.models import create_model
from octattn.models.weights import read_safetensors

BUNDLE_FORMAT = "octattn-bundle"
BUNDLE_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class BundleConfig:
    """The JSON half of a bundle."""

    architecture: dict[str, Any]
    preprocess: Preprocess
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    temperature: float = 1.0
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.json``."""
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "architecture": self.architecture,
            "class_names": self.class_names,
            "preprocess": self.preprocess.to_dict(),
            "calibration": {"temperature": self.temperature},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> BundleConfig:
        """Parse ``config.json``, with a clear error for anything else."""
        if data.get("format") != BUNDLE_FORMAT:
            raise OctattnError(f"{origin}: not an octattn model bundle config")
        try:
            return cls(
                architecture=dict(data["architecture"]),
                preprocess=Preprocess.from_dict(data["preprocess"]),
                class_names=list(data["class_names"]),
                temperature=float(data.get("calibration", {}).get("temperature", 1.0)),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise OctattnError(f"{origin}: incomplete bundle config ({exc})") from exc


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
    return arch


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle folder itself, or a run folder holding one in ``model/``."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise OctattnError(f"{path}: not a model bundle (no {CONFIG_FILE} + {WEIGHTS_FILE}) nor a run folder with one")


def save_bundle(out_dir: str | Path, model: nn.Module, config: BundleConfig) -> Path:
    """Write a bundle atomically (each file is complete or absent)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    atomic_write_text(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
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
        OctattnError: not a bundle, or its weights do not fit its architecture.
    """
    folder = resolve_bundle_dir(path)
    config = read_bundle_config(folder)
    arch = dict(config.architecture)
    name = arch.pop("name")
    model = create_model(name, **arch)
    state = read_safetensors(folder / WEIGHTS_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"{folder / WEIGHTS_FILE}: does not fit {name} ({detail})") from None
    return model.to(device).eval(), config
