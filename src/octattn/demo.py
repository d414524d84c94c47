"""``octattn demo``: the main job on its embedded default, offline, on a CPU.

Generates phantoms (or uses ``--data``), trains the attention model from scratch with
``configs/demo.yaml``, evaluates it on the held-out test split, writes the report, and
prints where everything is. Each demo writes to a new folder; nothing is overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from octattn.data.synth import write_phantom_tree
from octattn.errors import OctattnError
from octattn.evaluation.evaluate import EVALUATION_DIR, evaluate_model, format_headline, write_evaluation
from octattn.reporting.report import write_report
from octattn.training.config import load_config
from octattn.training.loop import train

DEMO_TRAIN_PER_CLASS = 200
DEMO_TEST_PER_CLASS = 50
DEMO_SEED = 2018  # the year of Kermany et al.'s data set; any seed works


def config_path(name: str) -> Path:
    """A bundled YAML preset by name (``demo``, ``paper/attention``, ...)."""
    path = Path(str(resources.files("octattn") / "configs" / f"{name}.yaml"))
    if not path.exists():
        raise OctattnError(f"no bundled config named {name!r}")
    return path


@dataclass
class DemoResult:
    """Where the demo put things, and how it did."""

    out_dir: Path
    report: Path
    accuracy: float
    seconds: float


def default_out_dir() -> Path:
    """``runs/demo-YYYYmmdd-HHMMSS``: a new folder per demo."""
    return Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"


def run_demo(
    out_dir: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    train_per_class: int = DEMO_TRAIN_PER_CLASS,
    test_per_class: int = DEMO_TEST_PER_CLASS,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole demo; ``overrides`` are ``key=value`` config changes (tests shrink it)."""
    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    if out.exists() and any(out.iterdir()):
        raise OctattnError(f"{out}: folder exists and is not empty; choose another --out")
    if data is None:
        data = out / "data"
        log(f"generating phantoms: {train_per_class} per class for training, {test_per_class} for testing ...")
        write_phantom_tree(data, {"train": train_per_class, "test": test_per_class}, seed=DEMO_SEED)
    config = load_config(config_path("demo"), [f"data={data}", *overrides])
    run_dir = out / "run"
    train(config, run_dir, progress=progress, log=log)
    log("evaluating the best epoch on the test split ...")
    result = evaluate_model(run_dir, data, "test")
    write_evaluation(result, run_dir / EVALUATION_DIR)
    log(format_headline(result.report))
    page = write_report([run_dir], out / "report", title="octattn demo: attention model on OCT phantoms")
    seconds = time.perf_counter() - start
    log(f"\ndemo finished in {seconds / 60:.1f} min: test accuracy {100 * result.report['accuracy']:.1f}%")
    log(f"report: {page}\nmodel bundle: {run_dir / 'model'}\npredictions: {run_dir / EVALUATION_DIR}")
    return DemoResult(out, page, float(result.report["accuracy"]), seconds)
