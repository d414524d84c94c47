"""What ``octattn predict`` is pointed at -> a sorted list of files.

Accepts files, folders (every file under them, recursively) and glob patterns
(``scans/**/*.jpeg``); a pattern or path that matches nothing is reported, not ignored.
A folder's files are not filtered by suffix: scans are recognised by their content
(a WebP, a ``.JPG`` from a camera, a file without a suffix), and a file that is not a
scan is reported with the reason by the prediction, never dropped in silence.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from octattn.errors import OctattnError


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files named, files under folders, and glob matches, without duplicates, in order."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
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
        raise OctattnError("no files found in the given paths")
    return unique
