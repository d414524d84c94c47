"""The training loop, in the shape of torchvision's reference script: plain functions.

``train(config, run_dir)`` builds the data, the model and the optimizer, then for each
epoch: :func:`train_one_epoch`, optional BatchNorm re-estimation, :func:`evaluate` on the
patient-grouped validation split, a checkpoint, and a model bundle whenever validation
macro-F1 improves. Everything a run writes lives in its folder:

* ``config.yaml`` (resolved), ``split.json`` (which files are validation);
* ``checkpoint.pt`` (latest epoch; ``--resume`` continues from it);
* ``metrics.csv`` (per epoch, with the attention masks' health: :mod:`octattn.models.health`)
  and ``steps.csv`` (training loss per step: the paper's Fig. 4);
* ``model/`` (the best epoch's bundle, with a temperature fitted on validation);
* ``skipped.json`` (with ``skip_bad``: the files left out and why).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import octattn
from octattn.classes import CLASS_NAMES
from octattn.data.balance import class_weighted_sampler, expand_classes
from octattn.data.cache import CacheReader
from octattn.data.dataset import FileReader, Reader, ScanDataset, SkipReport, validate_samples
from octattn.data.layout import Sample, describe_counts, load_samples
from octattn.data.splits import patient_split, save_split
from octattn.data.transforms import eval_transform, train_transform
from octattn.errors import ConfigError, OctattnError
from octattn.evaluation.calibration import fit_temperature
from octattn.evaluation.metrics import headline_metrics
from octattn.inference.bundle import BundleConfig, architecture_of, save_bundle
from octattn.io import atomic_write_text
from octattn.models import create_model, param_groups
from octattn.models.health import (
    ChannelProfile,
    MaskMeter,
    describe_health,
    flatten_health,
    profiles_from_tensors,
    profiles_to_tensors,
)
from octattn.models.inception import InceptionV4Attention, attention_modules
from octattn.models.weights import preprocess_for
from octattn.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from octattn.training.config import TrainConfig, save_config
from octattn.training.distributed import (
    DistInfo,
    EpochShardSampler,
    all_gather_objects,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
)

METRICS_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "images_per_s",
    "epoch_seconds",
    "lr_backbone",
)

HEALTH_IMAGES = 64
"""Validation scans (a fixed, shuffled sample) on which the masks' health is measured."""


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


@dataclass
class TrainResult:
    """Summary of a finished run."""

    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_model_mode(model: nn.Module, bn: str) -> None:
    """Training mode; frozen BatchNorm layers (no trainable parameter, or ``bn="frozen"``) stay in eval."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            trainable = any(p.requires_grad for p in module.parameters(recurse=False))
            if bn == "frozen" or not trainable:
                module.eval()


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the base learning rates at ``step`` (linear warm-up, then the schedule)."""
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
) -> EpochStats:
    """One pass over the training data; raises :class:`TrainingDiverged` on a non-finite loss."""
    set_model_mode(model, config.bn)
    device = info.device
    amp = _amp_dtype(config, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    losses: list[float] = []
    seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not (progress and info.is_main))
    for images, labels, _ in bar:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with _autocast(device, amp):
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
    loader = DataLoader(subset, batch_size=batch_size or config.batch_size, num_workers=config.num_workers)
    amp = _amp_dtype(config, info.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    rows: list[tuple[int, np.ndarray, int]] = []
    for images, labels, item_indices in loader:
        with _autocast(info.device, amp):
            logits = model(images.to(info.device, memory_format=memory_format)).float().cpu().numpy()
        rows.extend(zip(item_indices.tolist(), logits, labels.tolist(), strict=True))
    merged = sorted((row for part in all_gather_objects(rows, info) for row in part), key=lambda r: r[0])
    if [r[0] for r in merged] != list(range(len(dataset))):  # type: ignore[arg-type]
        raise RuntimeError("distributed evaluation lost or duplicated images")
    logits_all = np.stack([r[1] for r in merged]) if merged else np.zeros((0, len(CLASS_NAMES)))
    return Predictions(logits=logits_all, labels=np.array([r[2] for r in merged], dtype=int))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset[Any], count: int, batch_size: int, info: DistInfo) -> None:
    """Re-estimate trainable BatchNorm statistics on the first ``count`` items of ``dataset``.

    A short from-scratch run's running averages lag its weights (it scored chance here
    while its loss fell); a cumulative average over a fixed set of images fixes that.
    Every rank uses the same images, so the statistics stay identical across ranks.
    """
    layers = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(p.requires_grad for p in m.parameters(False))
    ]
    if not layers or count <= 0:
        return
    model.eval()
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
        layer.train()
    subset = torch.utils.data.Subset(dataset, list(range(min(count, len(dataset)))))  # type: ignore[arg-type]
    for images, _, _ in DataLoader(subset, batch_size=batch_size):
        model(images.to(info.device))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    model.eval()


