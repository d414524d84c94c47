"""Atomic writes: a file is either its old self or its complete new self, never half-written.

Every checkpoint, bundle and output of octattn goes through here: write a temporary file
in the same folder, flush it to disk, then rename it over the target (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write bytes to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write UTF-8 text to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_save(target: str | Path, save: Callable[[Path], None]) -> None:
    """Let ``save(path)`` write a file (a library's own writer), then move it into place."""
    with atomic_path(target) as tmp:
        save(tmp)
