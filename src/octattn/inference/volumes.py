"""Scan volumes: predictions per B-scan and one call per volume.

Readers: multi-frame DICOM (pydicom: OCT "Ophthalmic Tomography" objects and any other
multi-frame image) and Heidelberg Spectralis ``.vol`` / ``.e2e`` (eyepy). The vendor
formats are parsed by the library; its errors are turned into one line naming the file.

The volume's call is :mod:`octattn.inference.volume_call`'s (a count of B-scans calibrated
so that the false rate does not grow with the number of B-scans). Why not a majority vote: a
macular cube of 49-97 B-scans shows a lesion in only a few of them, and those few decide
the referral; a vote would call most CNV eyes normal. The share of abnormal B-scans is
reported beside the call, as the extent of disease.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octattn.errors import BadImageError, OctattnError
from octattn.inference.predictor import NO_TIER, NOT_ASSESSED, Predictor, ScanPrediction
from octattn.inference.volume_call import CALL_THRESHOLD, VolumeRule, normal_class, volume_call

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
    rule: str = ""
    ood: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "source": self.source,
            "class": self.label,
            "referral": self.referral,
            "abnormal_share": self.abnormal_share,
            "evidence_bscans": self.evidence,
            "rule": self.rule,
            "ood": self.ood,
            "bscans": [p.to_dict() for p in self.bscans],
        }


def predict_volume(predictor: Predictor, path: str | Path, batch_size: int = 16) -> VolumeResult:
    """Classify every B-scan of a volume and make the volume's call."""
    frames = read_volume(path)
    bscans: list[ScanPrediction] = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        sources = [f"{path}#{start + k}" for k in range(len(chunk))]
        bscans.extend(predictor.predict_arrays(list(chunk), sources))
    tiers = predictor.config.referral
    rule = VolumeRule.from_dict(predictor.config.decision.get("volume"))
    flagged = [p.ood for p in bscans]
    ood = None if all(f is None for f in flagged) else sum(bool(f) for f in flagged) > len(bscans) / 2
    if ood and not predictor.allow_ood:
        reason = "most of its B-scans are unlike the training data"
        return VolumeResult(str(path), bscans, NOT_ASSESSED, f"not assessed: {reason}", 0.0, [], rule.describe(), ood)
    label, evidence = volume_call(bscans, tiers, rule)
    normal = normal_class(tiers)
    abnormal = sum(p.probabilities[normal] < CALL_THRESHOLD for p in bscans if not p.ood) / len(bscans)
    referral = tiers.get(label) or NO_TIER
    return VolumeResult(str(path), bscans, label, referral, abnormal, evidence, rule.describe(), ood)
