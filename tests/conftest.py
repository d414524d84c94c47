"""Shared fixtures: the real-scan sample folder, and cached models for cheap tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

import octattn

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "oct2017-mini"
VENDOR_DATA = REPO_ROOT.parent / "shared" / "data" / "vendor"


@pytest.fixture
def real_data() -> Path:
    """The 206 real OCT2017 scans beside the repository, or a skip saying why not."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real OCT sample not found at {REAL_DATA} (only present on the project's machines)")
    return REAL_DATA


@pytest.fixture
def vendor_data() -> Path:
    """The two real Heidelberg .vol exports beside the repository, or a skip saying why not."""
    if not (VENDOR_DATA / "spectralis-line.vol").is_file():
        pytest.skip(f"real vendor files not found at {VENDOR_DATA} (only present on the project's machines)")
    return VENDOR_DATA


@lru_cache(maxsize=8)
def cached_model(name: str, in_chans: int = 1) -> nn.Module:
    """A model in eval mode, built once per (name, channels) for read-only tests."""
    torch.manual_seed(0)
    return octattn.create_model(name, in_chans=in_chans).eval()
