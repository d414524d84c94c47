"""What ``octattn predict`` is pointed at -> a sorted list of image files.

Accepts files, folders (searched recursively for image suffixes) and glob patterns
(``scans/**/*.jpeg``); a pattern or path that matches nothing is reported, not ignored.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from octattn.data.layout import IMAGE_SUFFIXES
from octattn.errors import OctattnError


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files named, files under folders, and glob matches, without duplicates, in order."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matches:
                raise OctattnError(f"{item}: the pattern matches no file")
            found.extend(matches)
        else:
            raise OctattnError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise OctattnError("no image files found in the given paths")
    return unique
