"""The four OCT2017 classes, their order, and Kermany et al.'s referral tiers.

This module is the single place where class names and their order are defined: model
heads, data loaders, metrics and reports all index classes through it.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("CNV", "DME", "DRUSEN", "NORMAL")
"""Class names in label order: label ``i`` is ``CLASS_NAMES[i]``."""

NUM_CLASSES = len(CLASS_NAMES)

REFERRAL_TIER: dict[str, str] = {
    "CNV": "urgent",
    "DME": "urgent",
    "DRUSEN": "routine",
    "NORMAL": "observation",
}
"""Kermany et al. (2018): choroidal neovascularisation and macular oedema need urgent
referral, drusen a routine one, a normal scan only observation."""

URGENT_CLASSES: tuple[str, ...] = ("CNV", "DME")


def class_index(name: str) -> int:
    """Return the label of a class name, case-insensitively.

    Raises:
        KeyError: the name is not one of :data:`CLASS_NAMES`.
    """
    upper = name.strip().upper()
    if upper not in CLASS_NAMES:
        raise KeyError(f"unknown class {name!r}; expected one of {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(upper)
