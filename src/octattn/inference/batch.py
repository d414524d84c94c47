"""Predict everything a user points at, and account for every file: ``octattn predict``.

:func:`predict_paths` classifies image files in batches and volume files one by one, and
returns a :class:`PredictionRun` that lists every file that was *not* predicted with the
reason in words (not an image, unreadable, a volume that cannot be read). Its rows are the
CSV and JSON that ``octattn predict --out`` writes, so the command line, the service and a
Python user get the same thing.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octattn.errors import OctattnError
from octattn.inference.predictor import Predictor, ScanPrediction
from octattn.inference.volumes import VolumeResult, is_volume_file, predict_volume
from octattn.io import atomic_write_text


@dataclass(frozen=True)
class NotPredicted:
    """A file that got no prediction, and why (one line, in words)."""

    source: str
    reason: str

    @property
    def kind(self) -> str:
        """A short category for the summary line."""
        if self.reason.startswith("not an image"):
            return "not an image"
        if "volume" in self.reason or "B-scan" in self.reason or "scan pattern" in self.reason:
            return "unreadable volume"
        return "unreadable"


@dataclass
class PredictionRun:
    """Everything one ``predict`` produced, in input order."""

    class_names: list[str]
    predictions: list[ScanPrediction] = field(default_factory=list)
    volumes: list[VolumeResult] = field(default_factory=list)
    not_predicted: list[NotPredicted] = field(default_factory=list)
    has_detector: bool = True

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``--out FILE.json``."""
        return {
            "predictions": [p.to_dict() for p in self.predictions],
            "volumes": [v.to_dict() for v in self.volumes],
            "not_predicted": [{"source": f.source, "reason": f.reason} for f in self.not_predicted],
        }

    def columns(self) -> list[str]:
        """The columns of ``predict``'s table (CSV here, Parquet from the Ray engine)."""
        probabilities = [f"p_{n}" for n in self.class_names]
        return ["source", "class", "referral", *probabilities, "ood", "ood_score", "ood_reason", "not_predicted_reason"]

    def rows(self) -> list[dict[str, Any]]:
        """One row per scan; per volume, one per B-scan (``FILE#k``) then the volume's call
        (``FILE``, without probabilities); then one per file not predicted. Values are typed:
        probabilities and scores as floats, the flag as a bool (None without a detector)."""
        names = self.class_names
        empty = dict.fromkeys(f"p_{n}" for n in names)

        def scan(p: ScanPrediction) -> dict[str, Any]:
            probs = {f"p_{n}": float(p.probabilities[n]) for n in names}
            return {
                "source": p.source,
                "class": p.label,
                "referral": p.referral,
                **probs,
                "ood": p.ood,
                "ood_score": p.ood_score,
                "ood_reason": p.ood_reason,
                "not_predicted_reason": "",
            }

        rows = [scan(p) for p in self.predictions]
        for v in self.volumes:
            rows += [scan(b) for b in v.bscans]
            rows.append(
                {
                    "source": v.source,
                    "class": v.label,
                    "referral": v.referral,
                    **empty,
                    "ood": v.ood,
                    "ood_score": None,
                    "ood_reason": "",
                    "not_predicted_reason": "",
                }
            )
        for failure in self.not_predicted:
            rows.append(
                {
                    "source": failure.source,
                    "class": "",
                    "referral": "",
                    **empty,
                    "ood": None,
                    "ood_score": None,
                    "ood_reason": "",
                    "not_predicted_reason": failure.reason,
                }
            )
        return rows

    def to_csv(self) -> str:
        """:meth:`rows` as CSV (probabilities to 6 decimals, scores to 4)."""
        return rows_to_csv(self.columns(), self.rows())

    def write(self, out: str | Path) -> Path:
        """Write ``--out``: JSON for a ``.json`` name, CSV otherwise (atomically)."""
        path = Path(out)
        text = json.dumps(self.to_json(), indent=1) if path.suffix.lower() == ".json" else self.to_csv()
        atomic_write_text(path, text)
        return path

    def table(self) -> list[str]:
        """The lines printed for a person: one per scan, one per volume."""
        names = self.class_names
        lines = []
        if self.predictions:
            lines.append(f"{'scan':<48}{'class':<14}{'referral':<14}" + "".join(f"{n:>8}" for n in names))
            for p in self.predictions:
                probs = "".join(f"{100 * p.probabilities[n]:>7.1f}%" for n in names)
                lines.append(f"{p.source[-47:]:<48}{p.label[:13]:<14}{p.referral[:13]:<14}{probs}")
                if p.ood:
                    lines.append(f"  ^ UNLIKE THE TRAINING DATA: {p.ood_reason}")
        for v in self.volumes:
            lines.append(
                f"volume {v.source}: {v.label} ({v.referral}), {len(v.bscans)} B-scan(s), "
                f"{100 * v.abnormal_share:.0f}% abnormal, evidence in B-scans {v.evidence[:10]}"
            )
        return lines

    def summary(self) -> str:
        """``3 scan(s) and 1 volume(s) predicted; 2 file(s) not predicted (1 not an image, 1 unreadable)``."""
        text = f"{len(self.predictions)} scan(s) and {len(self.volumes)} volume(s) predicted"
        flagged = sum(bool(p.ood) for p in self.predictions) + sum(bool(v.ood) for v in self.volumes)
        if flagged:
            text += f"; {flagged} flagged as unlike the training data (no class call)"
        if self.not_predicted:
            kinds = Counter(f.kind for f in self.not_predicted)
            detail = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
            text += f"; {len(self.not_predicted)} file(s) not predicted ({detail})"
        return text


def rows_to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """Prediction rows as ``predict``'s CSV text."""

    def text(key: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:.4f}" if key == "ood_score" else f"{value:.6f}"
        return str(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([text(key, row.get(key)) for key in columns])
    return buffer.getvalue()


def predict_paths(predictor: Predictor, paths: Sequence[Path], batch_size: int = 16) -> PredictionRun:
    """Classify every file: volumes one by one, the rest as scans in batches.

    Nothing is dropped: a file that is neither a readable image nor a readable volume is
    listed in :attr:`PredictionRun.not_predicted` with the reason.
    """
    run = PredictionRun(class_names=list(predictor.class_names), has_detector=predictor.ood is not None)
    volumes = [p for p in paths if is_volume_file(p)]
    volume_set = set(volumes)
    images = [p for p in paths if p not in volume_set]
    result = predictor.predict_files(images, batch_size)
    run.predictions = result.predictions
    run.not_predicted = [NotPredicted(str(f.path), f.reason) for f in result.failures]
    for path in volumes:
        try:
            run.volumes.append(predict_volume(predictor, path, batch_size))
        except OctattnError as exc:
            reason = getattr(exc, "reason", str(exc))
            run.not_predicted.append(NotPredicted(str(path), reason))
    return run
