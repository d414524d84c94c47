"""``benchmarks/plan_time.py``: the real-scan benchmark's own timings, read back."""

from __future__ import annotations

import json

import pytest
from benchmarks import plan_time


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


CALL_1 = {
    "started": "2026-12-08 03:40 UTC",
    "jobs": 2,
    "val_every": 3,
    "seeds": [0, 1],
    "stages": {"backbones": 600.0, "b": 3000.0, "d": 120.0},
    "new_runs": {"backbones": 3, "b": 6, "d": 0},
    "cut_short": False,
}
CALL_2 = {
    "started": "2026-12-08 05:00 UTC",
    "jobs": 2,
    "val_every": 3,
    "seeds": [0, 1],
    "stages": {"backbones": 1.0, "a": 1800.0},
    "new_runs": {"backbones": 0, "a": 12},
    "cut_short": True,
}


def test_each_stage_gets_its_minutes_per_run_and_the_sum_leaves_out_what_only_reused(tmp_path):
    calls = plan_time.read_calls(_write(tmp_path / "t.jsonl", [CALL_1, CALL_2]))
    out = plan_time.summarise(calls)
    by_stage = {(r["started"], r["stage"]): r for r in out["stages"]}
    assert by_stage["2026-12-08 03:40 UTC", "b"]["minutes_per_run"] == pytest.approx(50 / 6)
    assert by_stage["2026-12-08 03:40 UTC", "d"]["minutes_per_run"] is None
    assert [r["cut_short"] for r in out["stages"]] == [False, False, False, False, True], "only the last stage"
    # backbones 10 + b 50 + a 30 minutes; part d (2 min) and the reused backbones trained nothing
    assert out["total_minutes"] == pytest.approx(90.0) and out["total_new_runs"] == 21
    text = plan_time.table(out)
    assert "| part a (OCT2017 folds) (cut short) | 30.0 | 12 | 2.5 |" in text
    assert "90 minutes (1.50 hours), 21 runs, over 2 call(s)" in text


def test_a_missing_or_broken_timings_file_stops_in_one_line_naming_it(tmp_path):
    with pytest.raises(SystemExit, match=r"t\.jsonl: not found"):
        plan_time.read_calls(tmp_path / "t.jsonl")
    broken = tmp_path / "b.jsonl"
    broken.write_text(json.dumps(CALL_1) + "\n{oops\n")
    with pytest.raises(SystemExit, match=r"b\.jsonl:2: not a JSON record"):
        plan_time.read_calls(broken)
    _write(broken, [{"started": "x"}])
    with pytest.raises(SystemExit, match=r"b\.jsonl:1: a call record needs its stages"):
        plan_time.read_calls(broken)
