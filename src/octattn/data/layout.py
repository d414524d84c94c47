"""Find labelled scans: an OCT2017-style folder tree or a CSV manifest -> :class:`Sample` s.

Tree: ``DIR/{train,val,test}/CLASS/*`` (folder names in any case), or ``DIR/CLASS/*`` with
no split folders (one pool of images: every split name reads all of it). The classes are
the class folders' names (OCT2017's four in their order when that is what they are), or a
given list. The Kaggle copy's top folder ``"OCT2017 "`` (with its trailing space) and
Mendeley's ``CellData/OCT`` are found under ``DIR`` by themselves. File names
``CLASS-PATIENT-N`` (OCT2017) or ``class_PATIENT_N`` (OCTDL) give the patient id and image
number; a file without them is its own patient group.

Manifest: a CSV with columns ``path,label`` and optionally ``patient`` and ``split``;
relative paths are relative to the CSV's folder.

A class map (``{"NO": "NORMAL"}``, data class -> model class) reads a data set under another
model's classes: images of classes it does not map are left out, and counted.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from octattn.classes import CLASS_NAMES, canonical, resolve_classes
from octattn.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
_NAME = re.compile(r"^(?P<label>[A-Za-z]+)[-_](?P<patient>\d+)[-_](?P<number>\d+)$")
POOL = "all"
"""The split name of the images of a tree without split folders."""


@dataclass(frozen=True)
class Sample:
    """One labelled scan.

    Attributes:
        path: the image file.
        label: index into the class set the sample was read under.
        patient: patient id from the file name or manifest, or ``None`` when unknown.
        split: ``train`` / ``val`` / ``test`` (or ``""`` when not from a split folder).
        image_number: the ``N`` of ``CLASS-PATIENT-N``, when present.
        augment: a deterministic copy's augmentation (``""`` = the original; see
            :mod:`octattn.data.balance`).
        class_name: the label's class name (default: OCT2017's name of ``label``).
    """

    path: Path
    label: int
    patient: str | None = None
    split: str = ""
    image_number: int | None = None
    augment: str = ""
    class_name: str = ""

    def __post_init__(self) -> None:
        if not self.class_name:
            object.__setattr__(self, "class_name", CLASS_NAMES[self.label])

    @property
    def group(self) -> str:
        """The unit that must not cross a split: the patient, or the file when unknown."""
        return f"patient:{self.patient}" if self.patient is not None else f"file:{self.path}"

    def with_augment(self, augment: str) -> Sample:
        """A copy of this sample marked with a deterministic augmentation."""
        return replace(self, augment=augment)


def parse_name(path: str | Path) -> tuple[str | None, str | None, int | None]:
    """Split ``CLASS-PATIENT-N.ext`` into (class name, patient id, image number).

    Returns ``(None, None, None)`` where the name does not follow the pattern.
    """
    match = _NAME.match(Path(path).stem)
    if not match:
        return None, None, None
    return match["label"].upper(), match["patient"], int(match["number"])


def _children(folder: Path) -> dict[str, Path]:
    return {p.name.strip().lower(): p for p in folder.iterdir() if p.is_dir()}


def find_dataset_root(directory: str | Path) -> Path:
    """The folder holding the split folders: ``directory`` itself or a known wrapper below it."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    for _ in range(3):  # OCT2017 / CellData/OCT / "OCT2017 " wrappers, a few levels at most
        children = _children(root)
        if any(split in children for split in SPLITS):
            return root
        wrappers = [p for name, p in children.items() if name in {"oct2017", "oct", "celldata", "zhanglabdata"}]
        if len(wrappers) != 1:
            break
        root = wrappers[0]
    raise DataError(f"{directory}: no train/, val/ or test/ folder found (expected DIR/SPLIT/CLASS/images)")


def _images(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]


def _scan_class_folder(folder: Path, label: int, split: str, class_name: str, data_class: str) -> list[Sample]:
    samples = []
    for path in _images(folder):
        name_class, patient, number = parse_name(path)
        if name_class is not None and name_class != data_class:
            # The folder decides the label; a disagreeing name is kept but its patient id is
            # namespaced, so it can never merge two classes' patients by accident.
            patient = f"{name_class}:{patient}"
        samples.append(Sample(path, label, patient, split, number, class_name=class_name))
    return samples


def _is_pool(directory: Path) -> bool:
    """A folder of class folders holding images, with no split folders: one pool."""
    children = _children(directory)
    if any(split in children for split in SPLITS):
        return False
    return bool(children) and any(_images(c) for c in children.values())


def _split_folder(root: str | Path, split: str) -> tuple[Path, str]:
    """The folder whose class folders hold ``split``, and the split name the samples get."""
    directory = Path(root)
    if directory.is_dir() and _is_pool(directory):
        return directory, POOL
    base = find_dataset_root(root)
    folder = _children(base).get(split)
    if folder is None:
        raise DataError(f"{base}: no {split}/ folder")
    return folder, split


