"""Loader throughput per core: JPEG decode + resize vs the pre-resized uint8 cache.

Run: ``.venv/bin/python -m benchmarks.loader`` (needs ../shared/data/oct2017-mini).
One process, one thread (per-core figures), every image of oct2017-mini through the
training transform at 299 px; median of 5 passes.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import REAL_DATA, median_time, write_results
from octattn.data.cache import CacheReader, build_cache
from octattn.data.dataset import FileReader, Sample
from octattn.data.decode import load_scan
from octattn.data.layout import scan_split
from octattn.data.transforms import Preprocess, train_transform

SIZE = 299


def main() -> int:
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    torch.set_num_threads(1)
    samples = [s for split in ("train", "test", "renamed") for s in scan_split(REAL_DATA, split)]
    transform = train_transform(Preprocess(size=(SIZE, SIZE)))
    readers: dict[str, Callable[[Sample], np.ndarray]] = {
        "JPEG, full decode": lambda s: load_scan(s.path),
        "JPEG, reduced decode": FileReader((SIZE, SIZE)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        build_cache(samples, tmp, SIZE, progress=False)
        readers["uint8 cache"] = CacheReader(tmp)
        rates = {}
        for name, reader in readers.items():

            def read_all(r: Callable[[Sample], np.ndarray] = reader) -> None:
                for s in samples:
                    transform(r(s), "")

            seconds = median_time(read_all)
            rates[name] = len(samples) / seconds
    write_results("loader", {"images": len(samples), "size": SIZE, "images_per_s": rates}, table)
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``loader.json``."""
    rates, size = results["images_per_s"], results["size"]
    base = rates["JPEG, reduced decode"]
    rows = [f"| {name} | {rate:,.0f} | {rate / base:.1f}x |" for name, rate in rates.items()]
    header = (
        f"| loader path ({results['images']} real scans -> {size}x{size} tensor, 1 core) | images/s | vs reduced JPEG |"
    )
    return "\n".join([header, "| --- | ---: | ---: |", *rows])


if __name__ == "__main__":
    sys.exit(main())
