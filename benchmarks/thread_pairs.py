"""Does a run trained with one thread read like its two-thread twin (``real_scans.py --jobs 2``)?

``--jobs 2`` trains two of a part's runs at once, one thread each, where the committed runs
trained one at a time with both cores' two threads. Nothing in the training reads the thread
count, but one thread sums in another order, and a run from scratch on about 210 scans moves
with its rounding; ``benchmarks/parallel_runs.py``'s pairs read lower with one thread in most
pairs, too few to tell. This benchmark trains more pairs (on the AMX Xeon, 2026-12-08: alike,
docs/performance.md, "One thread or two").

``python -m benchmarks.thread_pairs [--model plain] [--pairs 16] [--first 10] [--quick]``
trains part a's fold runs ``first`` to ``first + pairs - 1`` (run ``k`` is fold ``k % 5`` with
seed ``k // 5``'s recipe, from scratch, the 307 OCT2017 scans; the default skips the runs that
parallel_runs and a probe paired) two at a time: each two once one after the other with the
machine's threads, as the committed runs trained, and once at once with one thread each, each
from an empty work folder (``parallel_runs.time_run_set``). After each two it writes
``results/thread_pairs.{json,md}``: each pair's test accuracies and their difference, and over
the pairs the mean difference with its 95% t-interval, the t-test and the sign test, beside
the same over parallel_runs' committed pairs and over both. Stopped and started again, it
trains only the twos not yet written. ``--quick`` (75 px, one epoch, 16 scans a class) checks
the code path and writes under ``runs/thread-pairs-quick``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from scipy.stats import binomtest, ttest_1samp

from benchmarks.common import REAL_DATA, RESULTS, machine, results_in, with_model, write_results
from benchmarks.parallel_runs import time_run_set
from benchmarks.real_scans import MODELS, plan

WORK = Path("runs") / "thread-pairs"
QUICK_WORK = Path("runs") / "thread-pairs-quick"
"""Where ``--quick`` trains and writes its meaningless numbers: never over the committed results."""
RUNS_AT_ONCE = 2
"""Runs trained together: two processes of one thread each on a 2-core CPU (``--jobs 2``)."""


def planned_twos(first: int, pairs: int) -> list[list[int]]:
    """The run indices of each two to train, in order."""
    return [[k, k + 1] for k in range(first, first + pairs, RUNS_AT_ONCE)]


def train_two(root: Path, model: str, runs: list[int], quick: bool) -> dict[str, Any]:
    """``runs`` trained one after the other with this machine's threads, then at once with one
    thread each, each set from an empty folder."""
    sets = {
        label: time_run_set(root / label, model, len(runs), processes, quick, first=runs[0])
        for label, processes in (("two_threads", 1), ("one_thread", RUNS_AT_ONCE))
    }
    return {"runs": runs, **sets, "machine": machine()}


def pair_differences(chunks: list[dict[str, Any]]) -> list[float]:
    """Each pair's test accuracy with one thread minus with two, in points."""
    return [
        100 * (one - two)
        for chunk in chunks
        for one, two in zip(chunk["one_thread"]["accuracy"], chunk["two_threads"]["accuracy"], strict=True)
    ]


def parallel_runs_differences(parallel: dict[str, Any] | None) -> list[float]:
    """The pairs of ``results/parallel_runs.json``: each model's two-process set against its
    one-process set, run by run, in points."""
    if parallel is None:
        return []
    differences = []
    for measured in parallel["models"].values():
        by_count = {s["processes"]: s["accuracy"] for s in measured["sets"]}
        if 1 in by_count and RUNS_AT_ONCE in by_count:
            pairs = zip(by_count[RUNS_AT_ONCE], by_count[1], strict=True)
            differences += [100 * (one - two) for one, two in pairs]
    return differences


def summary(differences: list[float]) -> dict[str, Any]:
    """The mean difference with its 95% t-interval and t-test p, and the sign test over the
    pairs that differ (ties left out)."""
    n = len(differences)
    lower = sum(d < 0 for d in differences)
    differing = sum(d != 0 for d in differences)
    result: dict[str, Any] = {"pairs": n, "lower": lower, "differing": differing}
    if n:
        result["mean"] = statistics.fmean(differences)
    if differing:
        result["sign_p"] = float(binomtest(lower, differing, 0.5).pvalue)
    if n >= 2 and statistics.stdev(differences) > 0:
        test = ttest_1samp(differences, 0.0)
        interval = test.confidence_interval(0.95)
        result.update(t_p=float(test.pvalue), interval=[float(interval.low), float(interval.high)])
    return result


