"""A pytest plugin for ``benchmarks.suite``: what the test suite holds on the temporary disk.

Loaded with ``-p benchmarks.suite_probe``; idle unless ``OCTATTN_SUITE_PROBE`` names a folder.
Each process that runs tests (each pytest-xdist worker) samples, every
:data:`INTERVAL_S` seconds, the size of every entry of the temporary folder that was not there
when the suite started (pytest's folder of this run, octattn's and onnxruntime's scratch
folders, anything else a test leaves there), hard links counted once, and appends one JSON
line to ``OCTATTN_SUITE_PROBE/<worker>.jsonl`` with the test it is running.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

INTERVAL_S = 0.4
BASELINE_FILE = "baseline.json"
"""Written by ``benchmarks.suite`` before pytest starts: the entries that are not the suite's."""

_current = {"test": ""}


def existing_entries(root: Path) -> list[str]:
    """The temporary folder's entries now, with those of pytest's per-user folders: the
    baseline that the samples leave out."""
    names = []
    for entry in os.scandir(root):
        names.append(entry.path)
        if entry.name.startswith("pytest-of-") and entry.is_dir(follow_symlinks=False):
            names.extend(inner.path for inner in os.scandir(entry.path))
    return names


def tree_bytes(path: str, seen: set[tuple[int, int]]) -> int:
    """Bytes allocated to the files under ``path`` (or to ``path`` itself), each inode once."""
    if os.path.isdir(path) and not os.path.islink(path):
        files = [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]
    else:
        files = [path]
    total = 0
    for file in files:
        try:
            stat = os.lstat(file)
        except OSError:  # removed while we looked: the suite cleans up as it goes
            continue
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512
    return total


def sample(root: Path, baseline: set[str]) -> dict[str, int]:
    """Bytes under each entry of ``root`` not in ``baseline``; pytest's folder of this run is
    split into its own entries (each worker's folder, each shared fixture)."""
    seen: set[tuple[int, int]] = set()
    sizes = {}
    for path in existing_entries(root):
        if path in baseline or os.path.basename(path).startswith("pytest-of-"):
            continue
        in_pytest = os.path.basename(os.path.dirname(path)).startswith("pytest-of-")
        if in_pytest and os.path.isdir(path) and not os.path.islink(path):
            for inner in os.scandir(path):
                sizes[inner.path] = tree_bytes(inner.path, seen)
        else:
            sizes[path] = tree_bytes(path, seen)
    return sizes


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    """Remember the test this process runs now."""
    _current["test"] = nodeid


def pytest_configure(config: Any) -> None:
    """Start sampling in a process that runs tests (not in pytest-xdist's controller)."""
    folder = os.environ.get("OCTATTN_SUITE_PROBE")
    if not folder or (config.getoption("numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER")):
        return
    out = Path(folder)
    baseline = set(json.loads((out / BASELINE_FILE).read_text()))
    root = Path(tempfile.gettempdir())
    log = (out / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl").open("a")

    def loop() -> None:
        while True:
            sizes = sample(root, baseline)
            big = {path: size for path, size in sizes.items() if size > 1e6}
            row = {"t": time.time(), "test": _current["test"], "total": sum(sizes.values()), "sizes": big}
            log.write(json.dumps(row) + "\n")
            log.flush()
            time.sleep(INTERVAL_S)

    threading.Thread(target=loop, daemon=True, name="suite-disk-probe").start()
