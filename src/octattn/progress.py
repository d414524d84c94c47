"""Progress bars for the long commands: tqdm on stderr, silent when stderr is not a terminal
(logs, CI, pipes) or when ``--quiet`` was given."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence every progress bar of this process (``octattn --quiet``)."""
    global _quiet
    _quiet = quiet


def bars_shown() -> bool:
    """Whether a bar would be drawn now: not quiet, and stderr is a terminal."""
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, unit: str = "scan", total: int | None = None, **kwargs: Any) -> tqdm:
    """``iterable`` wrapped in a bar on stderr (a plain pass-through when bars are off)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return tqdm(
        iterable, desc=desc, unit=unit, total=total, file=sys.stderr, disable=not bars_shown(), leave=False, **kwargs
    )
