"""A stand-in runner for the run-pool tests: a "run" that takes a while, records which process
made it and is reused when finished, as ``benchmarks.real_scans.run_once`` is."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

SECONDS = 1.0
"""How long a stand-in run trains."""


def run(name: str, work: Path, data: Path, overrides: list[str], split: str = "test") -> dict[str, Any]:
    """Train (sleep) unless finished; a run named ``fail-*`` fails as a bad setting does."""
    result = work / "runs" / name / "result.json"
    if result.exists():
        return {**json.loads(result.read_text()), "reused_by": os.getpid()}
    if name.startswith("fail"):
        raise SystemExit(f"{name}: finished with other settings")
    time.sleep(SECONDS)
    made = {"name": name, "data": str(data), "overrides": overrides, "split": split, "pid": os.getpid()}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(made))
    return made
