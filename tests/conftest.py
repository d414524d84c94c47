"""Shared fixtures: the real-scan sample folder, and cached models for cheap tests."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from filelock import FileLock
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

WRITES_RUNS = pytest.mark.xdist_group("writes-runs")
"""For tests that train runs, build ensembles or quantise a model: 0.5-1.1 GB of temporary
disk each at their peak (a checkpoint beside its bundle; onnxruntime's copies of a graph).
`make test` (``--dist loadgroup``) runs them one after another on one worker, so that two of
them never hold their disk at once."""


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


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time: what a test must not change."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def link_weights(source: str, target: str) -> str:
    """``shutil.copytree``'s ``copy_function`` for copies of bundles and runs: weights files
    (``*.safetensors``) are hard links, everything else is copied. The suite's disk then holds
    one copy of a 0.2 GB model however many tests wrap it. octattn replaces a weights file,
    never writes into one; ``built_once`` fails the suite where a shared fixture's file changed."""
    if source.endswith(".safetensors"):
        os.link(source, target)
        return target
    return str(shutil.copy2(source, target))


@contextmanager
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Iterator[Path]:
    """A folder that ``build`` fills once for the whole suite, shared by pytest-xdist's workers.

    Each worker used to build its own copy of every session fixture: the bundles, their ONNX
    export and the tiny demo, 0.9 GB and a minute of CPU twice over. The first worker builds
    under a file lock in the run's common temporary folder (the pattern pytest-xdist documents),
    the others wait and reuse it. Shared means read-only: at the end of the session each worker
    checks that no file in it was added, removed or rewritten, so that a test that writes
    into a shared fixture fails instead of racing with another worker's tests.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N: common to every worker of this run
    folder = root / f"shared-{name}"
    with FileLock(f"{folder}.lock"):
        done = folder / ".built"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a build that failed in another worker left
            folder.mkdir()
            build(folder)
            done.touch()
    before = listing(folder)
    yield folder
    assert listing(folder) == before, f"a test changed the shared fixture {folder}; copy it first"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Iterator[Path]:
    """An attention-model bundle at 75 px (random weights, non-uniform masks), one for the suite."""
    with built_once(tmp_path_factory, "bundle", lambda out: make_bundle(out / "model")) as folder:
        yield folder / "model"


@pytest.fixture(scope="session")
def plain_bundle(tmp_path_factory) -> Iterator[Path]:
    """A plain Inception-v4 bundle at 75 px, one for the suite."""
    with built_once(tmp_path_factory, "plain", lambda out: make_bundle(out / "model", name="inception_v4")) as folder:
        yield folder / "model"


DEMO_TINY = ["image_size=75", "epochs=1", "batch_size=8", "bn_recalibrate=8", "threads=1", "warmup_steps=1"]
"""The demo's code path at a tiny size (the real demo is measured by benchmarks/demo.py)."""


def build_demo(folder: Path) -> None:
    """Run the tiny demo into ``folder/out`` and keep what it said in ``folder/result.json``."""
    result = run_demo(
        folder / "out", overrides=DEMO_TINY, train_per_class=4, test_per_class=2, progress=False, log=lambda _: None
    )
    said = {key: str(value) if isinstance(value, Path) else value for key, value in dataclasses.asdict(result).items()}
    (folder / "result.json").write_text(json.dumps(said))


@pytest.fixture(scope="session")
def demo_result(tmp_path_factory) -> Iterator[DemoResult]:
    """One tiny demo for the suite: phantoms, a run, its evaluation and its report."""
    with built_once(tmp_path_factory, "demo", build_demo) as folder:
        said = json.loads((folder / "result.json").read_text())
        yield DemoResult(Path(said["out_dir"]), Path(said["report"]), said["accuracy"], said["seconds"])


@pytest.fixture(scope="session")
def demo_dir(demo_result: DemoResult) -> Path:
    """The tiny demo's folder."""
    return demo_result.out_dir


@pytest.fixture(scope="session")
def bundle_onnx(bundle: Path, tmp_path_factory) -> Iterator[Path]:
    """The test bundle exported to ONNX once for the suite (exporting takes seconds)."""
    from octattn.inference.onnx_export import export_onnx

    with built_once(tmp_path_factory, "onnx", lambda out: export_onnx(bundle, out / "bundle.onnx")) as folder:
        yield folder / "bundle.onnx"
