"""Where a short real-scan epoch's time goes, besides the network: the optimizer's update and
the BatchNorm re-estimation pass before validation, each as octattn runs it against another
way to run it.

Run: ``.venv/bin/python -m benchmarks.epoch [--quick]``. The real-scan benchmark's setting
(``benchmarks/real_scans.py``: 147 px, batch 16, every layer training, the training loop's
precision, channels_last), for the attention model and plain Inception-v4:

* a training step with AdamW as the loop makes it (:func:`octattn.training.loop.make_optimizer`:
  torch's fused kernel where the device has it), as torch makes it by default on a CPU (a loop
  over the parameters), and in its multi-tensor (``foreach``) form; the update alone beside;
* the re-estimation pass (``bn_recalibrate: 256`` images, the demo config's, which the
  real-scan runs inherit) as :func:`octattn.training.steps.recalibrate_batchnorm` runs it (fp32,
  contiguous images) and under bf16 autocast in channels_last, as training runs on a bf16 CPU:
  faster, and not adopted (docs/performance.md says why);
* the checkpoint the loop writes after an epoch for ``--resume`` (the model and AdamW's state,
  :func:`octattn.training.checkpoint.save_checkpoint`, atomic), which a run redone whole rather
  than resumed skips with ``checkpoint_every: 0``.

The variants take turns, so that a CPU's clock drifting over the minutes touches them alike;
each figure is a median of its turns. Images are random tensors: decoding is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks.common import write_results
from octattn.models import create_model, param_groups
from octattn.models.batchnorm import reestimate_batchnorm
from octattn.precision import autocast_for
from octattn.training.checkpoint import save_checkpoint
from octattn.training.config import TrainConfig
from octattn.training.distributed import DistInfo
from octattn.training.loop import make_optimizer
from octattn.training.steps import recalibrate_batchnorm, set_model_mode, training_precision

MODELS = ("inception_v4_attention", "inception_v4")
VARIANTS = ("fused", "foreach", "loop")
"""``fused``: the training loop's; ``loop``: torch's default on a CPU (``foreach=False``)."""
RECALIBRATION = ("fp32 (octattn's)", "bf16, channels_last")
"""The re-estimation pass: octattn's (fp32 whatever the training precision), and in the training
precision and memory format."""
EPOCH_SCANS = 220
"""About the training scans of one fold of the real-scan benchmark's part a (4/5 of 307, less
the validation share): the epoch a checkpoint's share is taken of."""
QUICK_RESULTS = Path("runs") / "epoch-quick"
"""Where ``--quick`` writes its meaningless numbers: never over the committed results."""


def _optimizer(variant: str, groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    if variant == "fused":
        return make_optimizer(TrainConfig(optimizer="adamw"), groups, device)
    return torch.optim.AdamW(groups, foreach=variant == "foreach")


def _interleaved(steps: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Each callable's median seconds over ``rounds`` turns, taking turns in every round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if k >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(name: str, size: int, batch: int, rounds: int, recalibrate: int) -> dict[str, Any]:
    """Training images/s and the update's seconds of each optimizer variant, and the seconds
    of each re-estimation pass over ``recalibrate`` images, for one model."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = training_precision(TrainConfig(), device)
    model = create_model(name).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,), device=device)
    optimizers = {v: _optimizer(v, param_groups(model, "all"), device) for v in VARIANTS}

    def training_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            set_model_mode(model, "train")
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
    images = TensorDataset(
        torch.randn(recalibrate, 1, size, size), torch.zeros(recalibrate, dtype=torch.long), torch.arange(recalibrate)
    )

    def in_training_precision() -> None:
        with autocast_for(precision, device):
            batches = range(0, recalibrate, batch)
            reestimate_batchnorm(
                model, (images.tensors[0][i : i + batch].to(memory_format=torch.channels_last) for i in batches), device
            )

    passes: dict[str, Callable[[], object]] = {
        RECALIBRATION[0]: lambda: recalibrate_batchnorm(model, images, recalibrate, batch, DistInfo(device=device)),
        RECALIBRATION[1]: in_training_precision,
    }
    recalibration_seconds = _interleaved(passes, max(2, rounds // 4))
    checkpoint_seconds, checkpoint_bytes = _checkpoint_write(model, optimizers["fused"], max(2, rounds // 4))
    return {
        "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_img_s": {v: batch / s for v, s in step_seconds.items()},
        "update_s": update_seconds,
        "recalibration_s": recalibration_seconds,
        "checkpoint_s": checkpoint_seconds,
        "checkpoint_bytes": checkpoint_bytes,
    }


def _checkpoint_write(model: nn.Module, optimizer: torch.optim.Optimizer, rounds: int) -> tuple[float, int]:
    """The median seconds of writing an epoch's checkpoint as the loop does (the model and the
    optimizer's state, atomically) in a temporary folder, and its size in bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"

        def write() -> None:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})

        seconds = _interleaved({"checkpoint": write}, rounds)["checkpoint"]
        return seconds, path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="75 px, few steps (the code path only)")
    args = parser.parse_args()
    torch.manual_seed(0)
    size, batch, rounds, recalibrate = (75, 4, 2, 8) if args.quick else (147, 16, 15, 256)
    results: dict[str, Any] = {
        "size": size,
        "batch": batch,
        "rounds": rounds,
        "recalibrate": recalibrate,
        "models": {},
    }
    for name in MODELS:
        results["models"][name] = measure(name, size, batch, rounds, recalibrate)
        print(name, results["models"][name]["train_img_s"], results["models"][name]["recalibration_s"], flush=True)
    write_results("epoch", results, table, *([QUICK_RESULTS] if args.quick else []))
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' tables of an ``epoch.json``."""
    size, batch = results["size"], results["batch"]
    lines = [
        f"| model ({size} px, batch {batch}, every layer) | precision | AdamW | training img/s | x loop | update (s) |",
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
    lines += [
        "",
        f"| BatchNorm re-estimation, {results['recalibrate']} images at {size} px | "
        + " | ".join(f"{way} (s)" for way in RECALIBRATION)
        + " | fp32 / bf16 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, m in results["models"].items():
        ours, other = (m["recalibration_s"][way] for way in RECALIBRATION)
        lines.append(f"| {name} ({m['precision']}) | {ours:.1f} | {other:.1f} | {ours / other:.2f}x |")
    if all("checkpoint_s" in m for m in results["models"].values()):  # measured from 2026-12-07 on
        lines += [
            "",
            f"| checkpoint after an epoch (model + AdamW) | size (GB) | write (s) "
            f"| share of an epoch of {EPOCH_SCANS} scans |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, m in results["models"].items():
            epoch = EPOCH_SCANS / m["train_img_s"]["fused"]
            seconds = m["checkpoint_s"]
            lines.append(
                f"| {name} | {m['checkpoint_bytes'] / 1e9:.2f} | {seconds:.1f} | {seconds / (epoch + seconds):.0%} |"
            )
    return "\n".join(
        [
            *lines,
            "",
            "fused: the training loop's (torch's one-pass kernel); loop: torch's default on a CPU. Medians of "
            f"{results['rounds']} training steps and updates each, and of the passes and writes, the variants "
            "taking turns.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
