"""Samples -> tensors: a torch Dataset over image files or a pre-resized cache.

Files are checked before an epoch starts (:func:`validate_samples`): a bad file is a
clear error naming it, or with ``skip_bad`` a counted skip listed in the report. An
epoch therefore never stops half-way on a file that was bad from the start, and no
sample is ever given another's label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from octattn.data.decode import load_scan
from octattn.data.layout import Sample
from octattn.errors import BadImageError

Reader = Callable[[Sample], np.ndarray]
TrainTransform = Callable[[np.ndarray, str], torch.Tensor]


@dataclass
class SkipReport:
    """Files left out with ``--skip-bad``, with the reason for each."""

    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, error: BadImageError) -> None:
        """Record one skipped file."""
        self.skipped.append({"path": error.path, "reason": error.reason})

    def __len__(self) -> int:
        return len(self.skipped)


class FileReader:
    """Decode each sample from its file, at reduced JPEG scale when that still covers ``size``."""

    def __init__(self, decode_size: tuple[int, int] | None = None) -> None:
        self.decode_size = decode_size  # (width, height) for JPEG draft decoding

    def __call__(self, sample: Sample) -> np.ndarray:
        return load_scan(sample.path, self.decode_size)


def validate_samples(
    samples: Sequence[Sample], reader: Reader, skip_bad: bool = False, report: SkipReport | None = None
) -> list[Sample]:
    """Read every distinct file once; return the usable samples.

    Raises:
        BadImageError: the first bad file, unless ``skip_bad`` (then it is recorded in
            ``report`` and every sample of that file is left out).
    """
    bad: set[str] = set()
    seen: set[str] = set()
    for sample in samples:
        key = str(sample.path)
        if key in seen:
            continue
        seen.add(key)
        try:
            reader(sample)
        except BadImageError as exc:
            if not skip_bad:
                raise
            bad.add(key)
            if report is not None:
                report.add(exc)
    return [s for s in samples if str(s.path) not in bad]


class ScanDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """``(image tensor, label, index)`` for each sample; the index ties outputs to samples."""

    def __init__(self, samples: Sequence[Sample], reader: Reader, transform: TrainTransform) -> None:
        self.samples = list(samples)
        self.reader = reader
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        sample = self.samples[index]
        return self.transform(self.reader(sample), sample.augment), sample.label, index
