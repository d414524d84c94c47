"""The step-level engine: one epoch of training, predictions, BatchNorm re-estimation, masks.

Plain functions in the shape of torchvision's reference script; :mod:`octattn.training.loop`
strings them together into a run.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from octattn.errors import OctattnError
from octattn.models.batchnorm import reestimate_batchnorm
from octattn.models.health import MaskMeter
from octattn.models.inception import InceptionV4Attention
from octattn.precision import autocast_for, resolve_precision
from octattn.progress import bars_shown
from octattn.training.config import TrainConfig
from octattn.training.distributed import DistInfo, all_gather_objects, loader_workers


class TrainingDiverged(OctattnError):
    """The loss became NaN or infinite."""


@dataclass
class EpochStats:
    """What one training epoch measured."""

    loss: float
    images_per_s: float
    seconds: float
    step_losses: list[float]


@dataclass
class Predictions:
    """Model outputs on a data set, in sample order."""

    logits: np.ndarray
    labels: np.ndarray

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        """Softmax probabilities at a temperature."""
        from octattn.evaluation.calibration import softmax

        return softmax(self.logits, temperature)


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """The config's ``amp`` as a resolved precision: ``off`` is fp32, ``bf16`` is bf16, and
    ``auto`` is bf16 where the device computes it natively (the rule inference follows too)."""
    return resolve_precision({"off": "fp32"}.get(config.amp, config.amp), device)


def set_model_mode(model: nn.Module, bn: str) -> None:
    """Training mode; frozen BatchNorm layers (no trainable parameter, or ``bn="frozen"``) stay in eval."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            trainable = any(p.requires_grad for p in module.parameters(recurse=False))
            if bn == "frozen" or not trainable:
                module.eval()


ONECYCLE_RISE = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4
"""torch.optim.lr_scheduler.OneCycleLR's defaults: pct_start, div_factor, final_div_factor."""


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the base learning rates at ``step`` (linear warm-up, then the schedule).

    ``onecycle`` is torch's ``OneCycleLR`` shape (its defaults; ``warmup_steps`` is ignored):
    a cosine rise from 1/25 over the first 30% of the steps, then a cosine fall to 1/250,000.
    The issue's from-scratch OCTDL probe learnt with it where a short linear warm-up learnt slower.
    """
    if schedule == "onecycle":
        # torch's phase ends: the peak at step 0.3 * total - 1, the floor at the last step
        peak, last = ONECYCLE_RISE * total_steps - 1, max(1.0, total_steps - 1.0)
        start, end = 1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if step <= peak:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / max(peak, 1e-9)))
        fall = min(1.0, (step - peak) / max(last - peak, 1e-9))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * fall))
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 0.1 ** int(progress * 3)  # "step": divide by 10 after each third of training


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    info: DistInfo,
    epoch: int,
    progress: bool = True,
    class_weights: torch.Tensor | None = None,
) -> EpochStats:
    """One pass over the training data; raises :class:`TrainingDiverged` on a non-finite loss.
    ``class_weights`` weight the cross-entropy (``balance: loss_weights``)."""
    set_model_mode(model, config.bn)
    device = info.device
    precision = training_precision(config, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    weight = class_weights.to(device) if class_weights is not None else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    losses: list[float] = []
    seen = 0
    start = time.perf_counter()
    shown = progress and info.is_main and bars_shown()  # silent in logs and pipes, like every bar
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", file=sys.stderr, disable=not shown)
    for images, labels, _ in bar:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast_for(precision, device):
            loss = criterion(model(images), labels)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {len(losses) + 1}; training stopped. "
                "The last good checkpoint is kept; lower the learning rate or set grad_clip."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        seen += len(labels) * info.world_size
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{seen / max(elapsed, 1e-9):.1f}")
    seconds = time.perf_counter() - start
    return EpochStats(float(np.mean(losses)) if losses else float("nan"), seen / max(seconds, 1e-9), seconds, losses)


@torch.no_grad()
def predict_dataset(
    model: nn.Module, dataset: Dataset[Any], config: TrainConfig, info: DistInfo, batch_size: int | None = None
) -> Predictions:
    """Logits for every item of ``dataset``, each computed exactly once across all ranks.

    Rank ``r`` takes items ``r, r + W, ...`` (no padding, unlike ``DistributedSampler``,
    which would count some images twice); the pieces are gathered and put back in order.
    """
    model.eval()
    indices = list(range(info.rank, len(dataset), info.world_size))  # type: ignore[arg-type]
    subset = torch.utils.data.Subset(dataset, indices)
    workers = loader_workers(config.num_workers, info)
    loader = DataLoader(subset, batch_size=batch_size or config.batch_size, num_workers=workers)
    precision = training_precision(config, info.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    rows: list[tuple[int, np.ndarray, int]] = []
    for images, labels, item_indices in loader:
        with autocast_for(precision, info.device):
            logits = model(images.to(info.device, memory_format=memory_format)).float().cpu().numpy()
        rows.extend(zip(item_indices.tolist(), logits, labels.tolist(), strict=True))
    merged = sorted((row for part in all_gather_objects(rows, info) for row in part), key=lambda r: r[0])
    if [r[0] for r in merged] != list(range(len(dataset))):  # type: ignore[arg-type]
        raise RuntimeError("distributed evaluation lost or duplicated images")
    logits_all = np.stack([r[1] for r in merged]) if merged else np.zeros((0, int(getattr(model, "num_classes", 4))))
    return Predictions(logits=logits_all, labels=np.array([r[2] for r in merged], dtype=int))


def recalibrate_batchnorm(model: nn.Module, dataset: Dataset[Any], count: int, batch_size: int, info: DistInfo) -> None:
    """Re-estimate trainable BatchNorm statistics on the first ``count`` items of ``dataset``.

    A short from-scratch run's running averages lag its weights (it scored chance here
    while its loss fell); a cumulative average over a fixed set of images fixes that.
    Every rank uses the same images, so the statistics stay identical across ranks.
    """
    if count <= 0:
        return
    subset = torch.utils.data.Subset(dataset, list(range(min(count, len(dataset)))))  # type: ignore[arg-type]
    reestimate_batchnorm(model, (images for images, _, _ in DataLoader(subset, batch_size=batch_size)), info.device)


@torch.no_grad()
def measure_masks(
    model: nn.Module, dataset: Dataset[Any], batch_size: int, config: TrainConfig, info: DistInfo
) -> MaskMeter:
    """Run ``dataset`` through the model in eval mode and gather its attention masks."""
    meter = MaskMeter()
    model.eval()
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    precision = training_precision(config, info.device)
    for images, _, _ in DataLoader(dataset, batch_size=batch_size):
        with autocast_for(precision, info.device):
            model(images.to(info.device, memory_format=memory_format))
        if isinstance(model, InceptionV4Attention):
            meter.update(model.attention_masks())
    return meter
