"""Does jitter help a model from scratch on real scans? Part b's OCTDL recipe, with and without it.

The real-scan benchmark's OCTDL runs overfit: the training loss falls to about 0.4 while the
validation loss climbs from the fourth epoch on. This asks whether ``jitter: 1`` (a tilt,
shift and zoom of a few degrees or percent and a brightness/contrast change of up to 20%,
:func:`octattn.data.transforms.random_jitter`) is the missing regulariser: plain
Inception-v4 on OCTDL's audited split, part b's recipe (128 px, 12 one-cycle epochs,
class-balanced sampling), each seed with and without jitter, paired (McNemar) on the same
480 clean test scans.

``python -m benchmarks.octdl_jitter --octdl PATH [--seeds 0]``: resumable, and it shares
``runs/real-scans/full`` with the real-scan benchmark, so a finished part b run (same
name, same settings) is reused as the run without jitter. Writes
``results/octdl_jitter.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, write_results
from benchmarks.real_scans import (
    octdl_clean_manifest,
    octdl_overrides,
    paired,
    pct_ci,
    plan,
    pooled,
    run_once,
)

MODEL = "plain"
"""Part b's best model on macro-F1, and the fastest of the three."""


def with_and_without(work: Path, octdl: Path, seed: int) -> dict[str, Any]:
    """One seed's pair of runs: part b's, and the same with ``jitter=1``."""
    manifest = work / "octdl-clean.csv"
    if not manifest.exists():
        octdl_clean_manifest(octdl, manifest)
    overrides = octdl_overrides(plan(False, 147), MODEL, seed)
    without = pooled([run_once(f"octdl-{MODEL}-s{seed}", work, manifest, overrides)])
    jittered = pooled([run_once(f"octdl-{MODEL}-s{seed}-jitter1", work, manifest, [*overrides, "jitter=1"])])

    def summary(run: dict[str, Any]) -> dict[str, Any]:
        return {k: run[k] for k in ("n", "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")}

    return {"without": summary(without), "with": summary(jittered), "paired": paired(without, jittered)}


def table(results: dict[str, Any]) -> str:
    """The docs' table of an ``octdl_jitter.json``."""
    lines = [
        f"Plain Inception-v4 on OCTDL's {results['test_scans']} clean test scans, part b's recipe "
        "(128 px, 12 one-cycle epochs, class-balanced sampling), with and without `jitter: 1`:",
        "",
        "| seed | jitter | test accuracy (95% CI) | test macro-F1 (95% CI) |",
        "| --- | --- | ---: | ---: |",
    ]
    for seed, pair in results["seeds"].items():
        for label in ("without", "with"):
            r = pair[label]
            accuracy, f1 = pct_ci(r["accuracy"], r["accuracy_ci"]), pct_ci(r["macro_f1"], r["macro_f1_ci"])
            lines.append(f"| {seed} | {label} | {accuracy} | {f1} |")
    lines += ["", "| paired (same scans) | with - without, accuracy points | McNemar p |", "| --- | ---: | ---: |"]
    for seed, pair in results["seeds"].items():
        lines.append(f"| seed {seed} | {pair['paired']['difference_points']:+.1f} | {pair['paired']['p_value']:.3g} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--octdl", required=True, help="the whole OCTDL (its train/val/test folders)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--work", default="runs/real-scans", help="the real-scan benchmark's work folder")
    args = parser.parse_args()
    octdl = Path(args.octdl)
    if not octdl.is_dir():
        parser.error(f"--octdl {octdl}: not a folder")
    work = Path(args.work) / "full"
    work.mkdir(parents=True, exist_ok=True)
    pairs = {str(seed): with_and_without(work, octdl, int(seed)) for seed in args.seeds.split(",")}
    first = next(iter(pairs.values()))
    results = {"model": MODEL, "test_scans": first["without"]["n"], "seeds": pairs}
    write_results("octdl_jitter", results, table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
