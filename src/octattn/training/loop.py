"""The training loop: ``train(config, run_dir)`` runs (or resumes) one experiment.

It builds the data (:mod:`~octattn.training.run_data`) and the model, then for each
epoch: :func:`~octattn.training.steps.train_one_epoch`, then on the epochs it validates
(every ``val_every``-th and the last) optional BatchNorm re-estimation, validation on the
patient-grouped split and the attention masks' health; a checkpoint, and a model bundle
whenever validation macro-F1 improves (:mod:`~octattn.training.run_folder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from octattn.classes import NUM_CLASSES
from octattn.data.layout import describe_counts
from octattn.errors import ConfigError, OctattnError
from octattn.evaluation.metrics import headline_metrics
from octattn.inference.safety import SafetySettings, fit_safety
from octattn.models import create_model, param_groups
from octattn.models.health import (
    ChannelProfile,
    describe_health,
    flatten_health,
    profiles_from_tensors,
    profiles_to_tensors,
)
from octattn.models.inception import InceptionV4Attention, attention_modules
from octattn.run_paths import record_data_location
from octattn.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from octattn.training.config import TrainConfig, absolute_paths, save_config
from octattn.training.distributed import (
    DistInfo,
    EpochShardSampler,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
)
from octattn.training.run_data import RunData, build_run_data, epoch_loader
from octattn.training.run_folder import open_tensorboard, prepare_run_dir, save_best_bundle, write_logs
from octattn.training.steps import (
    lr_factor,
    measure_masks,
    predict_dataset,
    recalibrate_batchnorm,
    train_one_epoch,
)


@dataclass
class TrainResult:
    """Summary of a finished run."""

    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]


def build_model(
    config: TrainConfig, info: DistInfo, num_classes: int = NUM_CLASSES
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The model on its device (a ``num_classes``-way head), with the policy's parameter groups."""
    kwargs: dict[str, Any] = {}
    if config.model == "inception_v4_attention":
        kwargs = {
            "placement": config.placement,
            "attention_init": config.attention_init,
            "attention_mask": config.attention_mask,
        }
    model = create_model(
        config.model,
        num_classes=num_classes,
        in_chans=config.in_chans,
        pretrained=config.pretrained and config.weights is None,
        weights=config.weights,
        **kwargs,
    )
    if config.grad_checkpointing and isinstance(model, InceptionV4Attention):  # validate() refuses the others
        model.set_grad_checkpointing(True)
    groups = param_groups(
        model, config.policy, config.lr_backbone, config.lr_new, config.weight_decay, config.lr_mask_factor
    )
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(info.device).to(memory_format=memory_format)
    return model, groups


def fit_run_safety(run_dir: Path, config: TrainConfig, data: RunData, say: Callable[[str], None]) -> None:
    """The bundle's detector and operating points, fitted on this run's images."""
    if not data.val:
        say("no validation images: no out-of-distribution detector or operating points fitted")
        return
    settings = SafetySettings(
        ood_fit_images=config.ood_fit_images,
        abstain_target_accuracy=config.abstain_target_accuracy,
        urgent_sensitivity=config.urgent_sensitivity,
        volume_false_urgent=config.volume_false_urgent,
    )
    fitted = fit_safety(run_dir / "model", data.train, data.val, settings, config.seed)
    kept = 100 * fitted["validation_kept"]
    line = f"out-of-distribution detector: threshold {fitted['threshold']:.2f} keeps {kept:.0f}% of validation"
    if "abstain_threshold" in fitted:
        line += f"; refer below confidence {fitted['abstain_threshold']:.3f}"
    if "urgent_threshold" in fitted:
        line += f"; urgent at urgent probability {fitted['urgent_threshold']:.3f}"
    say(line + " (chosen on validation)")


