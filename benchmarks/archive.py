"""Archive-scale prediction: local ``predict`` against ``--engine ray`` with 1 and 2 workers on
the same inputs (phantom B-scans at 299 px, written as PNG files), on this machine.

Each engine runs in its own child process (a fresh Ray for each Ray run), on the same bundle
and backend; reported: scans/s, Ray's overhead per scan against local ``predict``, the peak
resident memory of the whole process tree, and whether the rows agree.

Run: ``python -m benchmarks.archive [--scans 2000] [--backend onnxruntime]``; writes
``results/archive.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from benchmarks.common import write_results
from octattn.data.phantom import generate_phantom


def write_phantoms(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` phantom B-scans (all classes) as 512x496 PNG files, like OCT2017's."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = generate_phantom(i % 4, rng, width=512, height=496).image
        path = folder / f"scan-{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def timed(command: list[str]) -> dict[str, Any]:
    """Wall time and peak memory (the whole process tree, sampled every 0.2 s) of a command."""
    start = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join(timeout=1)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{output[-3000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak[0] / 2**20, "output_tail": output[-400:]}


def _rows_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {r["source"]: r for r in csv.DictReader(handle)}


def main() -> int:
    """Measure each engine and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=2000)
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="onnxruntime")
    parser.add_argument("--model", help="a bundle (default: the attention model with random weights at 299 px)")
    args = parser.parse_args()
    from tests.model_fixtures import make_bundle

    from octattn.inference.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = Path(args.model) if args.model else make_bundle(work / "model", size=299)
        paths = write_phantoms(work / "scans", args.scans)
        engine = ["--precision", "fp32"]
        if args.backend == "onnxruntime":
            onnx = export_onnx(model, work / "int8.onnx", quantize="int8", calibration=work / "scans")
            engine = ["--backend", "onnxruntime", "--onnx", str(onnx)]
        base = [sys.executable, "-m", "octattn", "--quiet", "predict", str(model), str(work / "scans"), *engine]
        runs: dict[str, dict[str, Any]] = {}
        runs["local predict"] = timed([*base, "--out", str(work / "local.csv")])
        local = _rows_csv(work / "local.csv")
        for workers in (1, 2):
            out = work / f"ray{workers}"
            name = f"Ray, {workers} worker(s)"
            runs[name] = timed([*base, "--engine", "ray", "--workers", str(workers), "--out", str(out), "--csv"])
            rows = {str(Path(k).resolve()): v for k, v in _rows_csv(out / "predictions.csv").items()}
            same = sum(
                rows.get(str(Path(s).resolve()), {}).get("class") == r["class"]
                and abs(float(rows[str(Path(s).resolve())]["p_CNV"]) - float(r["p_CNV"])) <= 1e-5
                for s, r in local.items()
            )
            runs[name]["agreement"] = same / len(local)
        for r in runs.values():
            r["scans_per_s"] = len(paths) / r["seconds"]
            r.pop("output_tail")
    base_rate = runs["local predict"]["scans_per_s"]
    for r in runs.values():
        r["vs_local"] = r["scans_per_s"] / base_rate
        r["overhead_ms_per_scan"] = 1000 * (1 / r["scans_per_s"] - 1 / base_rate)
    write_results("archive", {"scans": len(paths), "size": 299, "backend": args.backend, "engines": runs}, table)
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' table of an ``archive.json``."""
    lines = [
        f"| engine ({results['scans']} phantom scans at {results['size']} px, backend {results['backend']}) "
        "| scans/s | vs local | overhead per scan | peak memory (all processes) | same rows as local |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["engines"].items():
        agreement = f"{100 * r['agreement']:.1f}%" if "agreement" in r else "-"
        lines.append(
            f"| {name} | {r['scans_per_s']:.1f} | {r['vs_local']:.2f}x | {r['overhead_ms_per_scan']:+.1f} ms "
            f"| {r['peak_rss_mib'] / 1024:.2f} GiB | {agreement} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
