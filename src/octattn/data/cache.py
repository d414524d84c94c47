"""A pre-resized uint8 store: decode and resize once, then epochs read with no JPEG decoding.

Layout of a cache folder:

* ``images.u8``: raw ``(N, H, W)`` uint8, read through ``numpy.memmap`` (the OS page
  cache shares it between loader workers; nothing is copied per worker);
* ``index.csv``: ``row,path,label,patient,split`` for each image;
* ``meta.json``: size, count, and what was skipped.

Images are stored after the direct resize of the "resize" pre-processing, so a cache is
tied to one input size; the training transform's rotations then act on the resized scan.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from octattn.classes import CLASS_NAMES, resolve_classes
from octattn.data.dataset import SkipReport
from octattn.data.decode import load_scan
from octattn.data.layout import Sample
from octattn.data.transforms import Preprocess, resize, to_tensor
from octattn.errors import BadImageError, DataError
from octattn.io import atomic_write_text
from octattn.progress import progress as progress_bar

CACHE_VERSION = 1


def _key(path: Path) -> str:
    """Cache rows are keyed by absolute path: a relative and an absolute spelling of one file agree."""
    return str(Path(path).resolve())


def build_cache(
    samples: Sequence[Sample], out_dir: str | Path, size: int, skip_bad: bool = False, progress: bool = True
) -> SkipReport:
    """Decode, resize to ``size`` x ``size`` and store every distinct file of ``samples``.

    The store is written under temporary names and renamed into place at the end: an
    interrupted build leaves no cache that looks complete.
    """
    out = Path(out_dir)
    if (out / "meta.json").exists():
        raise DataError(f"{out}: a cache already exists here (remove it to rebuild)")
    out.mkdir(parents=True, exist_ok=True)
    unique = list({str(s.path): s for s in samples}.values())
    pre = Preprocess(size=(size, size))
    tmp_images = out / "images.u8.tmp"
    store = np.memmap(tmp_images, dtype=np.uint8, mode="w+", shape=(max(len(unique), 1), size, size))
    rows: list[Sample] = []
    report = SkipReport()
    for sample in progress_bar(unique, desc="caching", unit="img") if progress else unique:
        try:
            gray = load_scan(sample.path, (size, size))
        except BadImageError as exc:
            if not skip_bad:
                raise
            report.add(exc)
            continue
        store[len(rows)] = resize(to_tensor(gray), pre)[0].numpy()
        rows.append(sample)
    store.flush()
    del store
    os.truncate(tmp_images, len(rows) * size * size)  # skipped files leave no empty rows
    tmp_images.rename(out / "images.u8")
    with (out / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "path", "label", "patient", "split"])
        for row, sample in enumerate(rows):
            writer.writerow([row, _key(sample.path), sample.class_name, sample.patient or "", sample.split])
    classes = sorted({s.label: s.class_name for s in rows}.items())
    meta = {
        "version": CACHE_VERSION,
        "size": size,
        "count": len(rows),
        "classes": [name for _, name in classes],
        "skipped": report.skipped,
    }
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=1))
    return report


class CacheReader:
    """Read samples from a cache by their source path (a ``Reader`` for :class:`ScanDataset`)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            raise DataError(f"{self.dir}: not a complete octattn cache (no meta.json)")
        meta = json.loads(meta_path.read_text())
        self.size = int(meta["size"])
        self.count = int(meta["count"])
        self.classes = resolve_classes((), meta.get("classes") or CLASS_NAMES)  # caches before the key: OCT2017
        with (self.dir / "index.csv").open(newline="") as handle:
            self.rows = {row["path"]: int(row["row"]) for row in csv.DictReader(handle)}
        self._images: np.ndarray | None = None  # opened lazily: once per loader worker

    def samples(self) -> list[Sample]:
        """The cached samples, as :class:`Sample` s pointing at their source paths."""
        with (self.dir / "index.csv").open(newline="") as handle:
            return [
                Sample(
                    Path(r["path"]),
                    self.classes.index(r["label"]),
                    r["patient"] or None,
                    r["split"],
                    class_name=r["label"],
                )
                for r in csv.DictReader(handle)
            ]

    def __call__(self, sample: Sample) -> np.ndarray:
        if self._images is None:
            self._images = np.memmap(
                self.dir / "images.u8", dtype=np.uint8, mode="r", shape=(self.count, self.size, self.size)
            )
        row = self.rows.get(_key(sample.path))
        if row is None:
            raise BadImageError(sample.path, f"not in the cache at {self.dir}")
        return np.array(self._images[row])  # a writable copy: torch refuses read-only memory

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_images"] = None  # each worker maps the file itself
        return state
