"""The leakage audit: what a data set holds, and what makes its test numbers untrustworthy.

Findings:

* unreadable files (empty, truncated, not an image), with the reason;
* patients present in more than one split (the OCT2017 release has some);
* exact duplicates across splits (same SHA-256 of the file bytes);
* near-duplicates across splits: a 256-bit perceptual hash (``imagehash.phash`` with
  ``hash_size=16``, DCT based: robust to re-encoding and resizing) within
  :data:`NEAR_DUPLICATE_DISTANCE` bits. OCT scans share their global layout, so the
  usual 64-bit hash put unrelated scans of different classes within 2-6 bits on
  oct2017-mini; at 256 bits, half-size re-encoded copies stay within 8 bits, neighbouring
  B-scans of one patient within 2-16, and unrelated scans are 92 or more apart at the
  1st percentile;
* patient ids that occur under more than one class;
* files whose names carry no patient id (each is its own group: leakage through them
  cannot be seen from names).

"Leakage" (the exit status of ``octattn data audit``) means any cross-split patient,
exact duplicate or near-duplicate.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from octattn.data.decode import image_info, load_scan
from octattn.data.layout import (
    IMAGE_SUFFIXES,
    POOL,
    Sample,
    dataset_classes,
    find_dataset_root,
    parse_name,
    scan_split,
)
from octattn.errors import BadImageError, DataError
from octattn.progress import progress

HASH_SIZE = 16
"""Perceptual hash side: 16 x 16 = 256 bits."""

NEAR_DUPLICATE_DISTANCE = 24
"""Largest Hamming distance (of 256 bits) between perceptual hashes called near-duplicate."""


@dataclass
class FileRecord:
    """What the audit read from one file."""

    path: str
    split: str
    label: str
    patient: str | None
    sha256: str
    phash: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None


@dataclass
class AuditReport:
    """Summary and findings of one audit; :meth:`to_dict` is its JSON form."""

    root: str
    counts: dict[str, dict[str, int]]
    sizes: dict[str, int]
    modes: dict[str, int]
    formats: dict[str, int]
    patients: dict[str, int]
    files_without_patient: int
    extension_mismatches: int
    unreadable: list[dict[str, str]] = field(default_factory=list)
    cross_split_patients: list[dict[str, Any]] = field(default_factory=list)
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    multi_class_patients: list[dict[str, Any]] = field(default_factory=list)

    @property
    def leakage(self) -> bool:
        """Whether anything ties a test (or validation) image to a training image."""
        return bool(self.cross_split_patients or self.exact_duplicates or self.near_duplicates)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        data = asdict(self)
        data["leakage"] = self.leakage
        return data


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def discover_splits(root: Path) -> list[str]:
    """Sub-folders of the data set root that hold class folders of images (``train``, ``test``,
    ``renamed``...); none for a tree of class folders without split folders (one pool)."""
    names = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(c.is_dir() and _holds_images(c) for c in child.iterdir()):
            names.append(child.name)
    return names


def _extension_matches(path: Path, fmt: str | None) -> bool:
    expected = {"JPEG": {".jpg", ".jpeg"}, "PNG": {".png"}, "TIFF": {".tif", ".tiff"}, "BMP": {".bmp"}}
    return fmt is None or path.suffix.lower() in expected.get(fmt, {path.suffix.lower()})


def read_record(sample: Sample) -> FileRecord:
    """Hash, decode and describe one file; a decoding failure is recorded, not raised."""
    data = sample.path.read_bytes()
    _, name_patient, _ = parse_name(sample.path)
    record = FileRecord(
        path=str(sample.path),
        split=sample.split,
        label=sample.class_name,
        patient=name_patient,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    try:
        gray = load_scan(sample.path)
        record.format, record.mode, _ = image_info(sample.path)
        record.size = (gray.shape[1], gray.shape[0])
        record.phash = str(imagehash.phash(Image.fromarray(gray), hash_size=HASH_SIZE))
    except BadImageError as exc:
        record.error = exc.reason
    return record


def hash_words(hex_hashes: Sequence[str]) -> np.ndarray:
    """Hex perceptual hashes -> ``(N, words)`` uint64 array for vectorised distances."""
    raw = b"".join(bytes.fromhex(h) for h in hex_hashes)
    return np.frombuffer(raw, dtype=np.uint64).reshape(len(hex_hashes), -1)


def hamming(one: np.ndarray, many: np.ndarray) -> np.ndarray:
    """Bit distances between one hash (a row of :func:`hash_words`) and many."""
    return np.bitwise_count(np.bitwise_xor(many, one)).sum(axis=1)


def linked_groups(records: Sequence[FileRecord], near_distance: int = NEAR_DUPLICATE_DISTANCE) -> list[str]:
    """One group name per record, joining records that must stay on one side of any split.

    Records are linked by a shared patient id, identical bytes, or perceptual hashes within
    ``near_distance`` bits (over every pair, not only across splits); the links are followed
    transitively. Each group is named after its first record's patient (``patient:ID``) or
    file (``file:PATH``).
    """
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)  # the first record stays the root: stable group names

    first_with: dict[str, int] = {}
    for i, record in enumerate(records):
        for key in (f"patient:{record.patient}" if record.patient else None, f"sha:{record.sha256}"):
            if key is not None:
                join(i, first_with.setdefault(key, i))
    hashed = [i for i, r in enumerate(records) if r.phash is not None]
    if hashed:
        words = hash_words([str(records[i].phash) for i in hashed])
        for row, i in enumerate(hashed):
            for col in np.flatnonzero(hamming(words[row], words[row + 1 :]) <= near_distance):
                join(i, hashed[row + 1 + int(col)])
    names = [f"patient:{r.patient}" if r.patient else f"file:{r.path}" for r in records]
    return [names[root(i)] for i in range(len(records))]


def _near_duplicates(records: Sequence[FileRecord], max_distance: int) -> list[dict[str, Any]]:
    hashed = [r for r in records if r.phash is not None]
    by_split: dict[str, list[FileRecord]] = defaultdict(list)
    for record in hashed:
        by_split[record.split].append(record)
    splits = sorted(by_split)
    pairs = []
    for i, first in enumerate(splits):
        for second in splits[i + 1 :]:
            other = by_split[second]
            other_words = hash_words([str(r.phash) for r in other])
            first_words = hash_words([str(r.phash) for r in by_split[first]])
            for record, words in zip(by_split[first], first_words, strict=True):
                distances = hamming(words, other_words)
                for j in np.flatnonzero(distances <= max_distance):
                    if record.sha256 != other[j].sha256:  # exact copies are reported apart
                        pairs.append({"a": record.path, "b": other[j].path, "distance": int(distances[j])})
    return pairs


def _cross_split_patients(records: Sequence[FileRecord]) -> list[dict[str, Any]]:
    splits_of: dict[str, Counter[str]] = defaultdict(Counter)
    classes_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.patient is not None:
            splits_of[record.patient][record.split] += 1
            classes_of[record.patient].add(record.label)
    return [
        {"patient": patient, "splits": dict(sorted(counts.items())), "classes": sorted(classes_of[patient])}
        for patient, counts in sorted(splits_of.items())
        if len(counts) > 1
    ]


def audit_dataset(directory: str | Path, near_distance: int = NEAR_DUPLICATE_DISTANCE) -> AuditReport:
    """Audit every split folder under ``directory``; see the module docstring."""
    pool = Path(directory)
    if pool.is_dir() and not discover_splits(pool) and any(c.is_dir() and _holds_images(c) for c in pool.iterdir()):
        root, splits = pool, [POOL]  # class folders without split folders: one pool
    else:
        root = find_dataset_root(directory)
        splits = discover_splits(root)
    if not splits:
        raise DataError(f"{root}: no split folder with class folders inside")
    classes = dataset_classes(root)
    samples = [s for split in splits for s in scan_split(root, split, allow_unknown=True, classes=classes)]
    records = [read_record(sample) for sample in progress(samples, desc="auditing", unit="file")]
    counts = {split: dict.fromkeys(classes, 0) for split in splits}
    for record in records:
        counts[record.split][record.label] += 1
    readable = [r for r in records if r.error is None]
    by_hash: dict[str, list[FileRecord]] = defaultdict(list)
    for record in records:
        by_hash[record.sha256].append(record)
    exact = [
        {"sha256": digest, "paths": [r.path for r in group]}
        for digest, group in sorted(by_hash.items())
        if len({r.split for r in group}) > 1
    ]
    label_sets: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.patient is not None:
            label_sets[record.patient].add(record.label)
    return AuditReport(
        root=str(root),
        counts=counts,
        sizes=dict(Counter(f"{r.size[0]}x{r.size[1]}" for r in readable if r.size).most_common()),
        modes=dict(Counter(str(r.mode) for r in readable).most_common()),
        formats=dict(Counter(str(r.format) for r in readable).most_common()),
        patients={split: len({r.patient for r in records if r.split == split and r.patient}) for split in splits},
        files_without_patient=sum(r.patient is None for r in records),
        extension_mismatches=sum(not _extension_matches(Path(r.path), r.format) for r in readable),
        unreadable=[{"path": r.path, "reason": str(r.error)} for r in records if r.error is not None],
        cross_split_patients=_cross_split_patients(records),
        exact_duplicates=exact,
        near_duplicates=_near_duplicates(readable, near_distance),
        multi_class_patients=[
            {"patient": p, "classes": sorted(c)} for p, c in sorted(label_sets.items()) if len(c) > 1
        ],
    )


def format_report(report: AuditReport, limit: int = 10) -> str:
    """A readable summary of an audit for the terminal."""
    lines = [f"Data set: {report.root}", ""]
    classes = list(next(iter(report.counts.values()), {}))
    header = f"{'split':<10}" + "".join(f"{c:>8}" for c in classes) + f"{'total':>8}{'patients':>10}"
    lines.append(header)
    for split, per_class in report.counts.items():
        cells = "".join(f"{per_class[c]:>8}" for c in classes)
        lines.append(f"{split:<10}{cells}{sum(per_class.values()):>8}{report.patients.get(split, 0):>10}")
    lines += [
        "",
        "sizes: " + ", ".join(f"{k} ({v})" for k, v in list(report.sizes.items())[:8]),
        "modes: " + ", ".join(f"{k} ({v})" for k, v in report.modes.items()),
        "formats: "
        + ", ".join(f"{k} ({v})" for k, v in report.formats.items())
        + f"; {report.extension_mismatches} file(s) whose extension does not match their content",
        f"files without a patient id in their name: {report.files_without_patient}"
        " (each is its own group; leakage through them cannot be seen from names)",
        "",
        "Findings:",
    ]

    def section(title: str, items: Sequence[dict[str, Any]], render: Any) -> None:
        lines.append(f"- {title}: {len(items)}")
        lines.extend(f"    {render(item)}" for item in items[:limit])
        if len(items) > limit:
            lines.append(f"    ... and {len(items) - limit} more (see --json)")

    section("unreadable files", report.unreadable, lambda i: f"{i['path']}: {i['reason']}")
    section(
        "patients in more than one split",
        report.cross_split_patients,
        lambda i: (
            f"patient {i['patient']} ({'/'.join(i['classes'])}): "
            + ", ".join(f"{s} {n}" for s, n in i["splits"].items())
        ),
    )
    section("exact duplicates across splits", report.exact_duplicates, lambda i: " = ".join(i["paths"]))
    section(
        "near-duplicates across splits",
        report.near_duplicates,
        lambda i: f"{i['a']} ~ {i['b']} (distance {i['distance']})",
    )
    section(
        "patient ids under more than one class",
        report.multi_class_patients,
        lambda i: f"patient {i['patient']}: {', '.join(i['classes'])}",
    )
    lines += ["", "LEAKAGE FOUND" if report.leakage else "No leakage found."]
    return "\n".join(lines)
