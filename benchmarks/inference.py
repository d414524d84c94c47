"""CPU inference: eager PyTorch vs torch.compile vs ONNX Runtime, latency and throughput.

Run: ``.venv/bin/python -m benchmarks.inference [--size 299]``. The attention model with
random weights (speed does not depend on them), one process, all cores; batch-1 latency
(median of 10) and batch-32 throughput (median of 3), each after warm-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import median_time, write_results
from octattn.data.transforms import Preprocess
from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle
from octattn.inference.onnx_export import export_onnx
from octattn.models import create_model


def _measure(run: Callable[[np.ndarray], object], size: int) -> tuple[float, float]:
    one = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    many = np.random.default_rng(1).standard_normal((32, 1, size, size)).astype(np.float32)
    latency = median_time(lambda: run(one), repeats=10, warmup=2)
    throughput = 32 / median_time(lambda: run(many), repeats=3, warmup=1)
    return latency * 1000, throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=299)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("inception_v4_attention").eval()
    results: dict[str, dict[str, float]] = {}

    def eager_default(x: np.ndarray) -> object:
        with torch.no_grad():
            return model(torch.from_numpy(x))

    def eager(x: np.ndarray) -> object:  # what octattn's Predictor runs
        with torch.no_grad():
            return model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    results["eager PyTorch, default layout"] = dict(
        zip(("latency_ms", "images_per_s"), _measure(eager_default, args.size), strict=True)
    )
    model.to(memory_format=torch.channels_last)
    results["eager PyTorch, channels_last (octattn)"] = dict(
        zip(("latency_ms", "images_per_s"), _measure(eager, args.size), strict=True)
    )
    compiled = torch.compile(model)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(torch.zeros(1, 1, args.size, args.size))
        compiled(torch.zeros(32, 1, args.size, args.size))
    compile_seconds = time.perf_counter() - start

    def compiled_run(x: np.ndarray) -> object:
        with torch.no_grad():
            return compiled(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    results["torch.compile"] = dict(zip(("latency_ms", "images_per_s"), _measure(compiled_run, args.size), strict=True))
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        config = BundleConfig(architecture_of("inception_v4_attention", model), Preprocess(size=(args.size, args.size)))
        bundle = save_bundle(Path(tmp) / "model", model, config)
        onnx_path = export_onnx(bundle, Path(tmp) / "m.onnx")
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        reference = eager(np.ones((2, 1, args.size, args.size), dtype=np.float32))
        check = session.run(None, {"scan": np.ones((2, 1, args.size, args.size), dtype=np.float32)})[0]
        difference = float(np.abs(np.asarray(reference) - check).max())

        def ort_run(x: np.ndarray) -> object:
            return session.run(None, {"scan": x})

        results["ONNX Runtime"] = dict(zip(("latency_ms", "images_per_s"), _measure(ort_run, args.size), strict=True))
    base = results["eager PyTorch, channels_last (octattn)"]["images_per_s"]
    rows = [
        f"| {name} | {r['latency_ms']:.0f} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |"
        for name, r in results.items()
    ]
    table = "\n".join(
        [
            f"| backend (attention model, {args.size} px, CPU) | batch-1 latency ms | batch-32 img/s "
            "| vs octattn eager |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
            f"torch.compile's first calls took {compile_seconds:.0f} s; ONNX logits differ from eager by at most "
            f"{difference:.1e}.",
        ]
    )
    write_results(
        "inference",
        {
            "size": args.size,
            "results": results,
            "compile_seconds": compile_seconds,
            "onnx_max_logit_difference": difference,
        },
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
