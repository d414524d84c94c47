"""benchmarks.suite: the temporary disk as its probe samples it, and what the benchmark reads from the samples."""

import os
from pathlib import Path

from benchmarks.suite import analyse, pytest_summary, table
from benchmarks.suite_probe import existing_entries, sample


def _file(path: Path, megabytes: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(megabytes << 20))
    return path


def test_the_probe_counts_what_the_suite_added_and_each_hard_link_once(tmp_path):
    _file(tmp_path / "before" / "old.bin", 2)
    _file(tmp_path / "pytest-of-me" / "pytest-1" / "old-run.bin", 2)
    baseline = set(existing_entries(tmp_path))
    weights = _file(tmp_path / "pytest-of-me" / "pytest-2" / "shared" / "model.safetensors", 3)
    (tmp_path / "pytest-of-me" / "pytest-2" / "copy").mkdir()
    os.link(weights, tmp_path / "pytest-of-me" / "pytest-2" / "copy" / "model.safetensors")
    _file(tmp_path / "ort.quant.x" / "augmented.onnx", 1)
    sizes = {Path(path).relative_to(tmp_path).as_posix(): size for path, size in sample(tmp_path, baseline).items()}
    assert set(sizes) == {"pytest-of-me/pytest-2/shared", "pytest-of-me/pytest-2/copy", "ort.quant.x"}
    assert 3 << 20 <= sizes["pytest-of-me/pytest-2/shared"] + sizes["pytest-of-me/pytest-2/copy"] < 4 << 20  # one copy
    assert 1 << 20 <= sizes["ort.quant.x"] < 2 << 20


def test_the_peak_names_what_held_the_disk_and_what_each_worker_ran():
    run = "/tmp/pytest-of-me/pytest-7/popen-gw0"
    samples = {
        "gw0": [
            {"t": 0.0, "test": "a.py::train@writes-runs", "total": 1e9, "sizes": {run: 1e9}},
            {"t": 2.0, "test": "a.py::train@writes-runs", "total": 2.5e9, "sizes": {run: 2e9, "/tmp/ort.quant.q": 5e8}},
            {"t": 4.0, "test": "a.py::light", "total": 1e8, "sizes": {}},
            {"t": 5.0, "test": "a.py::light", "total": 1e8, "sizes": {}},
        ],
        "gw1": [
            {"t": 0.5, "test": "b.py::one", "total": 1e9, "sizes": {}},
            {"t": 1.5, "test": "b.py::two", "total": 2e9, "sizes": {}},
            {"t": 3.5, "test": "b.py::three", "total": 1e9, "sizes": {}},
        ],
    }
    found = analyse(samples)
    assert found["peak_gb"] == 2.5 and found["peak_after_s"] == 2.0
    assert found["running_at_peak"] == {"gw0": "a.py::train@writes-runs", "gw1": "b.py::two"}
    assert found["held_at_peak_gb"] == {"pytest-7/popen-gw0": 2.0, "ort.quant.q": 0.5}
    assert found["worker_seconds"]["gw0"] == {"takes_turns": 4.0, "other": 1.0}
    assert found["worker_seconds"]["gw1"] == {"takes_turns": 0.0, "other": 3.0}
    summary = pytest_summary("498 passed, 2 skipped, 6 warnings in 403.36s (0:06:43)\n")
    assert summary == {"counts": {"passed": 498, "skipped": 2}, "pytest_s": 403.36}
    results = {"workers": 2, "wall_s": 410.0, **summary, **found, "targets": {"minutes": 8.0, "temporary_gb": 2.0}}
    text = table(results)
    assert "| temporary disk, peak | 2.50 GB | 2 GB |" in text and "| pytest's time | 6.7 min | 8 min |" in text
    assert "gw1: `two`" in text
