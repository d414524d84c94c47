"""Small trained-shape bundles for inference, explain and serve tests (the shared ones are
session fixtures in ``conftest.py``: one copy on disk for the whole suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import octattn
from octattn.data.transforms import Preprocess
from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle


def make_bundle(folder: Path, name: str = "inception_v4_attention", size: int = 75, seed: int = 0) -> Path:
    """A randomly initialised model saved as a bundle (attention masks made non-uniform)."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"attention_init": "he"} if name == "inception_v4_attention" else {}
    model = octattn.create_model(name, **kwargs)
    model.train()
    with torch.no_grad():  # settle BatchNorm statistics so eval-mode outputs are moderate
        for _ in range(3):
            model(torch.randn(8, 1, size, size))
    config = BundleConfig(architecture=architecture_of(name, model), preprocess=Preprocess(size=(size, size)))
    return save_bundle(folder, model.eval(), config)
