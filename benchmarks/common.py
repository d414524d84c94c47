"""Shared helpers of the benchmarks: machine description, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "oct2017-mini"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_results(name: str, results: dict[str, Any], table: str) -> None:
    """``results/NAME.json`` (numbers + machine) and ``results/NAME.md`` (the README table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    m = payload["machine"]
    note = f"Measured {m['date'][:10]} on {m['cpu']} ({m['cores']} cores), torch {m['torch']}."
    (RESULTS / f"{name}.md").write_text(table.rstrip() + "\n\n" + note + "\n")
    print(table)
    print(note)
