"""Load on ``octattn serve``: 200 requests from 8 concurrent clients to 127.0.0.1.

Run: ``.venv/bin/python -m benchmarks.serve_load [--model BUNDLE] [--size 299]``. Without
``--model`` a randomly initialised attention model at ``--size`` is served (latency does
not depend on the weights). Uploads are real scans from oct2017-mini. Reports errors,
p50 / p99 latency, throughput and the server's peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import REAL_DATA, write_results

REQUESTS = 200
CLIENTS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _random_bundle(folder: Path, size: int) -> Path:
    from octattn.data.transforms import Preprocess
    from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle
    from octattn.models import create_model

    model = create_model("inception_v4_attention")
    return save_bundle(
        folder,
        model.eval(),
        BundleConfig(architecture_of("inception_v4_attention", model), Preprocess(size=(size, size))),
    )


def _load(model: str, engine: list[str], scans: list[bytes]) -> dict[str, float]:
    """200 requests from 8 clients against one ``octattn serve`` process started with ``engine``."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "octattn", "serve", model, "--port", str(port), *engine],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        idle_rss = _peak_rss_mib(server.pid)

        def call(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            with httpx.Client(timeout=120) as client:
                files = {"file": ("scan.jpeg", scans[i % len(scans)], "image/jpeg")}
                status = client.post(f"{url}/v1/predict", files=files).status_code
            return status, time.perf_counter() - start

        for i in range(CLIENTS):  # warm-up: first passes allocate and pick kernels
            call(i)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            results = list(pool.map(call, range(REQUESTS)))
        wall = time.perf_counter() - start
        peak_rss = _peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = np.array([t for _, t in results]) * 1000
    return {
        "errors": sum(status != 200 for status, _ in results),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "requests_per_s": REQUESTS / wall,
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": peak_rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a bundle to serve (default: random weights)")
    parser.add_argument("--size", type=int, default=299)
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    scans = [p.read_bytes() for p in sorted((REAL_DATA / "test").rglob("*.jpeg"))]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(_random_bundle(Path(tmp) / "model", args.size))
        from octattn.inference.onnx_export import export_onnx

        int8 = export_onnx(model, Path(tmp) / "int8.onnx", quantize="int8", calibration=REAL_DATA / "train")
        engines = {
            "torch fp32": ["--precision", "fp32"],
            "torch bf16": ["--precision", "bf16"],
            "onnxruntime int8": ["--backend", "onnxruntime", "--onnx", str(int8)],
        }
        for name, engine in engines.items():
            results[name] = _load(model, engine, scans)
    write_results(
        "serve_load", {"requests": REQUESTS, "clients": CLIENTS, "size": args.size, "engines": results}, table
    )
    return 1 if any(r["errors"] for r in results.values()) else 0


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``serve_load.json``."""
    engines = results["engines"]
    names = list(engines)
    rows: list[tuple[str, Callable[[dict[str, float]], str]]] = [
        ("errors", lambda r: f"{r['errors']}"),
        ("p50 latency", lambda r: f"{r['p50_ms']:.0f} ms"),
        ("p99 latency", lambda r: f"{r['p99_ms']:.0f} ms"),
        ("throughput", lambda r: f"{r['requests_per_s']:.1f} requests/s"),
        ("server resident memory: idle / peak", lambda r: f"{r['idle_rss_mib']:.0f} / {r['peak_rss_mib']:.0f} MiB"),
    ]
    header = (
        f"| service load ({results['requests']} requests, {results['clients']} clients, attention model, "
        f"{results['size']} px, CPU) | " + " | ".join(names) + " |"
    )
    return "\n".join(
        [
            header,
            "| --- |" + " ---: |" * len(names),
            *(f"| {label} | " + " | ".join(fmt(engines[n]) for n in names) + " |" for label, fmt in rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
