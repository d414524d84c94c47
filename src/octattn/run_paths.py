"""Run folders that travel: where a run's data is, from any working directory, after a move.

A run records its data three ways in ``RUN/paths.json``: the absolute path, the path
relative to the run folder, and the path as the user typed it with the working directory
of the day (provenance). :class:`RunPaths` finds the data again from any working
directory, and after the run folder was moved or copied together with its data (a demo
folder holds both); paths written by the run (``predictions.csv``) are mapped onto
wherever the data is now. Where the data is gone, it says so and callers carry on with
what the run's own files hold.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from octattn.errors import OctattnError
from octattn.io import atomic_write_text

PATHS_FILE = "paths.json"


def record_data_location(run_dir: str | Path, data: str | Path) -> Path:
    """Write ``RUN/paths.json`` for ``data`` and return its absolute path."""
    run = Path(run_dir).resolve()
    absolute = Path(data).resolve()
    record = {
        "data": {
            "absolute": str(absolute),
            "relative_to_run": os.path.relpath(absolute, run),
            "as_given": str(data),
            "cwd": os.getcwd(),
        }
    }
    atomic_write_text(run / PATHS_FILE, json.dumps(record, indent=1))
    return absolute


def _rerooted(path: Path, old_root: Path, new_root: Path) -> Path | None:
    try:
        return new_root / path.relative_to(old_root)
    except ValueError:
        return None


class RunPaths:
    """The data locations a run recorded, resolved against where things are now.

    Args:
        run_dir: a run folder (``RUN/config.yaml``); a folder without records resolves
            nothing and maps every path to itself.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.record: dict[str, Any] = {}
        path = self.run_dir / PATHS_FILE
        if path.is_file():
            self.record = json.loads(path.read_text()).get("data", {})
        else:  # a run from before paths.json: its config holds the data as typed
            config = self.run_dir / "config.yaml"
            data = (yaml.safe_load(config.read_text()) or {}).get("data") if config.is_file() else None
            if data:
                self.record = {"as_given": str(data)}

    @property
    def recorded(self) -> str | None:
        """The data path as recorded (absolute when the run recorded one)."""
        return self.record.get("absolute") or self.record.get("as_given")

    def candidates(self) -> list[Path]:
        """Where the data may be now, most trusted first."""
        found: list[Path] = []
        if "absolute" in self.record:
            found.append(Path(self.record["absolute"]))
        if "relative_to_run" in self.record:
            found.append(self.run_dir / self.record["relative_to_run"])
        given = self.record.get("as_given")
        if given and not Path(given).is_absolute():
            # Typed relative to a working directory we may not be in: try the run folder's
            # ancestors (``runs/demo-X/data`` typed in the folder that holds ``runs/``).
            found += [Path.cwd() / given, *(ancestor / given for ancestor in [self.run_dir, *self.run_dir.parents])]
        elif given:
            found.append(Path(given))
        return found

    def data_root(self) -> Path | None:
        """The data folder (or manifest) as it exists now, or ``None`` when it is gone."""
        return next((p.resolve() for p in self.candidates() if p.exists()), None)

    def resolve(self, recorded_path: str | Path) -> Path:
        """A path the run wrote (an image of its data), mapped onto where the data is now.

        Returns the path unchanged when it exists, or when no better place is known.
        """
        path = Path(recorded_path)
        if path.exists():
            return path
        root = self.data_root()
        if root is None:
            return path
        old_roots = [Path(r) for r in (self.record.get("absolute"), self.record.get("as_given")) if r]
        if root.is_file():  # a CSV manifest: its images lie relative to its folder
            root, old_roots = root.parent, [old.parent for old in old_roots]
        for old in old_roots:
            moved = _rerooted(path, old, root)
            if moved is not None and moved.exists():
                return moved
        return path


def data_for(model_path: str | Path, data: str | Path | None) -> Path:
    """The data to evaluate on: ``data`` when given, else the data a run folder recorded.

    Raises:
        OctattnError: no ``data`` and no run folder, or the recorded data is gone.
    """
    if data is not None:
        return Path(data).resolve()
    run = Path(model_path)
    if not (run / "config.yaml").is_file():
        raise OctattnError(f"{run}: not a run folder, so it records no data; pass --data DIR")
    paths = RunPaths(run)
    root = paths.data_root()
    if root is None:
        where = paths.recorded or "nowhere"
        raise OctattnError(f"{run}: the data it was trained on is not at {where} any more; pass --data DIR")
    return root


def common_data(model_paths: list[str | Path], data: str | Path | None) -> Path:
    """The one data set several models are compared on: ``data``, or what their runs recorded.

    Raises:
        OctattnError: no ``data`` and the runs recorded different data (or none).
    """
    if data is not None:
        return Path(data).resolve()
    roots = {data_for(path, None) for path in model_paths}
    if len(roots) > 1:
        listed = ", ".join(str(r) for r in sorted(roots))
        raise OctattnError(f"the runs were trained on different data ({listed}); pass --data DIR to compare them")
    return roots.pop()
