"""What an ensemble bundle costs at inference: one network against two and three seeds as one.

Run: ``.venv/bin/python -m benchmarks.ensemble [--size 147] [--members 2 3]``.

Plain Inception-v4 (the model whose two-seed ensemble passes 80% on the 307 real OCT2017
scans, ``benchmarks/real_scans.py``), random weights (speed does not depend on them), at the
real-scan benchmark's 147 px and at the paper's 299 px, through :class:`Predictor` (octattn's
path: channels_last, each member's calibration, the mean of probabilities), one process, all
cores: batch-1 latency (median of 10) and batch-16 throughput (median of 3), in fp32 and under
bf16 autocast where the CPU computes bf16 natively. The ratio to one network is the price.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import median_time, write_results
from octattn.data.transforms import Preprocess
from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle
from octattn.inference.ensemble import build_ensemble
from octattn.inference.predictor import Predictor
from octattn.models import create_model
from octattn.precision import cpu_has_native_bf16

BATCH = 16
MODEL = "inception_v4"


def _member(folder: Path, size: int, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model(MODEL).eval()
    config = BundleConfig(architecture=architecture_of(MODEL, model), preprocess=Preprocess(size=(size, size)))
    return save_bundle(folder, model, config)


def _speed(model: Path, size: int, precision: str) -> dict[str, float]:
    predictor = Predictor(model, precision=precision)
    one = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32))
    many = torch.from_numpy(np.random.default_rng(1).standard_normal((BATCH, 1, size, size)).astype(np.float32))
    latency = median_time(lambda: predictor.logits(one), repeats=10, warmup=2)
    throughput = BATCH / median_time(lambda: predictor.logits(many), repeats=3, warmup=1)
    return {"latency_ms": 1000 * latency, "images_per_s": throughput}


def measure(sizes: list[int], member_counts: list[int], work: Path) -> dict[str, Any]:
    """``{size: {precision: {"1": row, "2": row, ...}}}`` with each row's latency and throughput."""
    precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    results: dict[str, Any] = {}
    for size in sizes:
        members = [_member(work / f"{size}-{seed}", size, seed) for seed in range(max(member_counts))]
        models = {"1": members[0]}
        for count in member_counts:
            models[str(count)] = work / f"{size}-ensemble-{count}"
            build_ensemble(members[:count], models[str(count)])
        results[str(size)] = {
            precision: {count: _speed(path, size, precision) for count, path in models.items()}
            for precision in precisions
        }
    return results


def table(results: dict[str, Any]) -> str:
    """The docs' table of an ``ensemble.json``."""
    lines = [
        f"| {MODEL}, CPU | members | batch-1 latency ms | batch-{results['batch']} img/s | time vs one network |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for size, by_precision in results["results"].items():
        for precision, rows in by_precision.items():
            base = rows["1"]["images_per_s"]
            lines += [
                f"| {size} px, {precision} | {count} | {row['latency_ms']:.0f} | {row['images_per_s']:.1f} "
                f"| {base / row['images_per_s']:.2f}x |"
                for count, row in rows.items()
            ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[147, 299])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.size, args.members, Path(tmp))
    write_results("ensemble", {"model": MODEL, "batch": BATCH, "results": results}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