@torch.no_grad()
def measure_masks(
    model: nn.Module, dataset: Dataset[Any], batch_size: int, config: TrainConfig, info: DistInfo
) -> MaskMeter:
    """Run ``dataset`` through the model in eval mode and gather its attention masks."""
    meter = MaskMeter()
    model.eval()
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    amp = _amp_dtype(config, info.device)
    for images, _, _ in DataLoader(dataset, batch_size=batch_size):
        with _autocast(info.device, amp):
            model(images.to(info.device, memory_format=memory_format))
        if isinstance(model, InceptionV4Attention):
            meter.update(model.attention_masks())
    return meter


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(octattn.__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(config: TrainConfig, epoch: int) -> dict[str, Any]:
    """Where a bundle came from: data, config, code version, machine, date."""
    return {
        "data": config.data,
        "config": config.to_dict(),
        "epoch": epoch,
        "octattn": octattn.__version__,
        "commit": _git_commit(),
        "torch": torch.__version__,
        "host": platform.node(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise OctattnError(
                f"{run_dir}: run folder exists; pass --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class RunData:
    """The run's samples and datasets."""

    train: list[Sample]
    val: list[Sample]
    train_dataset: ScanDataset
    val_dataset: ScanDataset
    recal_dataset: ScanDataset
    health_dataset: ScanDataset
    weights: torch.Tensor | None
    skipped: SkipReport


def _reader(config: TrainConfig) -> Reader:
    if config.cache:
        reader = CacheReader(config.cache)
        if reader.size != config.image_size:
            raise ConfigError(f"{config.cache}: cache is {reader.size} px but image_size is {config.image_size}")
        return reader
    return FileReader(decode_size=(config.image_size, config.image_size))


def _validate_sharded(
    samples: list[Sample], reader: Reader, config: TrainConfig, info: DistInfo
) -> tuple[list[Sample], SkipReport]:
    """Each rank checks a shard of the files; the bad ones are shared, so all ranks agree."""
    report = SkipReport()
    shard = samples[info.rank :: info.world_size]
    error: str | None = None
    try:
        validate_samples(shard, reader, config.skip_bad, report)
    except OctattnError as exc:
        error = str(exc)
    errors = [e for e in all_gather_objects(error, info) if e]
    if errors:
        raise OctattnError(errors[0] + " (pass --skip-bad, or skip_bad=true, to leave bad files out)")
    report.skipped = [item for part in all_gather_objects(report.skipped, info) for item in part]
    bad = {item["path"] for item in report.skipped}
    return [s for s in samples if str(s.path) not in bad], report


def _shuffled(samples: Sequence[Sample], seed: int) -> list[Sample]:
    """A seeded shuffle: sample files are sorted by class, and a prefix must mix classes."""
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in order]


def build_run_data(config: TrainConfig, run_dir: Path, info: DistInfo) -> RunData:
    """Load, split, check and balance the samples; build the datasets."""
    if config.data is None:
        raise ConfigError("no data: pass --data DIR (an OCT2017-style folder or a CSV manifest)")
    train = load_samples(config.data, "train")
    if config.val_fraction > 0:
        train, val = patient_split(train, config.val_fraction, config.seed)
    else:
        val = load_samples(config.data, "val")
    reader = _reader(config)
    train_val, skipped = _validate_sharded(train + val, reader, config, info)
    keep = {str(s.path) for s in train_val}
    train = [s for s in train if str(s.path) in keep]
    val = [s for s in val if str(s.path) in keep]
    if info.is_main:
        save_split(run_dir / "split.json", train, val, config.seed, config.val_fraction)
        if len(skipped):
            atomic_write_text(run_dir / "skipped.json", json.dumps(skipped.skipped, indent=1))
    weights = None
    if config.balance == "triple":
        train_items = expand_classes(train, config.balance_classes, config.balance_factor)
    else:
        train_items = list(train)
        if config.balance == "sampler":
            weights = torch.as_tensor(list(class_weighted_sampler(train_items).weights), dtype=torch.double)
    pre = preprocess_for(config.model, config.image_size, config.in_chans)
    evaluate_one = eval_transform(pre)

    def eval_item(gray: np.ndarray, augment: str) -> torch.Tensor:
        return evaluate_one(gray)

    return RunData(
        train=train,
        val=val,
        train_dataset=ScanDataset(train_items, reader, train_transform(pre, config.preprocess, config.hflip_prob)),
        val_dataset=ScanDataset(val, reader, eval_item),
        recal_dataset=ScanDataset(_shuffled(train, config.seed), reader, eval_item),
        health_dataset=ScanDataset(_shuffled(val or train, config.seed)[:HEALTH_IMAGES], reader, eval_item),
        weights=weights,
        skipped=skipped,
    )


def build_model(config: TrainConfig, info: DistInfo) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The model on its device, with the policy's parameter groups."""
    kwargs: dict[str, Any] = {}
    if config.model == "inception_v4_attention":
        kwargs = {"placement": config.placement, "attention_init": config.attention_init}
    model = create_model(
        config.model,
        in_chans=config.in_chans,
        pretrained=config.pretrained and config.weights is None,
        weights=config.weights,
        **kwargs,
    )
    groups = param_groups(model, config.policy, config.lr_backbone, config.lr_new, config.weight_decay)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(info.device).to(memory_format=memory_format)
    return model, groups


def _metrics_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    """The fixed columns, then any per-run ones (the masks' health) in their first order."""
    extra = [key for key in (history[0] if history else {}) if key not in METRICS_COLUMNS]
    return [*METRICS_COLUMNS, *extra]


def _write_logs(run_dir: Path, history: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    atomic_write_text(run_dir / "metrics.csv", table(history, _metrics_columns(history)))
    atomic_write_text(run_dir / "steps.csv", table(steps, ("epoch", "step", "loss")))


def _tensorboard(run_dir: Path, info: DistInfo) -> Any:
    if not info.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _loader(
    dataset: Dataset[Any], sampler: EpochShardSampler, per_rank: int, config: TrainConfig, epoch: int, info: DistInfo
) -> DataLoader[Any]:
    # A fresh loader per epoch with a generator seeded by (seed, epoch): worker RNGs, and so
    # the random transforms, depend on nothing else; that is what makes --resume exact.
    generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
    return DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=generator,
        # An incomplete last batch can hold one image, which BatchNorm cannot normalise at
        # Inception's 1x1 maps; every rank holds the same padded count, so all drop alike.
        drop_last=len(sampler) > per_rank,
    )


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run (or resume) one training run; see the module docstring for what it writes."""
    config.validate()
    info = init_distributed()
    try:
        return _train(config, Path(run_dir), resume, overwrite, progress, log, info)
    finally:
        shutdown(info)


def _train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    info: DistInfo,
) -> TrainResult:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch_size {config.batch_size} is not divisible by {info.world_size} processes")
    say = log if info.is_main else (lambda _: None)
    error: str | None = None
    if info.is_main:
        try:
            _prepare_run_dir(run_dir, resume, overwrite)
            save_config(config, run_dir / "config.yaml")
        except OctattnError as exc:
            error = str(exc)
    error = broadcast_object(error, info)
    if error:
        raise OctattnError(error)
    barrier(info)
    torch.manual_seed(config.seed)
    data = build_run_data(config, run_dir, info)
    say(f"train: {describe_counts(data.train)}; validation: {describe_counts(data.val)} (patient-grouped)")
    if config.balance == "triple":
        say(
            f"balanced training set ({config.balance_classes} x{config.balance_factor}): "
            f"{describe_counts(data.train_dataset.samples)}"
        )
    if len(data.skipped):
        say(f"skipped {len(data.skipped)} unreadable file(s), listed in {run_dir / 'skipped.json'}")

    model, groups = build_model(config, info)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups)
    train_module: nn.Module = model
    if info.distributed:
        if info.device.type == "cuda" and config.bn == "train":
            train_module = nn.SyncBatchNorm.convert_sync_batchnorm(train_module)
        train_module = DistributedDataParallel(
            train_module, device_ids=[info.local_rank] if info.device.type == "cuda" else None
        )
    if config.compile:
        train_module = torch.compile(train_module)  # type: ignore[assignment]

    sampler = EpochShardSampler(len(data.train_dataset), info, config.seed, data.weights)
    per_rank = config.batch_size // info.world_size
    steps_per_epoch = max(1, len(sampler) // per_rank)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config.schedule, config.warmup_steps)
    )

    history: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "val_macro_f1": -1.0}
    start_epoch = 0
    mask_start: dict[str, ChannelProfile] = {}
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        history, steps, best = state["history"], state["steps"], state["best"]
        start_epoch = int(state["epoch"]) + 1
        mask_start = profiles_from_tensors(state.get("mask_start", {}))
        say(f"resuming {run_dir} after epoch {start_epoch}")
    has_attention = bool(attention_modules(model)) and info.is_main
    if has_attention and start_epoch == 0:
        # Where the masks start, before any step: "moved" is measured against this.
        mask_start = measure_masks(model, data.health_dataset, per_rank, config, info).profiles()
    writer = _tensorboard(run_dir, info)

    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 7919 + epoch)  # main-process randomness, per epoch
        sampler.set_epoch(epoch)
        loader = _loader(data.train_dataset, sampler, per_rank, config, epoch, info)
        stats = train_one_epoch(train_module, loader, optimizer, scheduler, config, info, epoch, progress)
        if config.bn_recalibrate and config.bn == "train":
            recalibrate_batchnorm(model, data.recal_dataset, config.bn_recalibrate, per_rank, info)
        predictions = predict_dataset(model, data.val_dataset, config, info)
        scores = headline_metrics(predictions.labels, predictions.probs()) if len(predictions.labels) else {}
        val_loss = (
            float(nn.functional.cross_entropy(torch.as_tensor(predictions.logits), torch.as_tensor(predictions.labels)))
            if len(predictions.labels)
            else float("nan")
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            "val_loss": val_loss,
            "val_accuracy": scores.get("accuracy", float("nan")),
            "val_macro_f1": scores.get("f1", float("nan")),
            "images_per_s": stats.images_per_s,
            "epoch_seconds": stats.seconds,
            "lr_backbone": optimizer.param_groups[0]["lr"],
        }
        health: dict[str, dict[str, float]] = {}
        if has_attention:
            health = measure_masks(model, data.health_dataset, per_rank, config, info).summary(mask_start)
            row.update(flatten_health(health))
        history.append(row)
        base = len(steps)
        steps.extend({"epoch": epoch + 1, "step": base + i + 1, "loss": v} for i, v in enumerate(stats.step_losses))
        say(
            f"epoch {epoch + 1}/{config.epochs}: train loss {stats.loss:.4f}, val loss {val_loss:.4f}, "
            f"val accuracy {row['val_accuracy']:.4f}, val macro-F1 {row['val_macro_f1']:.4f}, "
            f"{stats.images_per_s:.1f} img/s" + (f"\n  {describe_health(health)}" if health else "")
        )
        if info.is_main:
            improved = row["val_macro_f1"] > best["val_macro_f1"]
            if improved:
                best = {"epoch": epoch + 1, **{k: v for k, v in row.items() if k != "epoch"}}
                temperature = (
                    fit_temperature(predictions.logits, predictions.labels) if len(predictions.labels) else 1.0
                )
                bundle = BundleConfig(
                    architecture=architecture_of(config.model, model),
                    preprocess=preprocess_for(config.model, config.image_size, config.in_chans),
                    temperature=temperature,
                    provenance=provenance(config, epoch + 1),
                )
                save_bundle(run_dir / "model", model, bundle)
            _write_logs(run_dir, history, steps)
            save_checkpoint(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": {},  # bf16 autocast needs no loss scaler; kept for the format
                    "epoch": epoch,
                    "rng": rng_state(),
                    "history": history,
                    "steps": steps,
                    "best": best,
                    "config": config.to_dict(),
                    "mask_start": profiles_to_tensors(mask_start),
                },
            )
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key, value, epoch + 1)
        barrier(info)
    if writer is not None:
        writer.close()
    say(f"best epoch {best['epoch']} (val macro-F1 {best['val_macro_f1']:.4f}); model bundle: {run_dir / 'model'}")
    return TrainResult(run_dir=run_dir, best_epoch=int(best["epoch"]), best_metrics=best, history=history)
