"""``octattn ensemble``: several trained bundles as one ensemble bundle.

The members must share classes (in order), pre-processing and referral tiers. Each is
copied whole into ``members/<i>/`` (so the ensemble folder travels alone), the ensemble's
``config.json`` names them, and the first member's out-of-distribution detector is copied
beside it: the ensemble's detector reads the first member's stages, which are exactly that
member's. Operating points (abstention, urgent referral, the volume rule) were chosen for one
member's probabilities, not the ensemble's, so they are not carried over: with ``data`` they
are chosen again on the ensemble's own validation probabilities (:func:`fit_safety`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from octattn.errors import OctattnError
from octattn.inference.bundle import (
    CONFIG_FILE,
    BundleConfig,
    check_same_task,
    load_bundle,
    read_bundle_config,
    resolve_bundle_dir,
    weights_file,
)
from octattn.inference.ood import OOD_FILE
from octattn.io import atomic_write_text

MEMBERS_DIR = "members"


def build_ensemble(models: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> BundleConfig:
    """Write an ensemble bundle of ``models`` (bundles, run folders or ``hf-hub:`` names) to
    ``out_dir``, all at once: the folder appears complete or not at all.

    Raises:
        OctattnError: fewer than two models, a model that is itself an ensemble, members that
            disagree on classes, pre-processing or referral tiers, or ``out_dir`` already there.
    """
    out = Path(out_dir)
    if len(models) < 2:
        raise OctattnError(f"an ensemble needs at least two models, got {len(models)}")
    if out.exists() and not overwrite:
        raise OctattnError(f"{out}: already exists (pass --overwrite to replace it)")
    folders = [resolve_bundle_dir(model) for model in models]
    configs = [read_bundle_config(folder) for folder in folders]
    for folder, config in zip(folders, configs, strict=True):
        if config.ensemble:
            raise OctattnError(f"{folder}: already an ensemble (name its members instead)")
        check_same_task(config, configs[0], str(folder))
        if config.referral != configs[0].referral:
            raise OctattnError(f"{folder}: referral tiers {config.referral} differ from {configs[0].referral}")
    first = configs[0]
    names = [f"{MEMBERS_DIR}/{i}" for i in range(len(folders))]
    ensemble = BundleConfig(
        architecture=dict(first.architecture),
        preprocess=first.preprocess,
        class_names=list(first.class_names),
        referral=dict(first.referral),
        provenance={
            "ensemble_of": [
                {"source": str(model), "member": name, "provenance": config.provenance}
                for model, name, config in zip(models, names, configs, strict=True)
            ],
            "combine": "mean of the members' calibrated probabilities",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        ensemble=names,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for folder, name in zip(folders, names, strict=True):
            member = staging / name
            member.mkdir(parents=True)
            shutil.copyfile(folder / CONFIG_FILE, member / CONFIG_FILE)
            shutil.copyfile(weights_file(folder), member / weights_file(folder).name)
            if (folder / OOD_FILE).is_file():
                shutil.copyfile(folder / OOD_FILE, member / OOD_FILE)
        if (folders[0] / OOD_FILE).is_file():
            shutil.copyfile(folders[0] / OOD_FILE, staging / OOD_FILE)
        atomic_write_text(staging / CONFIG_FILE, json.dumps(ensemble.to_dict(), indent=1))
        load_bundle(staging)  # every member's weights fit its architecture, before anything is replaced
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ensemble


SPLIT_FILE = "split.json"


def sample_key(path: str | Path) -> str:
    """A scan's name within its data set (class folder and file name): the same scan whether
    the data was named by a relative or an absolute path, or has moved since."""
    return "/".join(Path(path).parts[-2:])


def shared_validation(models: Sequence[str | Path]) -> set[str] | None:
    """The validation scans every member held out (:func:`sample_key` of each), read from the
    members' run folders (``RUN/split.json``); None where a member is a bare bundle.

    Raises:
        OctattnError: the members held out different scans (seeds that split the data apart):
            a scan one member validates on, another trained on, would flatter the ensemble's
            operating points.
    """
    records = []
    for model in models:
        split = Path(str(model)) / SPLIT_FILE
        if not split.is_file():
            return None
        records.append({sample_key(p) for p in json.loads(split.read_text())["val"]})
    if any(record != records[0] for record in records):
        raise OctattnError(
            "the members held out different validation scans (each seed split the data its own way), so no "
            "scan is unseen by all: train them with one split_seed (`split_seed=0`), or leave out --data"
        )
    return records[0]


def describe_members(config: BundleConfig) -> str:
    """One line naming an ensemble's members, with each one's training seed where known."""
    parts = []
    for entry in config.provenance.get("ensemble_of", []):
        seed = entry.get("provenance", {}).get("config", {}).get("seed")
        parts.append(str(entry.get("source")) + (f" (seed {seed})" if seed is not None else ""))
    return f"{len(config.ensemble)} members: " + ", ".join(parts)
