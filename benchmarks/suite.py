"""The test suite against its two targets: under 8 minutes and under 2 GB of temporary disk.

Run: ``.venv/bin/python -m benchmarks.suite [--workers 2]``. It runs the suite as ``make
test`` does (``pytest -n WORKERS --dist loadgroup``; ``make test`` runs ruff and mypy first)
with :mod:`benchmarks.suite_probe` sampling the temporary folder from each worker, and writes
``results/suite.json`` and ``results/suite.md``: pytest's time and counts, the peak of the
temporary disk, what was on it then and which test each worker was running, and each
worker's time in the tests that take turns (``WRITES_RUNS`` in ``tests/conftest.py``) and in
the rest. Everything in the temporary folder that the suite did not find there counts,
whoever wrote it (onnxruntime's scratch folders included), so nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, write_results
from benchmarks.suite_probe import BASELINE_FILE, existing_entries

TARGET_MINUTES = 8.0
TARGET_GB = 2.0
GROUP_SUFFIX = "@writes-runs"
"""How pytest-xdist names a test of the ``writes-runs`` group."""


def read_samples(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Each worker's samples (``<worker>.jsonl``), in time order."""
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for path in sorted(folder.glob("*.jsonl"))
    }


def _short(path: str) -> str:
    """A sampled entry without the temporary folder's own path: ``pytest-3/popen-gw0``, ``ort.quant.x``."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.startswith("pytest-of-"):
            return "/".join(parts[i + 1 :])
    return parts[-1]


def analyse(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The peak of the temporary disk, what held it and what each worker ran then, and each
    worker's seconds in the tests that take turns and in the rest."""
    every = sorted((row["t"], worker, row) for worker, rows in samples.items() for row in rows)
    if not every:
        raise SystemExit("no disk samples: did pytest load benchmarks.suite_probe?")
    when, _, peak = max(every, key=lambda item: item[2]["total"])
    running = {}
    for worker, rows in samples.items():
        times = [row["t"] for row in rows]
        index = bisect.bisect_right(times, when) - 1
        running[worker] = rows[index]["test"] if index >= 0 else ""
    held = sorted(((size, _short(path)) for path, size in peak["sizes"].items()), reverse=True)
    busy: dict[str, dict[str, float]] = {}
    for worker, rows in samples.items():
        spent = {"takes_turns": 0.0, "other": 0.0}
        for row, after in pairwise(rows):
            if row["test"]:
                spent["takes_turns" if row["test"].endswith(GROUP_SUFFIX) else "other"] += after["t"] - row["t"]
        busy[worker] = {key: round(value, 1) for key, value in spent.items()}
    return {
        "peak_gb": round(peak["total"] / 1e9, 3),
        "peak_after_s": round(when - every[0][0], 1),
        "running_at_peak": running,
        "held_at_peak_gb": {name: round(size / 1e9, 3) for size, name in held[:8]},
        "worker_seconds": busy,
    }


def pytest_summary(tail: str) -> dict[str, Any]:
    """Counts and seconds from pytest's last line (``498 passed, 2 skipped ... in 403.36s``)."""
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
    seconds = re.search(r" in ([\d.]+)s", tail)
    return {"counts": counts, "pytest_s": float(seconds.group(1)) if seconds else None}


def run_suite(workers: int, probe: Path) -> tuple[int, str, float]:
    """pytest as ``make test`` runs it, with the probe; its exit code, last lines and wall time."""
    (probe / BASELINE_FILE).write_text(json.dumps(existing_entries(Path(tempfile.gettempdir()))))
    command = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadgroup", "-q"]
    command += ["-p", "benchmarks.suite_probe"]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # the probe's package
    env = {**os.environ, "OCTATTN_SUITE_PROBE": str(probe), "PYTHONPATH": path}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: deque[str] = deque(maxlen=5)
    for line in process.stdout:
        print(line, end="", flush=True)
        tail.append(line)
    return process.wait(), "".join(tail), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers, as TEST_WORKERS (default 2)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for suite.json and suite.md")
    args = parser.parse_args()
    probe = Path(tempfile.mkdtemp(prefix="octattn-suite-probe-"))
    try:
        code, tail, wall = run_suite(args.workers, probe)
        found = analyse(read_samples(probe))
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    results = {"workers": args.workers, "exit_code": code, "wall_s": round(wall, 1), **pytest_summary(tail), **found}
    results["targets"] = {"minutes": TARGET_MINUTES, "temporary_gb": TARGET_GB}
    write_results("suite", results, table, folder=args.results)
    return code


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``suite.json``."""
    counts = ", ".join(f"{n} {word}" for word, n in results["counts"].items())
    minutes = (results["pytest_s"] or results["wall_s"]) / 60
    held = ", ".join(f"{name} {gb:.2f}" for name, gb in results["held_at_peak_gb"].items())
    running = "; ".join(f"{w}: `{t.split('::')[-1]}`" for w, t in results["running_at_peak"].items() if t)
    busy = "; ".join(
        f"{w}: {s['takes_turns'] / 60:.1f} min taking turns, {s['other'] / 60:.1f} min the rest"
        for w, s in results["worker_seconds"].items()
    )
    target = results["targets"]
    rows = [
        f"| tests ({results['workers']} workers) | {counts} | - |",
        f"| pytest's time | {minutes:.1f} min | {target['minutes']:.0f} min |",
        f"| temporary disk, peak | {results['peak_gb']:.2f} GB | {target['temporary_gb']:.0f} GB |",
        f"| held at the peak (GB) | {held} | - |",
        f"| running at the peak | {running} | - |",
        f"| each worker's time | {busy} | - |",
    ]
    return "\n".join(["| the suite | measured | target |", "| --- | --- | --- |", *rows])


if __name__ == "__main__":
    sys.exit(main())
