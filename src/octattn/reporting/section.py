"""The report's building block, shared by its sections: a title, prose, tables and figures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Section:
    """One part of the report: a title, prose, tables and figures."""

    title: str
    text: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)


def percent(value: float | None) -> str:
    """A share as ``97.5%`` (``n/a`` when missing)."""
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f}%"
