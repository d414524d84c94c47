"""The demo's code path at a tiny size (the real demo is measured, not tested)."""

import json

import pytest

from octattn.cli import main
from octattn.demo import run_demo
from octattn.errors import OctattnError

TINY = ["image_size=75", "epochs=1", "batch_size=8", "bn_recalibrate=8", "threads=1", "warmup_steps=1"]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_demo(out, overrides=TINY, train_per_class=4, test_per_class=2, progress=False, log=lambda _: None)
    assert 0.0 <= result.accuracy <= 1.0
    return out


def test_demo_writes_data_run_evaluation_and_report(demo_dir):
    assert (demo_dir / "data" / "masks").is_dir()
    run = demo_dir / "run"
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
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
