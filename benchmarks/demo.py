"""``make demo``'s cost: ``octattn demo`` timed end to end in a child process, with its test
accuracy, its training speed and its peak resident memory, on this machine.

Run: ``python -m benchmarks.demo`` (about 10 minutes on a 2-core CPU); writes
``results/demo.json`` and ``results/demo.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_results

WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def run_demo(out: Path, overrides: list[str]) -> dict[str, Any]:
    """One ``octattn demo`` in a child process: seconds, peak memory and what it reported."""
    command = [sys.executable, "-m", "octattn", "--quiet", "demo", "--out", str(out), *overrides]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "run" / "evaluation" / "metrics.json").read_text())
    with (out / "run" / "metrics.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    return {
        "seconds": seconds,
        "peak_rss_mib": int(done.stderr.strip().splitlines()[-1]) / 1024,
        "accuracy": metrics["accuracy"],
        "accuracy_ci": [metrics["ci"]["accuracy"]["low"], metrics["ci"]["accuracy"]["high"]],
        "f1": metrics["f1"],
        "n": metrics["n"],
        "arithmetic": metrics.get("arithmetic"),
        "epochs": len(epochs),
        "train_images_per_s": [round(float(e["images_per_s"]), 1) for e in epochs],
        "overrides": overrides,
    }


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``demo.json``."""
    rows = []
    for r in results["runs"]:
        speeds = r["train_images_per_s"]
        rows.append(
            f"| {' '.join(r['overrides']) or 'the committed recipe'} | {r['seconds'] / 60:.1f} min "
            f"| {100 * r['accuracy']:.1f}% ({100 * r['accuracy_ci'][0]:.1f}-{100 * r['accuracy_ci'][1]:.1f}) "
            f"| {r['epochs']} | {min(speeds):.0f}-{max(speeds):.0f} | {r['peak_rss_mib'] / 1024:.2f} GiB |"
        )
    return "\n".join(
        [
            f"| `octattn demo` ({results['runs'][0]['n']} test phantoms) | wall time | test accuracy (95% CI) "
            "| epochs | training img/s | peak memory |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )


def main() -> int:
    """Time the demo (and any variants given) and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", action="append", default=[], help="key=value overrides of another run (repeatable)"
    )
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, variant in enumerate([[], *(v.split() for v in args.variant)]):
            runs.append(run_demo(Path(tmp) / f"demo{i}", variant))
            print(json.dumps(runs[-1]))
    write_results("demo", {"runs": runs}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
