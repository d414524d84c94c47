"""Checkpoints that survive: atomic, complete, and loadable with ``weights_only=True``.

A checkpoint holds only tensors and plain Python data (no pickled classes): the model,
optimizer, scheduler and scaler states, the epoch, RNG states, and the run's history.
It is written to a temporary file and renamed, so a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from octattn.errors import OctattnError
from octattn.io import atomic_save

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA) and Python RNG states as plain data."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically with ``torch.save``."""
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: nothing in it can execute code."""
    try:
        loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise OctattnError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise OctattnError(f"{path}: not a loadable octattn checkpoint ({type(exc).__name__}: {exc})") from exc
    return loaded
