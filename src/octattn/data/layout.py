"""Find labelled scans: an OCT2017-style folder tree or a CSV manifest -> :class:`Sample` s.

Tree: ``DIR/{train,val,test}/{CNV,DME,DRUSEN,NORMAL}/*`` (folder names in any case);
the Kaggle copy's top folder ``"OCT2017 "`` (with its trailing space) and Mendeley's
``CellData/OCT`` are found under ``DIR`` by themselves. File names ``CLASS-PATIENT-N``
give the patient id and image number; a file without them is its own patient group.

Manifest: a CSV with columns ``path,label`` and optionally ``patient`` and ``split``;
relative paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from octattn.classes import CLASS_NAMES, class_index
from octattn.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
_NAME = re.compile(r"^(?P<label>[A-Za-z]+)-(?P<patient>\d+)-(?P<number>\d+)$")


@dataclass(frozen=True)
class Sample:
    """One labelled scan.

    Attributes:
        path: the image file.
        label: index into :data:`~octattn.classes.CLASS_NAMES`.
        patient: patient id from the file name or manifest, or ``None`` when unknown.
        split: ``train`` / ``val`` / ``test`` (or ``""`` when not from a split folder).
        image_number: the ``N`` of ``CLASS-PATIENT-N``, when present.
        augment: a deterministic copy's augmentation (``""`` = the original; see
            :mod:`octattn.data.balance`).
    """

    path: Path
    label: int
    patient: str | None = None
    split: str = ""
    image_number: int | None = None
    augment: str = ""

    @property
    def class_name(self) -> str:
        """The label's class name."""
        return CLASS_NAMES[self.label]

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


def _scan_class_folder(folder: Path, label: int, split: str) -> list[Sample]:
    samples = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name_class, patient, number = parse_name(path)
        if name_class is not None and name_class != CLASS_NAMES[label]:
            # The folder decides the label; a disagreeing name is kept but its patient id is
            # namespaced, so it can never merge two classes' patients by accident.
            patient = f"{name_class}:{patient}"
        samples.append(Sample(path, label, patient, split, number))
    return samples


def scan_split(root: str | Path, split: str, allow_unknown: bool = False) -> list[Sample]:
    """All samples of one split folder (``train``, ``val`` or ``test``), sorted by path.

    Raises:
        DataError: the split folder is missing, holds an unknown class folder (unless
            ``allow_unknown``), or holds no image at all.
    """
    base = find_dataset_root(root)
    folder = _children(base).get(split)
    if folder is None:
        raise DataError(f"{base}: no {split}/ folder")
    samples: list[Sample] = []
    for name, class_folder in sorted(_children(folder).items()):
        try:
            label = class_index(name)
        except KeyError:
            if allow_unknown:
                continue
            raise DataError(f"{class_folder}: unknown class folder (expected {', '.join(CLASS_NAMES)})") from None
        samples.extend(_scan_class_folder(class_folder, label, split))
    if not samples:
        raise DataError(f"{folder}: no images in any class folder")
    return samples


def available_splits(root: str | Path) -> list[str]:
    """The split folders present under a data set root, in train/val/test order."""
    children = _children(find_dataset_root(root))
    return [s for s in SPLITS if s in children]


def read_manifest(csv_path: str | Path) -> list[Sample]:
    """Samples from a CSV manifest with columns ``path,label[,patient][,split]``."""
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read manifest ({exc})") from exc
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DataError(f"{csv_path}: a manifest needs a header with at least 'path' and 'label' columns")
    samples = []
    for line, row in enumerate(rows, start=2):
        try:
            label = class_index(row["label"])
        except KeyError as exc:
            raise DataError(f"{csv_path}:{line}: {exc.args[0]}") from None
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        _, name_patient, number = parse_name(path)
        patient = (row.get("patient") or "").strip() or name_patient
        samples.append(Sample(path, label, patient, (row.get("split") or "").strip().lower(), number))
    return samples


def load_samples(source: str | Path, split: str) -> list[Sample]:
    """Samples of ``split`` from a tree folder or a ``.csv`` manifest (its ``split`` column)."""
    source = Path(source)
    if source.suffix.lower() == ".csv":
        rows = read_manifest(source)
        chosen = [s for s in rows if s.split == split] if any(s.split for s in rows) else rows
        if not chosen:
            raise DataError(f"{source}: no rows for split {split!r}")
        return chosen
    return scan_split(source, split)


def class_counts(samples: Iterable[Sample]) -> dict[str, int]:
    """Images per class, in class order (zero counts included)."""
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for sample in samples:
        counts[sample.class_name] += 1
    return counts


def describe_counts(samples: Sequence[Sample]) -> str:
    """One line such as ``CNV 10, DME 30, DRUSEN 30, NORMAL 12 (82 images)``."""
    counts = class_counts(samples)
    return ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({len(samples)} images)"