def _points(value: float) -> str:
    """A signed difference in points to one decimal, never "-0.0" for a float's dust."""
    return f"{round(value, 1) + 0.0:+.1f}"


def table(results: dict[str, Any]) -> str:
    """Each model's pairs, then the summaries over this benchmark's pairs, parallel_runs' and both."""
    lines = [
        "| model | run (seed, fold) | two threads, one at a time | one thread, two at once | one minus two |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for model, measured in results["models"].items():
        for chunk in measured["chunks"]:
            accuracies = zip(chunk["two_threads"]["accuracy"], chunk["one_thread"]["accuracy"], strict=True)
            for k, (two, one) in zip(chunk["runs"], accuracies, strict=True):
                seed, fold = divmod(k, measured["folds"])
                difference = _points(100 * (one - two))
                lines.append(f"| {model} | {k} ({seed}, {fold}) | {two:.1%} | {one:.1%} | {difference} |")
    lines += [
        "",
        "| pairs | n | lower with one thread | mean difference (95% interval) | t-test p | sign test p |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for label, found in results["summaries"].items():
        interval = found.get("interval")
        mean = _points(found["mean"]) if "mean" in found else "-"
        if interval:
            mean += f" ({_points(interval[0])} to {_points(interval[1])})"
        t_p = f"{found['t_p']:.2g}" if "t_p" in found else "-"
        sign_p = f"{found['sign_p']:.2g}" if "sign_p" in found else "-"
        lines.append(
            f"| {label} | {found['pairs']} | {found['lower']} of {found['differing']} | {mean} | {t_p} | {sign_p} |"
        )
    ratios = [
        chunk["two_threads"]["wall_seconds"] / chunk["one_thread"]["wall_seconds"]
        for m in results["models"].values()
        for chunk in m["chunks"]
        if "wall_seconds" in chunk["two_threads"]
    ]
    if ratios:
        lines += [
            "",
            f"Each two's wall time, one at a time with two threads against at once with one thread each: "
            f"median {statistics.median(ratios):.2f}x as fast at once ({min(ratios):.2f}-{max(ratios):.2f}x "
            f"over {len(ratios)} twos, each pair of sets run in turn).",
        ]
    sizes = "; ".join(f"{model} {m['size']} px, {m['epochs']} epochs" for model, m in results["models"].items())
    lines += [
        "",
        f"Part a's fold runs from scratch on the 307 OCT2017 scans ({sizes}); a difference is in points of "
        "test accuracy on the fold's scans (about 61). parallel_runs' pairs are its committed sets' "
        "(part a's and part b's runs).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="plain", choices=sorted(MODELS), help="the network (default: plain)")
    parser.add_argument("--pairs", type=int, default=16, help="pairs to train, an even number (default 16)")
    parser.add_argument("--first", type=int, default=10, help="the first fold run (default 10: seed 2's fold 0)")
    parser.add_argument("--quick", action="store_true", help="75 px, one epoch, 16 scans a class (the code path only)")
    args = parser.parse_args()
    if args.pairs < RUNS_AT_ONCE or args.pairs % RUNS_AT_ONCE or args.first < 0:
        parser.error(
            f"--pairs must be an even number of at least 2 and --first at least 0, got {args.pairs} and {args.first}"
        )
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found (the OCT2017 scans this benchmark trains on)")
        return 0
    root, folder = (QUICK_WORK, QUICK_WORK) if args.quick else (WORK, RESULTS)
    p = plan(args.quick, 147)
    previous = results_in(folder, "thread_pairs")
    measured = (previous or {}).get("models", {}).get(args.model)
    if measured is None or (measured["size"], measured["epochs"]) != (p.size, p.epochs):
        measured = {"size": p.size, "epochs": p.epochs, "folds": p.folds, "chunks": []}
    done = [chunk["runs"] for chunk in measured["chunks"]]
    earlier = parallel_runs_differences(results_in(folder, "parallel_runs"))
    for runs in planned_twos(args.first, args.pairs):
        if runs in done:
            continue
        measured["chunks"].append(train_two(root, args.model, runs, args.quick))
        results = with_model(previous, args.model, measured)
        mine = [d for m in results["models"].values() for d in pair_differences(m["chunks"])]
        results["summaries"] = {
            "this benchmark": summary(mine),
            "parallel_runs": summary(earlier),
            "both": summary(mine + earlier),
        }
        write_results("thread_pairs", results, table, folder)
        previous = results
    return 0


if __name__ == "__main__":
    sys.exit(main())
