"""GPU training throughput: bf16 autocast, channels_last, torch.compile off and on.

Run on a CUDA machine: ``python -m benchmarks.gpu`` (``benchmarks/gpu.sh`` runs this and
an end-to-end torchrun training). Attention model and plain Inception-v4 at 299 px,
batch 256, policy "all" (full fine-tuning, the heaviest) and "paper"; peak GPU memory.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from benchmarks.common import write_results
from benchmarks.models import training_rate

BATCH = 256
SIZE = 299
PAPER_EPOCH_IMAGES = 108_309 + 2 * (11_348 + 8_616)  # OCT2017 train, DME and DRUSEN tripled


def _row(key: str, result: dict[str, float]) -> str:
    name, policy, mode = key.split("/")
    minutes = 20 * PAPER_EPOCH_IMAGES / result["images_per_s"] / 60
    compiled = "on" if mode == "compile" else "off"
    return (
        f"| {name} | {policy} | {compiled} | {result['images_per_s']:,.0f} | {result['peak_gib']:.1f} | {minutes:.0f} |"
    )


def table(payload: dict[str, Any]) -> str:
    """The throughput table, rendered from the results JSON (``write_results`` calls it with
    the payload, as the docs' tables do)."""
    return "\n".join(
        [
            f"Device: {payload['device']}.",
            "",
            f"| model | policy | torch.compile | train img/s (bf16, batch {payload['batch']}, {payload['size']} px) "
            "| peak GiB | 20 paper epochs, min |",
            "| --- | --- | --- | ---: | ---: | ---: |",
            *(_row(key, result) for key, result in payload["results"].items()),
        ]
    )


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine")
        return 1
    torch.backends.cudnn.benchmark = True
    results: dict[str, dict[str, float]] = {}
    for name in ("inception_v4_attention", "inception_v4"):
        for policy in ("paper", "all"):
            for compiled in (False, True):
                torch.cuda.reset_peak_memory_stats()
                rate = training_rate(name, SIZE, BATCH, policy=policy, repeats=10, compile=compiled)
                peak = torch.cuda.max_memory_allocated() / 2**30
                key = f"{name}/{policy}/{'compile' if compiled else 'eager'}"
                results[key] = {"images_per_s": rate, "peak_gib": peak}
                print(_row(key, results[key]), flush=True)
    write_results(
        "gpu", {"batch": BATCH, "size": SIZE, "results": results, "device": torch.cuda.get_device_name(0)}, table
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
