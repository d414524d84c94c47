"""A run's data: samples, the patient-grouped split, checks, balance and the datasets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from octattn.classes import CLASS_NAMES, canonical
from octattn.data.balance import class_weighted_sampler, expand_classes, inverse_frequency_weights
from octattn.data.cache import CacheReader
from octattn.data.dataset import FileReader, Reader, ScanDataset, SkipReport, validate_samples
from octattn.data.layout import Sample, data_classes, load_samples
from octattn.data.splits import patient_split, save_split
from octattn.data.transforms import eval_transform, train_transform
from octattn.errors import ConfigError, OctattnError
from octattn.io import atomic_write_text
from octattn.models.weights import preprocess_for
from octattn.training.config import TrainConfig
from octattn.training.distributed import DistInfo, EpochShardSampler, all_gather_objects, loader_workers

HEALTH_IMAGES = 64
"""Validation scans (a fixed, shuffled sample) on which the masks' health is measured."""


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
    classes: tuple[str, ...] = CLASS_NAMES
    loss_weights: torch.Tensor | None = None
    trained_counts: list[float] | None = None
    """Each class's share of what the loss saw, in scans (after tripling, sampling or loss
    weights); with the training scans' own counts it gives the class-prior correction."""

    def natural_counts(self) -> list[float]:
        """How many training scans each class has, before any balancing."""
        return np.bincount([s.label for s in self.train], minlength=len(self.classes)).astype(float).tolist()


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


def recalibration_items(items: Sequence[Sample], weights: torch.Tensor | None, seed: int) -> list[Sample]:
    """The training items in the class mix the loss saw, seeded (every rank the same), for
    re-estimating BatchNorm: ``weights`` (the class-balanced sampler's) draws them as the
    sampler does; without weights, the items themselves (``triple``'s copies included) shuffled.

    BatchNorm's statistics must come from the mix the weights were trained on: re-estimated
    on OCTDL's natural mix (58% AMD) after balanced training, a plain Inception-v4 lost most
    of what it had learnt (docs/real-scans.md, "Recipe probes on OCTDL"). The images are
    shown as evaluation shows them, with ``triple``'s deterministic copies applied and no jitter.
    """
    if weights is None:
        return _shuffled(items, seed)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.multinomial(weights, len(items), replacement=True, generator=generator)
    return [items[i] for i in draws.tolist()]


def trained_class_counts(labels: Sequence[int], num_classes: int, balance: str) -> list[float]:
    """How many scans of each class the loss sees per epoch, in effect: the training items'
    own counts (after ``triple``'s copies), or equal shares under ``sampler`` and
    ``loss_weights``, which both make every class present weigh the same."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    if balance in ("sampler", "loss_weights"):
        counts = np.where(counts > 0, counts.sum() / max(1, int((counts > 0).sum())), 0.0)
    return [float(c) for c in counts]


def build_run_data(config: TrainConfig, run_dir: Path, info: DistInfo) -> RunData:
    """Load, split, check and balance the samples; build the datasets."""
    if config.data is None:
        raise ConfigError("no data: pass --data DIR (an OCT2017-style folder or a CSV manifest)")
    classes = data_classes(config.data, config.classes)
    train = load_samples(config.data, "train", classes)
    if config.val_fraction > 0:
        train, val = patient_split(train, config.val_fraction, config.validation_seed)
    else:
        val = load_samples(config.data, "val", classes)
    reader = _reader(config)
    train_val, skipped = _validate_sharded(train + val, reader, config, info)
    keep = {str(s.path) for s in train_val}
    train = [s for s in train if str(s.path) in keep]
    val = [s for s in val if str(s.path) in keep]
    if info.is_main:
        save_split(run_dir / "split.json", train, val, config.validation_seed, config.val_fraction)
        if len(skipped):
            atomic_write_text(run_dir / "skipped.json", json.dumps(skipped.skipped, indent=1))
    weights = loss_weights = None
    if config.balance == "triple":
        missing = [c for c in config.balance_classes if canonical(c) not in classes]
        if missing:
            raise ConfigError(
                f"balance_classes {', '.join(missing)} not in the class set ({', '.join(classes)}): "
                "set balance_classes, or balance: sampler | loss_weights | none"
            )
        train_items = expand_classes(train, config.balance_classes, config.balance_factor)
    else:
        train_items = list(train)
        if config.balance == "sampler":
            weights = torch.as_tensor(list(class_weighted_sampler(train_items).weights), dtype=torch.double)
        elif config.balance == "loss_weights":
            loss_weights = inverse_frequency_weights(train_items, len(classes))
    counts = trained_class_counts([s.label for s in train_items], len(classes), config.balance)
    pre = preprocess_for(config.model, config.image_size, config.in_chans)
    evaluate_one = eval_transform(pre)

    def eval_item(gray: np.ndarray, augment: str) -> torch.Tensor:
        return evaluate_one(gray)

    return RunData(
        train=train,
        val=val,
        train_dataset=ScanDataset(
            train_items,
            reader,
            train_transform(pre, config.preprocess, config.hflip_prob, config.jitter, config.randomise),
        ),
        val_dataset=ScanDataset(val, reader, eval_item),
        recal_dataset=ScanDataset(
            recalibration_items(train_items, weights, config.seed), reader, train_transform(pre, "resize")
        ),
        health_dataset=ScanDataset(_shuffled(val or train, config.seed)[:HEALTH_IMAGES], reader, eval_item),
        weights=weights,
        skipped=skipped,
        classes=classes,
        loss_weights=loss_weights,
        trained_counts=counts,
    )


def epoch_loader(
    dataset: Dataset[Any], sampler: EpochShardSampler, per_rank: int, config: TrainConfig, epoch: int, info: DistInfo
) -> DataLoader[Any]:
    # A fresh loader per epoch with a generator seeded by (seed, epoch): worker RNGs, and so
    # the random transforms, depend on nothing else; that is what makes --resume exact.
    generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
    return DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=loader_workers(config.num_workers, info),
        pin_memory=info.device.type == "cuda",
        generator=generator,
        # An incomplete last batch can hold one image, which BatchNorm cannot normalise at
        # Inception's 1x1 maps; every rank holds the same padded count, so all drop alike.
        drop_last=len(sampler) > per_rank,
    )
