"""The demo's code path at a tiny size (the real demo is measured, not tested)."""

import json

import pytest

from octattn.cli import main
from octattn.demo import run_demo
from octattn.errors import OctattnError
from tests.conftest import DEMO_TINY as TINY


def test_demo_writes_data_run_evaluation_and_report(demo_dir, demo_result):
    assert (demo_dir / "data" / "masks").is_dir()
    run = demo_dir / "run"
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["accuracy"] == demo_result.accuracy  # what the demo says is what it measured
    assert metrics["n"] == 8 and {"ci", "roc", "referral", "ece"} <= set(metrics)
    assert len((run / "evaluation" / "predictions.csv").read_text().splitlines()) == 9
    page = (demo_dir / "report" / "index.html").read_text()
    assert "Table I: precision" in page and "data:image/png;base64," in page
    assert (demo_dir / "report" / "report.md").exists()


def test_demo_never_reuses_a_folder(demo_dir):
    with pytest.raises(OctattnError, match="not empty"):
        run_demo(demo_dir, overrides=TINY)
    assert main(["demo", "--out", str(demo_dir)]) == 2


def test_bench_runs_a_benchmark_from_the_source_tree(capsys):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "octattn", "bench", "models", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--quick" in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "nonexistent"])
    assert exit_info.value.code == 2


def test_bench_knows_every_benchmark():
    """`octattn bench NAME` offers every runnable module of benchmarks/ (docs_tables renders, it measures
    nothing; run_pool's entry is a worker that a benchmark starts)."""
    from pathlib import Path

    from octattn.cli import BENCHMARKS

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    runnable = {path.stem for path in folder.glob("*.py") if '__name__ == "__main__"' in path.read_text()}
    assert set(BENCHMARKS) == runnable - {"docs_tables", "run_pool"}
