"""How long the real-scan benchmark's calls took in one go, as each call measured itself.

Every call of ``benchmarks/real_scans.py`` times its stages (the phantom backbones, then each
part in the order it runs them) and counts the runs each stage trained anew, and adds one line
to ``WORK/timings.jsonl`` (a call cut short, by Ctrl-C or an error, records the stages it got
through and how far the last one got). This turns those lines into
``results/plan_time.{json,md}``: for each call, its settings (``--jobs``, ``--val-every``,
seeds) and for each stage its wall time, its new runs and the minutes per new run, with the
calls' sum. A stage that only reused finished runs measures nothing and is shown as such.

``python -m benchmarks.plan_time [--work runs/real-scans]`` (the real-scan benchmark's
``--work``; its full plan's calls are read from ``WORK/full``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import write_results
from benchmarks.real_scans import TIMINGS

STAGE_NAMES = {
    "backbones": "phantom backbones",
    "a": "part a (OCT2017 folds)",
    "b": "part b (OCTDL runs)",
    "c": "part c (across data sets)",
    "d": "part d (phantom-only)",
    "e": "part e (OCTDL pretraining)",
}


def read_calls(path: Path) -> list[dict[str, Any]]:
    """The call records of a ``timings.jsonl``, oldest first.

    Raises:
        SystemExit: one line naming the file where it is missing or a line is not a record.
    """
    if not path.is_file():
        raise SystemExit(f"{path}: not found (run benchmarks/real_scans.py with this --work first)")
    calls = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
            raise SystemExit(f"{path}:{number}: a call record needs its stages")
        calls.append(record)
    return calls


def summarise(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Each call's stages with their minutes, new runs and minutes per new run, and the sums
    over the calls (of the stages that trained something: a stage that reused every run
    measures nothing)."""
    rows = []
    for call in calls:
        for stage, seconds in call["stages"].items():
            new = int(call.get("new_runs", {}).get(stage, 0))
            rows.append(
                {
                    "started": call.get("started", "?"),
                    "jobs": call.get("jobs", 1),
                    "val_every": call.get("val_every", 1),
                    "seeds": call.get("seeds", []),
                    "stage": stage,
                    "minutes": seconds / 60,
                    "new_runs": new,
                    "minutes_per_run": seconds / 60 / new if new else None,
                    "cut_short": bool(call.get("cut_short")) and stage == list(call["stages"])[-1],
                }
            )
    measured = [r for r in rows if r["new_runs"]]
    return {
        "calls": len(calls),
        "stages": rows,
        "total_minutes": sum(r["minutes"] for r in measured),
        "total_new_runs": sum(r["new_runs"] for r in measured),
    }


def table(results: dict[str, Any]) -> str:
    """The Markdown table of :func:`summarise`'s stages, with their sum."""
    lines = [
        "| call started | jobs | val_every | seeds | stage | wall time (min) | runs trained | min per run |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results["stages"]:
        per_run = f"{r['minutes_per_run']:.1f}" if r["minutes_per_run"] is not None else "-"
        stage = STAGE_NAMES.get(r["stage"], r["stage"]) + (" (cut short)" if r["cut_short"] else "")
        seeds = ",".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['started']} | {r['jobs']} | {r['val_every']} | {seeds} | {stage} | {r['minutes']:.1f} "
            f"| {r['new_runs']} | {per_run} |"
        )
    lines += [
        "",
        f"Sum of the stages that trained: {results['total_minutes']:.0f} minutes "
        f"({results['total_minutes'] / 60:.2f} hours), {results['total_new_runs']} runs, over "
        f"{results['calls']} call(s), each from the work folder the calls before it left.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/real-scans", help="the real-scan benchmark's --work")
    args = parser.parse_args()
    results = summarise(read_calls(Path(args.work) / "full" / TIMINGS))
    write_results("plan_time", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
