"""benchmarks/parallel_runs.py: each set trains the same part-a runs from an empty folder, the
table reads its numbers, and bad counts stop in one line before anything trains."""

import json
import sys

import pytest
from benchmarks import parallel_runs
from benchmarks.common import REAL_DATA
from benchmarks.parallel_runs import main, table, time_run_set


def _set(processes, wall, accuracy):
    return {
        "processes": processes,
        "threads_per_process": 2 // processes,
        "wall_seconds": wall,
        "run_seconds": [wall / 2, wall / 2],
        "accuracy": accuracy,
    }


def test_the_table_gives_each_set_its_ratio_to_its_models_first():
    machine = {"date": "2026-12-07T21:19:03+00:00"}
    part_a = {"size": 147, "epochs": 12, "runs": 2, "machine": machine}
    plain = {**part_a, "sets": [_set(1, 744.0, [0.5, 0.6]), _set(2, 620.0, [0.55, 0.61])]}
    attention = {**part_a, "sets": [_set(1, 900.0, [0.4, 0.5]), _set(2, 1000.0, [0.4, 0.5])]}
    octdl = {**plain, "part": "b", "size": 128}
    text = table({"models": {"plain": plain, "attention": attention, "octdl:plain": octdl}})
    part_a_runs = "2 of part a's fold runs (OCT2017), 147 px, 12 epochs"
    assert f"| {part_a_runs} | plain | 2 x 1 | 10.3 min | 1.20x | 5.2, 5.2 | 55.0%, 61.0% |" in text
    assert f"| {part_a_runs} | attention | 2 x 1 | 16.7 min | 0.90x |" in text  # a loss reads as one
    assert "| 2 of part b's runs (OCTDL), 128 px, 12 epochs | plain | 1 x 2 | 12.4 min | 1.00x |" in text
    assert "plain 2026-12-07 21:19 UTC; attention 2026-12-07 21:19 UTC; octdl:plain 2026-12-07 21:19 UTC" in text


def test_a_set_trains_part_as_folds_in_order_from_an_empty_work_folder(tmp_path, monkeypatch):
    calls = []

    def fake_run_once(name, work, data, overrides, split="test"):
        calls.append((name, data.name, overrides))
        return {"seconds": 1.0, "accuracy": 0.5}

    monkeypatch.setattr("benchmarks.real_scans.run_once", fake_run_once)
    work = tmp_path / "processes-1"
    (work / "runs" / "old").mkdir(parents=True)  # a set is timed whole: nothing of before is reused
    measured = time_run_set(work, "plain", runs=3, processes=1, quick=True)
    assert not (work / "runs" / "old").exists()
    assert [(name, data) for name, data, _ in calls] == [
        ("oct2017-plain-scratch-run0", "oct2017-fold0.csv"),
        ("oct2017-plain-scratch-run1", "oct2017-fold1.csv"),
        ("oct2017-plain-scratch-run2", "oct2017-fold0.csv"),  # two folds in --quick: seed 1's next
    ]
    assert "seed=0" in calls[0][2] and "seed=1" in calls[2][2]
    assert measured["run_seconds"] == [1.0] * 3 and measured["processes"] == 1


def test_with_octdl_a_set_trains_part_bs_runs_on_its_audited_split(tmp_path, monkeypatch):
    calls = []
    audited = []

    def fake_run_once(name, work, data, overrides, split="test"):
        calls.append((name, data.name, overrides))
        return {"seconds": 2.0, "accuracy": 0.6}

    monkeypatch.setattr("benchmarks.real_scans.run_once", fake_run_once)
    monkeypatch.setattr(parallel_runs, "octdl_clean_manifest", lambda octdl, out, cap: audited.append((octdl, cap)))
    time_run_set(tmp_path / "processes-1", "attention", runs=2, processes=1, quick=False, octdl=tmp_path / "OCTDL")
    assert audited == [(tmp_path / "OCTDL", None)]
    assert [(name, data) for name, data, _ in calls] == [
        ("octdl-attention-s0", "octdl-clean.csv"),
        ("octdl-attention-s1", "octdl-clean.csv"),
    ]
    assert "balance=sampler" in calls[0][2] and "image_size=128" in calls[0][2] and "seed=1" in calls[1][2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--processes", "1,two"], "--processes: whole numbers separated by commas, got '1,two'"),
        (["--processes", "0,2"], "--processes and --runs must be at least 1"),
        (["--runs", "0"], "--processes and --runs must be at least 1"),
        (["--octdl", "/nowhere/octdl"], "--octdl /nowhere/octdl: no such folder"),
    ],
)
def test_bad_counts_stop_in_one_line_before_anything_trains(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["parallel_runs", *argv])
    monkeypatch.setattr(parallel_runs, "time_run_set", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} not found: the benchmark skips without it")
def test_a_second_model_keeps_the_firsts_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel_runs, "QUICK_WORK", tmp_path)
    monkeypatch.setattr(parallel_runs, "time_run_set", lambda work, model, runs, count, *rest: _set(count, 60, [0]))
    for model in ("plain", "attention"):
        monkeypatch.setattr(sys, "argv", ["parallel_runs", "--quick", "--model", model])
        assert main() == 0
    octdl = tmp_path / "OCTDL"
    octdl.mkdir()
    monkeypatch.setattr(sys, "argv", ["parallel_runs", "--quick", "--octdl", str(octdl)])
    assert main() == 0
    written = json.loads((tmp_path / "parallel_runs.json").read_text())
    assert list(written["models"]) == ["plain", "attention", "octdl:plain"]
    assert [written["models"][k].get("part") for k in written["models"]] == ["a", "a", "b"]
