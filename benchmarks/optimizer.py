"""The optimizer's share of a training step, and what torch's fused kernel saves.

Run: ``.venv/bin/python -m benchmarks.optimizer [--quick]``. The real-scan benchmark's step
(``benchmarks/real_scans.py``: 147 px, batch 16, every layer training, the training loop's
precision, channels_last) for the attention model and plain Inception-v4, with AdamW as the
loop makes it (:func:`octattn.training.loop.make_optimizer`: fused where the device has the
kernel) and as torch makes it by default on a CPU (a loop over the parameters), plus its
multi-tensor (``foreach``) form. The variants take turns, step by step, on one model and
batch, so that a CPU's clock drifting over the minutes touches them alike; each figure is a
median of its steps. The optimizer's update alone is timed the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import write_results
from octattn.models import create_model, param_groups
from octattn.precision import autocast_for, resolve_precision
from octattn.training.config import TrainConfig
from octattn.training.loop import make_optimizer
from octattn.training.steps import set_model_mode

MODELS = ("inception_v4_attention", "inception_v4")
VARIANTS = ("fused", "foreach", "loop")
"""``fused``: the training loop's; ``loop``: torch's default on a CPU (``foreach=False``)."""
QUICK_RESULTS = Path("runs") / "optimizer-quick"
"""Where ``--quick`` writes its meaningless numbers: never over the committed results."""


def _optimizer(variant: str, groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    if variant == "fused":
        return make_optimizer(TrainConfig(optimizer="adamw"), groups, device)
    return torch.optim.AdamW(groups, foreach=variant == "foreach")


def _interleaved(steps: dict[str, Callable[[], None]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Each callable's median seconds over ``rounds`` turns, taking turns in every round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if k >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(name: str, size: int, batch: int, rounds: int) -> dict[str, Any]:
    """Training images/s and the update's seconds of each variant, for one model."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision("auto", device)
    model = create_model(name).to(device).to(memory_format=torch.channels_last)
    set_model_mode(model, "train")
    x = torch.randn(batch, 1, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,), device=device)
    optimizers = {v: _optimizer(v, param_groups(model, "all"), device) for v in VARIANTS}

    def training_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            with autocast_for(precision, device):
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return step

    step_seconds = _interleaved({v: training_step(o) for v, o in optimizers.items()}, rounds)
    # the update alone, on the gradients the last step left
    update_seconds = _interleaved({v: o.step for v, o in optimizers.items()}, rounds)
    return {
        "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_img_s": {v: batch / s for v, s in step_seconds.items()},
        "update_s": update_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="75 px, few steps (the code path only)")
    args = parser.parse_args()
    torch.manual_seed(0)
    size, batch, rounds = (75, 4, 2) if args.quick else (147, 16, 15)
    results: dict[str, Any] = {"size": size, "batch": batch, "rounds": rounds, "models": {}}
    for name in MODELS:
        results["models"][name] = measure(name, size, batch, rounds)
        print(name, results["models"][name]["train_img_s"], flush=True)
    write_results("optimizer", results, table, *([QUICK_RESULTS] if args.quick else []))
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' table of an ``optimizer.json``."""
    lines = [
        f"| model ({results['size']} px, batch {results['batch']}, every layer) | precision | AdamW | "
        "training img/s | x loop | update (s) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, m in results["models"].items():
        base = m["train_img_s"]["loop"]
        for variant in VARIANTS:
            lines.append(
                f"| {name} ({m['parameters'] / 1e6:.0f} M parameters) | {m['precision']} | {variant} "
                f"| {m['train_img_s'][variant]:.1f} | {m['train_img_s'][variant] / base:.2f}x "
                f"| {m['update_s'][variant]:.3f} |"
            )
    return "\n".join(
        [
            *lines,
            "",
            "fused: the training loop's (torch's one-pass kernel); loop: torch's default on a CPU; medians of "
            f"{results['rounds']} steps each, the variants taking turns.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
