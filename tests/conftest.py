"""Shared fixtures: the real-scan sample folder, and cached models for cheap tests."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch import nn

import octattn
from octattn.demo import DemoResult, run_demo
from tests.model_fixtures import make_bundle

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the suite in parallel processes (pytest-xdist): one thread each, and
    # in the CLI subprocesses they start, so that the workers share the cores, not fight.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

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


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """An attention-model bundle at 75 px (random weights, non-uniform masks), one for the suite."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="session")
def plain_bundle(tmp_path_factory) -> Path:
    """A plain Inception-v4 bundle at 75 px, one for the suite."""
    return make_bundle(tmp_path_factory.mktemp("plain") / "model", name="inception_v4")


DEMO_TINY = ["image_size=75", "epochs=1", "batch_size=8", "bn_recalibrate=8", "threads=1", "warmup_steps=1"]
"""The demo's code path at a tiny size (the real demo is measured by benchmarks/demo.py)."""


@pytest.fixture(scope="session")
def demo_result(tmp_path_factory) -> DemoResult:
    """One tiny demo for the suite: phantoms, a run, its evaluation and its report."""
    out = tmp_path_factory.mktemp("demo") / "out"
    return run_demo(out, overrides=DEMO_TINY, train_per_class=4, test_per_class=2, progress=False, log=lambda _: None)


@pytest.fixture(scope="session")
def demo_dir(demo_result: DemoResult) -> Path:
    """The tiny demo's folder."""
    return demo_result.out_dir


@pytest.fixture(scope="session")
def bundle_onnx(bundle: Path, tmp_path_factory) -> Path:
    """The test bundle exported to ONNX once for the suite (exporting takes seconds)."""
    from octattn.inference.onnx_export import export_onnx

    return export_onnx(bundle, tmp_path_factory.mktemp("onnx") / "bundle.onnx")
