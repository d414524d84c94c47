"""The docs' tables of measured numbers, rendered from ``benchmarks/results/*.json``.

A docs page holds a table between two markers::

    <!-- results: inference -->
    ...the table, as rendered...
    <!-- /results -->

``<!-- results: NAME.VIEW -->`` renders the same JSON with the benchmark's ``VIEW`` function
instead of ``table`` (the README's short summary of a long results page).

``python -m benchmarks.docs_tables`` rewrites every such block (and ``results/NAME.md``) from
its JSON with the benchmark's own ``table`` function; ``--check`` only reports the blocks that
differ (the test suite runs the same check, so a table cannot drift from its numbers).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, measured_on

DOCS = REPO / "docs"
BLOCK = re.compile(
    r"(<!-- results: (?P<name>[a-z0-9_]+(?:\.[a-z0-9_]+)?) -->\n)(?P<body>.*?)(<!-- /results -->)",
    re.S,
)


def render(name: str) -> str:
    """``results/NAME.json`` as its benchmark renders it (``NAME.VIEW``: with its ``VIEW``
    function instead of ``table``), with the machine it was measured on."""
    source, _, view = name.partition(".")
    payload: dict[str, Any] = json.loads((RESULTS / f"{source}.json").read_text())
    module = importlib.import_module(f"benchmarks.{source}")
    return getattr(module, view or "table")(payload).rstrip() + "\n\n" + measured_on(payload) + "\n"


def refreshed(text: str, cache: dict[str, str] | None = None) -> str:
    """``text`` with every results block rendered anew."""
    cache = {} if cache is None else cache

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in cache:
            cache[name] = render(name)
        return match.group(1) + cache[name] + match.group(4)

    return BLOCK.sub(block, text)


def pages() -> list[Path]:
    """The docs pages and the README, where tables may stand."""
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def stale_pages(files: list[Path], cache: dict[str, str] | None = None) -> list[Path]:
    """The pages among ``files`` with a results block that differs from its JSON."""
    cache = {} if cache is None else cache
    return [p for p in files if refreshed(p.read_text(), cache) != p.read_text()]


def stale() -> list[str]:
    """Files (docs pages, ``results/*.md``) whose tables differ from their JSON."""
    cache: dict[str, str] = {}
    found = [str(p.relative_to(REPO)) for p in stale_pages(pages(), cache)]
    for source in sorted(RESULTS.glob("*.json")):
        md = source.with_suffix(".md")
        if not md.exists() or md.read_text() != cache.setdefault(source.stem, render(source.stem)):
            found.append(str(md.relative_to(REPO)))
    return found


def main() -> int:
    """Rewrite (or with ``--check``, list) the tables that differ from their JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list what differs and exit 1; write nothing")
    args = parser.parse_args()
    differing = stale()
    if args.check:
        for name in differing:
            print(f"{name}: a table differs from its results JSON (run python -m benchmarks.docs_tables)")
        return 1 if differing else 0
    cache: dict[str, str] = {}
    for page in pages():
        page.write_text(refreshed(page.read_text(), cache))
    for source in sorted(RESULTS.glob("*.json")):
        source.with_suffix(".md").write_text(cache.setdefault(source.stem, render(source.stem)))
    for name in differing:
        print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
