"""CPU inference: every path octattn offers, their speed, and their agreement with fp32.

Run: ``.venv/bin/python -m benchmarks.inference [--size 299] [--model BUNDLE]``.

Speed: the attention model (random weights: speed does not depend on them), one process,
all cores, batch-1 latency (median of 10) and batch-16 throughput (median of 3), each
after warm-up, for: eager fp32 (default layout, and channels_last: octattn's path), bf16
autocast, torch.compile, ONNX Runtime fp32 and int8 (static QDQ, calibrated on real scans).

Agreement: *trained* bundles (``--model``, one or more; default: the newest
``runs/demo-*/run/model``) predict the 206 real scans of ``../shared/data/oct2017-mini`` under every precision and
backend; each is compared with fp32 eager: the share of scans given the same class, and
the largest difference of a calibrated probability.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REAL_DATA, REPO, median_time, write_results
from octattn.data.transforms import Preprocess
from octattn.inference.bundle import BundleConfig, architecture_of, read_bundle_config, save_bundle
from octattn.inference.onnx_export import OnnxPredictor, export_onnx
from octattn.inference.predictor import Predictor
from octattn.models import create_model
from octattn.precision import cpu_has_native_bf16

BATCH = 16


def _measure(run: Callable[[np.ndarray], object], size: int) -> tuple[float, float]:
    one = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    many = np.random.default_rng(1).standard_normal((BATCH, 1, size, size)).astype(np.float32)
    latency = median_time(lambda: run(one), repeats=10, warmup=2)
    throughput = BATCH / median_time(lambda: run(many), repeats=3, warmup=1)
    return latency * 1000, throughput


def _row(run: Callable[[np.ndarray], object], size: int) -> dict[str, float]:
    latency, throughput = _measure(run, size)
    return {"latency_ms": latency, "images_per_s": throughput}


def _real_scans() -> list[Path]:
    return sorted(p for p in REAL_DATA.rglob("*") if p.is_file() and p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def _newest_demo_model() -> Path | None:
    runs = sorted((REPO / "runs").glob("demo-*/run/model"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def model_label(path: Path) -> str:
    """A bundle's name for the tables: its run folder's name and input size, never a machine's path."""
    config = read_bundle_config(path)
    run = path.parent.name if path.name == "model" else path.name
    return f"`{run}` ({config.preprocess.size[0]} px)"