def dataset_classes(root: str | Path, requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class set of a tree: ``requested``, or its class folders' names over every split
    (OCT2017's four in their order when that is what they are)."""
    if requested:
        return resolve_classes((), requested)
    directory = Path(root)
    if directory.is_dir() and _is_pool(directory):
        return resolve_classes(_children(directory))
    base = find_dataset_root(root)
    found = [name for s in available_splits(base) for name in _children(_children(base)[s])]
    return resolve_classes(found)


def scan_split(
    root: str | Path,
    split: str,
    allow_unknown: bool = False,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, str] | None = None,
) -> list[Sample]:
    """All samples of one split folder (``train``, ``val`` or ``test``; every image of a tree
    without split folders), sorted by path, labelled in ``classes`` (default: the tree's own).

    With ``class_map`` (data class -> model class), class folders it does not map are left
    out (:func:`left_out` counts them).

    Raises:
        DataError: the split folder is missing, holds an unknown class folder (unless
            ``allow_unknown``), or holds no image at all.
    """
    folder, split_name = _split_folder(root, split)
    classes = tuple(classes) if classes else dataset_classes(root)
    samples: list[Sample] = []
    for name, class_folder in sorted(_children(folder).items()):
        data_class = canonical(name)
        if class_map is not None and data_class not in class_map:
            continue
        target = class_map[data_class] if class_map is not None else data_class
        if target not in classes:
            if allow_unknown:
                continue
            raise DataError(f"{class_folder}: unknown class folder (expected {', '.join(classes)})")
        label = classes.index(target)
        samples.extend(_scan_class_folder(class_folder, label, split_name, target, data_class))
    if not samples:
        raise DataError(f"{folder}: no images in any class folder" + (" that the class map names" if class_map else ""))
    return samples


def left_out(root: str | Path, split: str, class_map: Mapping[str, str]) -> dict[str, int]:
    """Images per class folder of ``split`` that ``class_map`` does not map (left out)."""
    if Path(root).suffix.lower() == ".csv":
        rows = [r for r in _manifest_rows(Path(root)) if (r.get("split") or "").strip().lower() in ("", split)]
        return dict(Counter(canonical(r["label"]) for r in rows if canonical(r["label"]) not in class_map))
    folder, _ = _split_folder(root, split)
    return {
        canonical(name): len(_images(class_folder))
        for name, class_folder in sorted(_children(folder).items())
        if canonical(name) not in class_map
    }


def available_splits(root: str | Path) -> list[str]:
    """The split folders present under a data set root, in train/val/test order."""
    children = _children(find_dataset_root(root))
    return [s for s in SPLITS if s in children]


def _manifest_rows(csv_path: Path) -> list[dict[str, str]]:
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read manifest ({exc})") from exc
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DataError(f"{csv_path}: a manifest needs a header with at least 'path' and 'label' columns")
    return rows


def read_manifest(
    csv_path: str | Path, classes: Sequence[str] | None = None, class_map: Mapping[str, str] | None = None
) -> list[Sample]:
    """Samples from a CSV manifest with columns ``path,label[,patient][,split]``, labelled in
    ``classes`` (default: the labels the manifest names; OCT2017's four when those are all)."""
    csv_path = Path(csv_path)
    rows = _manifest_rows(csv_path)
    classes = tuple(classes) if classes else resolve_classes(r["label"] for r in rows)
    samples = []
    for line, row in enumerate(rows, start=2):
        data_class = canonical(row["label"])
        if class_map is not None and data_class not in class_map:
            continue
        target = class_map[data_class] if class_map is not None else data_class
        if target not in classes:
            raise DataError(f"{csv_path}:{line}: unknown class {row['label']!r}; expected one of {', '.join(classes)}")
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        _, name_patient, number = parse_name(path)
        patient = (row.get("patient") or "").strip() or name_patient
        split = (row.get("split") or "").strip().lower()
        samples.append(Sample(path, classes.index(target), patient, split, number, class_name=target))
    return samples


def data_classes(source: str | Path, requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class set of a tree or manifest (``requested`` wins)."""
    source = Path(source)
    if requested:
        return resolve_classes((), requested)
    if source.suffix.lower() == ".csv":
        return resolve_classes(r["label"] for r in _manifest_rows(source))
    return dataset_classes(source)


def load_samples(
    source: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, str] | None = None,
) -> list[Sample]:
    """Samples of ``split`` from a tree folder or a ``.csv`` manifest (its ``split`` column),
    labelled in ``classes`` (default: the data's own class set)."""
    source = Path(source)
    if source.suffix.lower() == ".csv":
        rows = read_manifest(source, classes, class_map)
        chosen = [s for s in rows if s.split == split] if any(s.split for s in rows) else rows
        if not chosen:
            raise DataError(f"{source}: no rows for split {split!r}")
        return chosen
    return scan_split(source, split, classes=classes, class_map=class_map)


def class_counts(samples: Iterable[Sample], classes: Sequence[str] | None = None) -> dict[str, int]:
    """Images per class, in class order (zero counts included for ``classes``)."""
    samples = list(samples)
    names = list(classes) if classes else _classes_of(samples)
    counts = dict.fromkeys(names, 0)
    for sample in samples:
        counts[sample.class_name] = counts.get(sample.class_name, 0) + 1
    return counts


def _classes_of(samples: Sequence[Sample]) -> list[str]:
    """The class names of ``samples`` in label order."""
    by_label = {s.label: s.class_name for s in samples}
    return [by_label[label] for label in sorted(by_label)]


def describe_counts(samples: Sequence[Sample], classes: Sequence[str] | None = None) -> str:
    """One line such as ``CNV 10, DME 30, DRUSEN 30, NORMAL 12 (82 images)``."""
    counts = class_counts(samples, classes)
    return ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({len(samples)} images)"
