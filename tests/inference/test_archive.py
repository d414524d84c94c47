"""Archive-scale prediction on a local Ray: the same rows as local predict, and a kill and a
resume that lose nothing and predict nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from octattn.inference.archive import predict_archive, read_shards
from octattn.inference.batch import predict_paths
from octattn.inference.predictor import Predictor
from tests.conftest import REPO_ROOT

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'octattn[ray]')")

EXTRA = REPO_ROOT.parent / "shared" / "data" / "oct2017-extra"


@pytest.fixture(scope="module")
def local_ray():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        pytest.skip(f"a local Ray cannot start here: {exc}")
    yield
    ray.shutdown()


def _real_inputs(real_data: Path, vendor_data: Path) -> list[Path]:
    scans = sorted(p for p in real_data.rglob("*") if p.suffix.lower() in (".jpeg", ".png"))
    extra = sorted(EXTRA.rglob("*.jpeg")) if EXTRA.is_dir() else []
    return [*scans, *extra, vendor_data / "spectralis-line.vol"]


def test_ray_gives_local_predicts_rows(local_ray, bundle, real_data, vendor_data, tmp_path):
    inputs = _real_inputs(real_data, vendor_data)
    local = {r["source"]: r for r in predict_paths(Predictor(bundle, precision="fp32"), inputs).rows()}
    summary = predict_archive(
        str(bundle),
        [str(p) for p in inputs],
        tmp_path / "out",
        workers=2,
        precision="fp32",
        csv=True,
        log=lambda _: None,
    )
    rows = {r["source"]: r for r in read_shards(tmp_path / "out")}
    assert set(rows) == set(local) and len(rows) == len(read_shards(tmp_path / "out"))  # nothing twice
    assert len(inputs) >= 300 and summary.volumes == 1 and summary.scans == len(inputs) - 1
    for source, row in local.items():
        assert rows[source]["class"] == row["class"] and rows[source]["referral"] == row["referral"], source
        for key, value in row.items():
            if key.startswith("p_") and value is not None:
                assert abs(rows[source][key] - value) <= 1e-5, (source, key)
    header = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0]
    assert header == ",".join(predict_paths(Predictor(bundle), []).columns())  # local predict's columns


def test_a_killed_job_resumes_without_loss_or_repeat(bundle, real_data, tmp_path):
    inputs = sorted((real_data / "train").rglob("*.jpeg"))[:32]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "octattn", "--quiet", "predict", str(bundle), *map(str, inputs)]
    command += ["--engine", "ray", "--workers", "1", "--files-per-task", "4", "--precision", "fp32", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and len(list(out.glob("part-*.parquet"))) < 2:
        time.sleep(0.2)
    assert process.poll() is None, "the job ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its Ray processes
    process.wait()
    written = read_shards(out)
    assert 0 < len(written) < len(inputs)  # killed half-way: some shards, each complete
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done, skipped" in again.stdout
    sources = [r["source"] for r in read_shards(out)]
    assert sorted(sources) == sorted(str(p.resolve()) for p in inputs)  # nothing lost, nothing twice
