"""Class sets: OCT2017's four classes (the default), any other set a data set brings, and the
referral tier each class maps to.

A model's classes travel in its bundle (timm's ``label_names``); data sets, metrics, reports,
predictions and the service all index classes through the list a model or a data set carries,
never through a global. :data:`CLASS_NAMES` is only the default: OCT2017's classes in their
label order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

CLASS_NAMES: tuple[str, ...] = ("CNV", "DME", "DRUSEN", "NORMAL")
"""OCT2017's classes in label order: the default class set."""

NUM_CLASSES = len(CLASS_NAMES)

REFERRAL_TIER: dict[str, str] = {
    "CNV": "urgent",
    "DME": "urgent",
    "DRUSEN": "routine",
    "NORMAL": "observation",
}
"""Kermany et al. (2018): choroidal neovascularisation and macular oedema need urgent
referral, drusen a routine one, a normal scan only observation. The default ``referral:``
mapping; a class it does not name gets no tier."""

TIERS: tuple[str, ...] = ("urgent", "routine", "observation")
"""Referral tiers from the most to the least urgent."""

URGENT_CLASSES: tuple[str, ...] = ("CNV", "DME")


def canonical(name: str) -> str:
    """A class name as octattn keeps it: stripped, upper case (folder names match in any case)."""
    return name.strip().upper()


def resolve_classes(found: Iterable[str], requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class set of a data set.

    ``requested`` (a config's ``classes:``) wins, in its order. Otherwise the names found in
    the data decide: when they are all OCT2017 classes, OCT2017's four in their order (a split
    may lack a class, the model still has four outputs); else the names found, sorted.
    """
    if requested:
        return tuple(canonical(c) for c in requested)
    names = {canonical(n) for n in found}
    if names <= set(CLASS_NAMES):
        return CLASS_NAMES
    return tuple(sorted(names))


def class_index(name: str, classes: Sequence[str] = CLASS_NAMES) -> int:
    """Return the label of a class name in ``classes``, case-insensitively.

    Raises:
        KeyError: the name is not one of ``classes``.
    """
    upper = canonical(name)
    if upper not in classes:
        raise KeyError(f"unknown class {name!r}; expected one of {', '.join(classes)}")
    return list(classes).index(upper)


def referral_tiers(classes: Sequence[str], mapping: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Each class's referral tier: from ``mapping`` (a config's ``referral:``) or OCT2017's
    tiers; a class with none gets ``None``, never a wrong tier.

    Raises:
        ValueError: a tier that is not one of :data:`TIERS`.
    """
    source = {canonical(k): v for k, v in (REFERRAL_TIER if mapping is None else mapping).items()}
    tiers = {name: source.get(name) for name in classes}
    for name, tier in tiers.items():
        if tier is not None and tier not in TIERS:
            raise ValueError(f"referral tier of {name} must be one of {', '.join(TIERS)}, got {tier!r}")
    return tiers


def urgent_classes(tiers: Mapping[str, str | None]) -> list[str]:
    """The classes whose tier is ``urgent``."""
    return [name for name, tier in tiers.items() if tier == "urgent"]


def parse_class_map(text: str) -> dict[str, str]:
    """``NO=NORMAL,DME=DME`` -> ``{"NO": "NORMAL", "DME": "DME"}`` (data class -> model class).

    Raises:
        ValueError: an item without ``=``.
    """
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"class map item {item!r} must look like DATA_CLASS=MODEL_CLASS")
        mapping[canonical(source)] = canonical(target)
    return mapping
