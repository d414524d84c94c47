"""What sharing a part's runs among processes (``real_scans.py --jobs``) saves on a 2-core CPU.

One training process with all the cores' threads leaves part of them idle: the data loading
(``num_workers: 0`` in the demo config the real-scan runs inherit), the optimizer's update and
the Python between kernels run on one thread, and a batch of 16 at 147 px does not split its
convolutions evenly. ``benchmarks/run_pool.py`` shares a part's independent runs among
processes of one thread each instead.

``python -m benchmarks.parallel_runs [--model plain] [--runs 4] [--processes 1,2] [--octdl PATH]
[--quick]`` trains the same ``--runs`` fold runs of the real-scan benchmark's part a (its folds,
recipe and code; seed 0, from scratch, the 307 OCT2017 scans), or with ``--octdl`` the same runs
of its part b (seeds 0, 1, ... on the whole OCTDL's audited split), once for each process count,
each set from an empty work folder (a set is timed whole: nothing is reused), and writes
``results/parallel_runs.{json,md}``: each set's wall time, each run's own time and test
accuracy, and the wall-time ratio to the first count's. The accuracies are there to show the
runs are the same runs (a run with one thread differs from one with two only as a run on
another CPU does). ``--quick`` (75 px, one epoch, 16 scans a class) checks the code path and
writes under ``runs/parallel-runs-quick``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import run_pool
from benchmarks.common import REAL_DATA, RESULTS, machine, results_in, whole_numbers, with_model, write_results
from benchmarks.real_scans import (
    MODELS,
    fold_overrides,
    oct2017_fold_manifests,
    octdl_clean_manifest,
    octdl_overrides,
    plan,
    submit_run,
)

WORK = Path("runs") / "parallel-runs"
QUICK_WORK = Path("runs") / "parallel-runs-quick"
"""Where ``--quick`` trains and writes its meaningless numbers: never over the committed results."""


def time_run_set(
    work: Path, model: str, runs: int, processes: int, quick: bool, octdl: Path | None = None, first: int = 0
) -> dict[str, Any]:
    """Train ``runs`` runs of ``model`` from the ``first``-th in an empty ``work``, shared among
    ``processes``: part a's fold runs (run ``k`` is fold ``k % folds`` with seed ``k // folds``'s
    recipe: seed 0's folds, then seed 1's...), or with ``octdl`` part b's runs on its audited
    split (run ``k`` is seed ``k``)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    p = plan(quick, 147)
    if octdl is None:
        manifests = oct2017_fold_manifests(work, p)
        planned = [
            (f"oct2017-{model}-scratch-run{k}", manifests[k % p.folds], fold_overrides(p, model, k // p.folds, []))
            for k in range(first, first + runs)
        ]
    else:
        manifest = work / "octdl-clean.csv"
        octdl_clean_manifest(octdl, manifest, p.octdl_cap)
        planned = [(f"octdl-{model}-s{k}", manifest, octdl_overrides(p, model, k)) for k in range(first, first + runs)]
    start = time.perf_counter()
    with run_pool.sharing(work / "pool", processes):
        results = run_pool.settle([submit_run(name, work, data, overrides) for name, data, overrides in planned])
    wall = time.perf_counter() - start
    return {
        "processes": processes,
        "threads_per_process": run_pool.threads_per_process(processes),
        "wall_seconds": wall,
        "run_seconds": [r["seconds"] for r in results],
        "accuracy": [r["accuracy"] for r in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="plain", choices=sorted(MODELS), help="the network (default: plain)")
    parser.add_argument("--runs", type=int, default=4, help="runs in each set (default 4)")
    parser.add_argument("--octdl", help="the whole OCTDL: time part b's runs on it instead of part a's fold runs")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts; the first is the baseline")
    parser.add_argument("--quick", action="store_true", help="75 px, one epoch, 16 scans a class (the code path only)")
    args = parser.parse_args()
    counts = whole_numbers(parser, "--processes", args.processes)
    if min(counts) < 1 or args.runs < 1:
        parser.error(f"--processes and --runs must be at least 1, got {args.processes!r} and {args.runs}")
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found (the OCT2017 scans this benchmark trains on)")
        return 0
    root = QUICK_WORK if args.quick else WORK
    octdl = Path(args.octdl) if args.octdl else None
    if octdl is not None and not octdl.is_dir():
        parser.error(f"--octdl {octdl}: no such folder")
    sets = []
    for count in counts:
        sets.append(time_run_set(root / f"processes-{count}", args.model, args.runs, count, args.quick, octdl))
        print(f"{count} process(es): {sets[-1]['wall_seconds'] / 60:.1f} min", flush=True)
    p = plan(args.quick, 147)
    part, size, epochs = ("a", p.size, p.epochs) if octdl is None else ("b", p.octdl_size, p.octdl_epochs)
    measured = {"part": part, "size": size, "epochs": epochs, "runs": args.runs, "sets": sets, "machine": machine()}
    folder = root if args.quick else RESULTS
    key = args.model if part == "a" else f"octdl:{args.model}"  # part a's models keep their first keys
    write_results("parallel_runs", with_model(results_in(folder, "parallel_runs"), key, measured), table, folder)
    return 0


PART_RUNS = {"a": "part a's fold runs (OCT2017)", "b": "part b's runs (OCTDL)"}


def table(results: dict[str, Any]) -> str:
    """Each measured model's sets as a Markdown table, each set against its first."""
    lines = [
        "| runs, from scratch | model | processes x threads | wall time | as fast as the first | each run (min) | "
        "test accuracy of each run |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    dates = []
    for key, m in results["models"].items():
        model = key.partition(":")[2] or key
        runs = f"{m['runs']} of {PART_RUNS[m.get('part', 'a')]}, {m['size']} px, {m['epochs']} epochs"
        first = m["sets"][0]["wall_seconds"]
        dates.append(f"{key} {m['machine']['date'][:16].replace('T', ' ')} UTC")
        for s in m["sets"]:
            each_time = ", ".join(f"{t / 60:.1f}" for t in s["run_seconds"])
            each_accuracy = ", ".join(f"{a:.1%}" for a in s["accuracy"])
            lines.append(
                f"| {runs} | {model} | {s['processes']} x {s['threads_per_process']} | "
                f"{s['wall_seconds'] / 60:.1f} min | {first / s['wall_seconds']:.2f}x | {each_time} | {each_accuracy} |"
            )
    lines += [
        "",
        "Each set trained the same runs (part a's folds in order with seed 0's recipe, or part b's seeds 0, 1, ...) "
        "from an empty work folder, one set after the other; a run's time is its training and scoring (part b's: "
        f"accuracy as trained, before the class-prior correction). Measured: {'; '.join(dates)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
