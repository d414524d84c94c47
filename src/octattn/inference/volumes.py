"""Scan volumes: predictions per B-scan and one call per volume.

Readers: multi-frame DICOM (pydicom: OCT "Ophthalmic Tomography" objects and any other
multi-frame image) and Heidelberg Spectralis ``.vol`` / ``.e2e`` (eyepy). The vendor
formats are parsed by the library; its errors are turned into one line naming the file.

The volume-level rule: the most urgent class found in any B-scan whose calibrated
probability for it is at least :data:`CALL_THRESHOLD` (urgency: CNV and DME, then
DRUSEN, then NORMAL; between the two urgent classes, the one found in more B-scans).
Why not a majority vote: a macular cube of 49-97 B-scans shows a lesion in only a few of
them, and those few decide the referral; a vote would call most CNV eyes normal. The
share of abnormal B-scans is reported beside the call, as the extent of disease.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octattn.classes import REFERRAL_TIER, TIERS
from octattn.errors import BadImageError, OctattnError
from octattn.inference.predictor import NO_TIER, Predictor, ScanPrediction

CALL_THRESHOLD = 0.5
VOLUME_SUFFIXES = frozenset({".dcm", ".dicom", ".vol", ".e2e"})


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    frames = frames.astype(np.float64)
    finite = frames[np.isfinite(frames)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(frames, nan=low) - low) * (255.0 / (high - low) if high > low else 0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_dicom_frames(path: Path) -> np.ndarray:
    """``(frames, H, W)`` uint8 from a (multi-frame) DICOM file."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as exc:
        raise OctattnError("reading DICOM needs pydicom: pip install 'octattn[volumes]'") from exc
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except InvalidDicomError as exc:
        raise BadImageError(path, f"not a valid DICOM file ({exc})") from None
    except (AttributeError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise BadImageError(path, f"DICOM without readable pixel data ({exc})") from None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    if samples == 3:  # colour: ITU-R 601 luma, as for single images
        pixels = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    if frames == 1 and pixels.ndim == 2:
        pixels = pixels[None]
    return _to_uint8(pixels)


HEIDELBERG_PATTERNS = {
    0: "unknown scan pattern",
    1: "line scan",
    2: "circular scan",
    3: "volume scan (ART mode)",
    4: "fast volume scan",
    5: "radial scan",
}
"""Heidelberg ``.vol`` scan patterns (the file header's ``ScanPattern``)."""

REFUSED_PATTERNS = {
    2: "it images the nerve fibre layer around the optic disc, and the model was trained on macular B-scans only"
}
"""Scan patterns octattn reads but does not classify, and why. Radial scans are kept: each
of their B-scans is a line through the fovea, like a macular line scan."""


def read_heidelberg_vol(path: Path) -> np.ndarray:
    """``(B-scans, H, W)`` uint8 from a Heidelberg ``.vol`` file, any scan pattern eyepy parses.

    eyepy's :func:`eyepy.import_heyex_vol` refuses circular and radial scans; its
    lower-level reader parses them, and the B-scans get eyepy's own Heyex intensity
    transform, so every pattern looks as it does in Heyex.

    Raises:
        BadImageError: not a readable ``.vol`` file, or a pattern in :data:`REFUSED_PATTERNS`.
    """
    from eyepy.core.utils import vol_intensity_transform
    from eyepy.io.he.vol_reader import HeVolReader

    try:
        parsed = HeVolReader(path).parsed_file
        frames = np.stack([vol_intensity_transform(np.array(b.data, dtype=np.float32)) for b in parsed.bscans])
        pattern = int(parsed.scan_pattern)
    except Exception as exc:  # construct raises many types on foreign or truncated files
        raise BadImageError(path, f"not a readable Heidelberg .vol file ({_reason(exc)})") from None
    if pattern in REFUSED_PATTERNS:
        raise BadImageError(
            path,
            f"{HEIDELBERG_PATTERNS[pattern]} (Heidelberg scan pattern {pattern}) not classified: "
            f"{REFUSED_PATTERNS[pattern]}",
        )
    return frames


def _reason(exc: Exception) -> str:
    """An exception's message in one line, or its kind in words when it has none."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_heidelberg(path: Path) -> np.ndarray:
    """``(B-scans, H, W)`` uint8 from a Heidelberg ``.vol`` or ``.e2e`` file (eyepy)."""
    try:
        import eyepy
    except ImportError as exc:
        raise OctattnError("reading .vol/.e2e needs eyepy: pip install 'octattn[volumes]'") from exc
    if path.suffix.lower() == ".vol":
        return read_heidelberg_vol(path)
    try:
        volume = eyepy.import_heyex_e2e(path)
        if isinstance(volume, list):
            volume = volume[0]
        return _to_uint8(volume.data)
    except Exception as exc:  # the vendor parsers raise many types on foreign or damaged files
        raise BadImageError(path, f"not a readable Heidelberg .e2e file ({_reason(exc)})") from None


def is_volume_file(path: str | Path) -> bool:
    """A volume octattn reads by suffix (``.dcm``, ``.vol``, ``.e2e``) or by DICOM preamble."""
    path = Path(path)
    if path.suffix.lower() in VOLUME_SUFFIXES:
        return True
    try:
        return path.is_file() and _is_dicom(path)
    except OSError:
        return False


def read_volume(path: str | Path) -> np.ndarray:
    """The B-scans of a volume file as ``(N, H, W)`` uint8, by content or extension."""
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix in (".vol", ".e2e"):
        frames = read_heidelberg(path)
    elif suffix in (".dcm", ".dicom") or _is_dicom(path):
        frames = read_dicom_frames(path)
    else:
        raise BadImageError(path, "not a volume format octattn reads (.dcm, .vol, .e2e)")
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise BadImageError(path, f"no B-scans found (pixel array of shape {frames.shape})")
    return frames


@dataclass
class VolumeResult:
    """Per-B-scan predictions and the volume's call."""

    source: str
    bscans: list[ScanPrediction]
    label: str
    referral: str
    abnormal_share: float
    evidence: list[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "source": self.source,
            "class": self.label,
            "referral": self.referral,
            "abnormal_share": self.abnormal_share,
            "evidence_bscans": self.evidence,
            "rule": f"most urgent class with probability >= {CALL_THRESHOLD} in any B-scan",
            "bscans": [p.to_dict() for p in self.bscans],
        }


def urgency_order(tiers: Mapping[str, str | None]) -> list[str]:
    """Classes from the most to the least urgent tier (classes without a tier last), each tier in
    class order: OCT2017 gives CNV, DME, DRUSEN, NORMAL."""
    rank = {tier: i for i, tier in enumerate(TIERS)}
    return sorted(tiers, key=lambda c: rank.get(tiers[c] or "", len(TIERS)))


def normal_class(tiers: Mapping[str, str | None]) -> str:
    """The class a volume gets when no B-scan shows anything: the least urgent one."""
    order = urgency_order(tiers)
    tiered = [c for c in order if tiers[c]]
    return tiered[-1] if tiered else order[-1]


def volume_call(bscans: list[ScanPrediction], tiers: Mapping[str, str | None] = REFERRAL_TIER) -> tuple[str, list[int]]:
    """The module docstring's rule: (class, indices of the B-scans that support it)."""
    order = urgency_order(tiers)
    confident = [(i, p.label) for i, p in enumerate(bscans) if p.probabilities[p.label] >= CALL_THRESHOLD]
    counts = Counter(label for _, label in confident)
    urgent = [c for c in order if tiers[c] == "urgent" and counts[c]]
    if urgent:
        label = max(urgent, key=lambda c: (counts[c], -order.index(c)))
    else:
        label = next((c for c in order if counts[c]), normal_class(tiers))
    return label, [i for i, c in confident if c == label]


def predict_volume(predictor: Predictor, path: str | Path, batch_size: int = 16) -> VolumeResult:
    """Classify every B-scan of a volume and make the volume's call."""
    frames = read_volume(path)
    bscans: list[ScanPrediction] = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        sources = [f"{path}#{start + k}" for k in range(len(chunk))]
        bscans.extend(predictor.predict_arrays(list(chunk), sources))
    tiers = predictor.config.referral
    label, evidence = volume_call(bscans, tiers)
    abnormal = sum(p.label != normal_class(tiers) for p in bscans) / len(bscans)
    return VolumeResult(str(path), bscans, label, tiers.get(label) or NO_TIER, abnormal, evidence)
