"""benchmarks/thread_pairs.py: each two of runs is trained with two threads and with one, the
pairs' statistics are right, a stopped run trains only what is missing, and bad counts stop in
one line before anything trains."""

import json
import sys

import pytest
from benchmarks import thread_pairs
from benchmarks.common import REAL_DATA
from benchmarks.thread_pairs import main, parallel_runs_differences, planned_twos, summary, train_two


def test_the_twos_follow_on_from_the_first_run():
    assert planned_twos(10, 6) == [[10, 11], [12, 13], [14, 15]]


def test_a_two_is_trained_one_at_a_time_with_two_threads_then_at_once_with_one(tmp_path, monkeypatch):
    calls = []

    def fake_set(work, model, runs, processes, quick, octdl=None, first=0):
        calls.append((work.name, model, runs, processes, first))
        return {"processes": processes, "accuracy": [0.5] * runs}

    monkeypatch.setattr(thread_pairs, "time_run_set", fake_set)
    two = train_two(tmp_path, "attention", [12, 13], quick=True)
    assert calls == [("two_threads", "attention", 2, 1, 12), ("one_thread", "attention", 2, 2, 12)]
    assert two["runs"] == [12, 13] and two["one_thread"]["processes"] == 2 and "cpu" in two["machine"]


def test_the_summary_reads_the_pairs_and_leaves_ties_out_of_the_sign_test():
    found = summary([-4.0, -2.0, 0.0, -6.0, 2.0])
    assert found["pairs"] == 5 and found["lower"] == 3 and found["differing"] == 4
    assert found["mean"] == pytest.approx(-2.0)
    # t-interval: mean -2, standard deviation sqrt(10), n 5, t(0.975, 4) = 2.776
    half_width = 2.776 * 10**0.5 / 5**0.5
    assert found["interval"] == pytest.approx([-2.0 - half_width, -2.0 + half_width], abs=1e-3)
    assert found["sign_p"] == pytest.approx(0.625)  # 3 of 4 lower: P(3 or more, either way) = 10/16
    assert summary([]) == {"pairs": 0, "lower": 0, "differing": 0}
    assert "interval" not in summary([1.0, 1.0])  # no spread, no interval


def test_parallel_runs_pairs_are_each_models_two_process_set_against_its_one_process_set():
    def sets(one_process, two_processes):
        return {"sets": [{"processes": 1, "accuracy": one_process}, {"processes": 2, "accuracy": two_processes}]}

    parallel = {"models": {"plain": sets([0.5, 0.6], [0.45, 0.6]), "octdl:plain": sets([0.7], [0.75])}}
    assert parallel_runs_differences(parallel) == pytest.approx([-5.0, 0.0, 5.0])
    assert parallel_runs_differences(None) == []


@pytest.mark.parametrize(
    "argv", [["--pairs", "3"], ["--pairs", "0"], ["--first", "-1"]], ids=["odd", "none", "negative first"]
)
def test_bad_counts_stop_in_one_line_before_anything_trains(monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "argv", ["thread_pairs", *argv])
    monkeypatch.setattr(thread_pairs, "train_two", lambda *a: pytest.fail("trained before the check"))
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert "--pairs must be an even number of at least 2 and --first at least 0" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} not found: the benchmark skips without it")
def test_started_again_it_trains_only_the_twos_not_yet_written(tmp_path, monkeypatch):
    trained = []
    accuracies = {10: (0.50, 0.45), 11: (0.60, 0.60), 12: (0.55, 0.50), 13: (0.40, 0.50)}

    def fake_two(root, model, runs, quick):
        trained.append(runs)
        two, one = zip(*(accuracies[k] for k in runs), strict=True)
        return {"runs": runs, "two_threads": {"accuracy": list(two)}, "one_thread": {"accuracy": list(one)}}

    monkeypatch.setattr(thread_pairs, "QUICK_WORK", tmp_path)
    monkeypatch.setattr(thread_pairs, "train_two", fake_two)
    sets = [{"processes": 1, "accuracy": [0.7]}, {"processes": 2, "accuracy": [0.6]}]
    parallel = {"models": {"plain": {"sets": sets}}}
    (tmp_path / "parallel_runs.json").write_text(json.dumps(parallel))
    monkeypatch.setattr(sys, "argv", ["thread_pairs", "--quick", "--pairs", "2"])
    assert main() == 0
    monkeypatch.setattr(sys, "argv", ["thread_pairs", "--quick", "--pairs", "4"])
    assert main() == 0
    assert trained == [[10, 11], [12, 13]]
    written = json.loads((tmp_path / "thread_pairs.json").read_text())
    assert [c["runs"] for c in written["models"]["plain"]["chunks"]] == [[10, 11], [12, 13]]
    mine = written["summaries"]["this benchmark"]
    assert (mine["pairs"], mine["lower"], mine["differing"]) == (4, 2, 3)
    assert mine["mean"] == pytest.approx((-5 + 0 - 5 + 10) / 4)
    assert written["summaries"]["both"]["pairs"] == 5 and written["summaries"]["parallel_runs"]["lower"] == 1
    text = (tmp_path / "thread_pairs.md").read_text()
    assert "| plain | 13 (6, 1) | 40.0% | 50.0% | +10.0 |" in text  # run 13: seed 6's fold 1 of --quick's 2
    assert "| this benchmark | 4 | 2 of 3 | +0.0 (" in text
    assert "wall time" not in text  # these twos were not timed


def test_the_table_gives_the_median_ratio_of_the_twos_wall_times():
    def two(two_wall, one_wall):
        return {
            "runs": [0, 1],
            "two_threads": {"accuracy": [0.5, 0.5], "wall_seconds": two_wall},
            "one_thread": {"accuracy": [0.5, 0.5], "wall_seconds": one_wall},
        }

    chunks = [two(120, 100), two(150, 100), two(90, 100)]
    results = {"models": {"plain": {"size": 147, "epochs": 12, "folds": 5, "chunks": chunks}}, "summaries": {}}
    assert "median 1.20x as fast at once (0.90-1.50x over 3 twos" in thread_pairs.table(results)