def speed(size: int, work: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Throughput and latency of every path at ``size`` px (random weights)."""
    torch.manual_seed(0)
    model = create_model("inception_v4_attention").eval()
    results: dict[str, dict[str, float]] = {}

    def eager(layout: torch.memory_format, dtype: torch.dtype | None) -> Callable[[np.ndarray], object]:
        def run(x: np.ndarray) -> object:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                return model(torch.from_numpy(x).contiguous(memory_format=layout))

        return run

    results["eager fp32, default layout"] = _row(eager(torch.contiguous_format, None), size)
    model.to(memory_format=torch.channels_last)
    results["eager fp32, channels_last (octattn fp32)"] = _row(eager(torch.channels_last, None), size)
    results["eager bf16 autocast, channels_last (octattn bf16)"] = _row(
        eager(torch.channels_last, torch.bfloat16), size
    )
    compiled = torch.compile(model)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(torch.zeros(1, 1, size, size).contiguous(memory_format=torch.channels_last))
        compiled(torch.zeros(BATCH, 1, size, size).contiguous(memory_format=torch.channels_last))
    compile_seconds = time.perf_counter() - start

    def compiled_run(x: np.ndarray) -> object:
        with torch.no_grad():
            return compiled(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    results["torch.compile fp32"] = _row(compiled_run, size)
    import onnxruntime

    config = BundleConfig(architecture_of("inception_v4_attention", model), Preprocess(size=(size, size)))
    bundle = save_bundle(work / "speed-model", model, config)
    for name, path in (
        ("ONNX Runtime fp32", export_onnx(bundle, work / "speed-fp32.onnx")),
        (
            "ONNX Runtime int8 (QDQ)",
            export_onnx(bundle, work / "speed-int8.onnx", quantize="int8", calibration=REAL_DATA),
        ),
    ):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def ort_run(x: np.ndarray, session: Any = session) -> object:
            return session.run(None, {"scan": x})

        results[name] = _row(ort_run, size)
    return results, compile_seconds


CAPPED = """
import json, sys, torch
from benchmarks.common import median_time
from octattn.models import create_model
torch.manual_seed(0)
size, batch = int(sys.argv[1]), int(sys.argv[2])
model = create_model("inception_v4_attention").eval().to(memory_format=torch.channels_last)
x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
found = {}
for name, bf16 in (("eager fp32", False), ("eager bf16 autocast", True)):
    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
    found[name] = batch / median_time(run, repeats=3, warmup=1)
print(json.dumps(found))
"""


def capped_isa(size: int, isa: str = "AVX2") -> dict[str, float]:
    """Throughput of the torch paths with oneDNN capped at ``isa`` (``ONEDNN_MAX_CPU_ISA``):
    an approximation of a CPU without AVX-512, AVX512-BF16 or VNNI."""
    import json
    import os
    import subprocess

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "DNNL_MAX_CPU_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-c", CAPPED, str(size), str(BATCH)],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return {name: float(v) for name, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def agreement(model_path: Path, work: Path) -> dict[str, dict[str, float]]:
    """Each path against fp32 eager on the real scans: same class share, largest probability gap."""
    scans = _real_scans()
    reference = Predictor(model_path, precision="fp32").predict_files(scans, 16).predictions
    paths: dict[str, Predictor] = {
        "eager bf16 autocast": Predictor(model_path, precision="bf16"),
        "ONNX Runtime fp32": OnnxPredictor(model_path, export_onnx(model_path, work / "agree-fp32.onnx")),
        "ONNX Runtime int8 (QDQ)": OnnxPredictor(
            model_path,
            export_onnx(model_path, work / "agree-int8.onnx", quantize="int8", calibration=REAL_DATA / "train"),
        ),
    }
    found = {}
    for name, predictor in paths.items():
        rows = predictor.predict_files(scans, 16).predictions
        same = [a.label == b.label for a, b in zip(reference, rows, strict=True)]
        gap = max(
            abs(a.probabilities[c] - b.probabilities[c])
            for a, b in zip(reference, rows, strict=True)
            for c in a.probabilities
        )
        found[name] = {"scans": len(rows), "class_agreement": float(np.mean(same)), "max_probability_difference": gap}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument(
        "--model", nargs="+", help="trained bundles for the agreement check (default: the newest demo model)"
    )
    args = parser.parse_args()
    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime's quantizer warns per BatchNorm weight
    newest = _newest_demo_model()
    model_paths = [Path(m) for m in args.model] if args.model else ([newest] if newest else [])
    with tempfile.TemporaryDirectory() as tmp:
        results, compile_seconds = speed(args.size, Path(tmp))
        capped = capped_isa(args.size)
        agreed = {model_label(m): agreement(m, Path(tmp)) for m in model_paths} if REAL_DATA.is_dir() else {}
    write_results(
        "inference",
        {
            "size": args.size,
            "batch": BATCH,
            "native_bf16": cpu_has_native_bf16(),
            "results": results,
            "compile_seconds": compile_seconds,
            "onednn_capped_at_avx2": capped,
            "agreement": agreed,
        },
        table,
    )
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' tables of an ``inference.json``."""
    speeds = results["results"]
    base = speeds["eager fp32, channels_last (octattn fp32)"]["images_per_s"]
    lines = [
        f"| path (attention model, {results['size']} px, CPU) | batch-1 latency ms | batch-{results['batch']} img/s "
        "| vs octattn fp32 |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['latency_ms']:.0f} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |"
            for name, r in speeds.items()
        ),
        "",
        f"Native bf16 on this CPU: {'yes' if results['native_bf16'] else 'no'}. torch.compile's first calls took "
        f"{results['compile_seconds']:.0f} s. With oneDNN capped at AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, an approximation "
        "of a CPU without AVX-512, AVX512-BF16 or VNNI): "
        + ", ".join(f"{name} {value:.1f} img/s" for name, value in results["onednn_capped_at_avx2"].items())
        + " (what `auto` avoids: bf16 without hardware support).",
    ]
    for model, by_path in results["agreement"].items():
        scans = next(iter(by_path.values()))["scans"]
        lines += [
            "",
            f"| agreement with fp32 eager ({scans} real scans, {model}) | same class "
            "| largest probability difference |",
            "| --- | ---: | ---: |",
            *(
                f"| {name} | {100 * a['class_agreement']:.1f}% | {a['max_probability_difference']:.4f} |"
                for name, a in by_path.items()
            ),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