def better_epoch(row: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether this epoch's validation beats the best so far: a higher macro-F1, or the same
    macro-F1 with a lower validation loss. Small validation sets tie often (80 images take
    a handful of F1 values), and the first of tied epochs is usually the least trained."""
    if row["val_macro_f1"] != best["val_macro_f1"]:
        return bool(row["val_macro_f1"] > best["val_macro_f1"])
    return bool(row["val_loss"] < best.get("val_loss", float("inf")))


def validation_epoch(epoch: int, config: TrainConfig) -> bool:
    """Whether the epoch of index ``epoch`` (0-based) is validated: every ``val_every``-th and
    the last. On a small data set on a CPU the BatchNorm re-estimation before each validation
    costs a third of a run (``benchmarks/validation_cadence.py``)."""
    return (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs


def checkpoint_epoch(epoch: int, config: TrainConfig) -> bool:
    """Whether the epoch of index ``epoch`` (0-based) ends with a checkpoint: every
    ``checkpoint_every``-th but the last, which only ``keep_checkpoint`` writes.

    Without keep_checkpoint the last epoch's checkpoint would be deleted once the run ends: not
    writing it saves a write of three bundles' size and, while it replaced the one before, twice
    that on the disk. A crash after the last epoch then repeats the epochs since the last
    checkpoint on --resume, as a crash within any epoch does. A run that is redone whole rather
    than resumed (a benchmark's) needs none of them: ``checkpoint_every: 0`` saves a twentieth
    of a short CPU run (``docs/performance.md``)."""
    if epoch + 1 == config.epochs:
        return config.keep_checkpoint
    return config.checkpoint_every > 0 and (epoch + 1) % config.checkpoint_every == 0


FUSED_DEVICES = ("cpu", "cuda")
"""Where torch has a fused optimizer kernel: one pass over all parameters instead of a loop of
small ops per tensor (AdamW's update of the attention model's 60 M parameters takes half the time
fused on a 2-core Xeon: a training step at 147 px is 1.08-1.11x as fast;
``benchmarks/epoch.py``). The same update, up to floating-point rounding."""


def make_optimizer(config: TrainConfig, groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    """The config's optimizer over ``groups`` (each with its own rate and weight decay), fused
    where the device has the kernel."""
    fused = device.type in FUSED_DEVICES or None
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, fused=fused)
    return torch.optim.AdamW(groups, fused=fused)


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
    as_given = config.data
    config = absolute_paths(config)
    error: str | None = None
    if info.is_main:
        try:
            prepare_run_dir(run_dir, resume, overwrite)
            if as_given is not None:
                record_data_location(run_dir, as_given)
            save_config(config, run_dir / "config.yaml")
        except OctattnError as exc:
            error = str(exc)
    error = broadcast_object(error, info)
    if error:
        raise OctattnError(error)
    barrier(info)
    torch.manual_seed(config.seed)
    data = build_run_data(config, run_dir, info)
    say(
        f"classes: {', '.join(data.classes)}\ntrain: {describe_counts(data.train, data.classes)}; "
        f"validation: {describe_counts(data.val, data.classes)} (patient-grouped)"
    )
    if data.loss_weights is not None:
        say(
            "loss weights: "
            + ", ".join(f"{c} {w:.2f}" for c, w in zip(data.classes, data.loss_weights.tolist(), strict=True))
        )
    if config.balance == "triple":
        say(
            f"balanced training set ({config.balance_classes} x{config.balance_factor}): "
            f"{describe_counts(data.train_dataset.samples)}"
        )
    if len(data.skipped):
        say(f"skipped {len(data.skipped)} unreadable file(s), listed in {run_dir / 'skipped.json'}")

    model, groups = build_model(config, info, len(data.classes))
    optimizer = make_optimizer(config, groups, info.device)
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
    writer = open_tensorboard(run_dir, info)

    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 7919 + epoch)  # main-process randomness, per epoch
        sampler.set_epoch(epoch)
        loader = epoch_loader(data.train_dataset, sampler, per_rank, config, epoch, info)
        stats = train_one_epoch(
            train_module, loader, optimizer, scheduler, config, info, epoch, progress, data.loss_weights
        )
        validated = validation_epoch(epoch, config)
        predictions = None
        scores: dict[str, float] = {}
        val_loss = float("nan")
        if validated:
            if config.bn_recalibrate and config.bn == "train":
                recalibrate_batchnorm(model, data.recal_dataset, config.bn_recalibrate, per_rank, info)
            predictions = predict_dataset(model, data.val_dataset, config, info)
            if len(predictions.labels):
                scores = headline_metrics(predictions.labels, predictions.probs())
                val_loss = float(
                    nn.functional.cross_entropy(
                        torch.as_tensor(predictions.logits), torch.as_tensor(predictions.labels)
                    )
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
        if has_attention and validated:
            health = measure_masks(model, data.health_dataset, per_rank, config, info).summary(mask_start)
            row.update(flatten_health(health))
        history.append(row)
        base = len(steps)
        steps.extend({"epoch": epoch + 1, "step": base + i + 1, "loss": v} for i, v in enumerate(stats.step_losses))
        validation = (
            f"val loss {val_loss:.4f}, val accuracy {row['val_accuracy']:.4f}, val macro-F1 {row['val_macro_f1']:.4f}"
            if validated
            else f"not validated (val_every {config.val_every})"
        )
        say(
            f"epoch {epoch + 1}/{config.epochs}: train loss {stats.loss:.4f}, {validation}, "
            f"{stats.images_per_s:.1f} img/s" + (f"\n  {describe_health(health)}" if health else "")
        )
        if info.is_main:
            if predictions is not None and better_epoch(row, best):
                best = {"epoch": epoch + 1, **{k: v for k, v in row.items() if k != "epoch"}}
                prior = (data.natural_counts(), data.trained_counts or []) if config.prior_correction else None
                save_best_bundle(
                    run_dir, model, config, predictions.logits, predictions.labels, epoch + 1, data.classes, prior
                )
            write_logs(run_dir, history, steps)
            if checkpoint_epoch(epoch, config):
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
                    if key != "epoch" and not math.isnan(value):  # an epoch not validated has no val_* point
                        writer.add_scalar(key, value, epoch + 1)
        barrier(info)
    if writer is not None:
        writer.close()
    if info.is_main and config.ood_detector and best["epoch"] > 0:
        fit_run_safety(run_dir, config, data, say)
    if not config.keep_checkpoint and info.is_main:
        # The run is finished and its best epoch is in RUN/model: the optimizer's state is dead weight.
        checkpoint_path.unlink(missing_ok=True)
    say(f"best epoch {best['epoch']} (val macro-F1 {best['val_macro_f1']:.4f}); model bundle: {run_dir / 'model'}")
    return TrainResult(run_dir=run_dir, best_epoch=int(best["epoch"]), best_metrics=best, history=history)
