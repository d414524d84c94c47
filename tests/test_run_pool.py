"""benchmarks/run_pool.py: a benchmark's independent runs shared among processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import run_pool
from benchmarks.run_pool import Job, JobFolder, RunPool

RUNNER = "tests.pool_runner:run"


def _jobs(work: Path, names: list[str]) -> list[Job]:
    return [
        Job(RUNNER, name, str(work), str(work / "data.csv"), ("epochs=1", f"seed={k}")) for k, name in enumerate(names)
    ]


def test_without_a_pool_runs_come_back_in_order_from_this_process(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.pool_runner.SECONDS", 0.0)
    jobs = [run_pool.submit(job) for job in _jobs(tmp_path, ["a", "b", "c"])]
    results = run_pool.settle(jobs)
    assert [r["name"] for r in results] == ["a", "b", "c"]
    assert [r["overrides"] for r in results] == [["epochs=1", "seed=0"], ["epochs=1", "seed=1"], ["epochs=1", "seed=2"]]
    assert {r["pid"] for r in results} == {os.getpid()}
    assert not (tmp_path / "pool").exists()  # no files without a pool


def test_the_runner_is_looked_up_when_called_so_a_test_can_replace_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("tests.pool_runner.run", lambda name, *rest: calls.append(name) or {"name": name})
    assert run_pool.settle(_jobs(tmp_path, ["x"])) == [{"name": "x"}]
    assert calls == ["x"]


def test_two_processes_share_the_runs_and_the_results_keep_the_order(tmp_path):
    names = [f"run{k}" for k in range(8)]
    with run_pool.sharing(tmp_path / "pool", processes=2):
        jobs = [run_pool.submit(job) for job in _jobs(tmp_path, names)]
        results = run_pool.settle(jobs)
    assert [r["name"] for r in results] == names
    makers = {r["pid"] for r in results}
    assert os.getpid() in makers and len(makers) == 2, "each process should have trained some of the runs"
    # a worker's run is read back here through the runner, which reuses it
    assert all(r["reused_by"] == os.getpid() for r in results if r["pid"] != os.getpid())
    assert not list((tmp_path / "pool").glob("*.job")) and not list((tmp_path / "pool").glob("*.claim"))


def test_a_failing_run_stops_the_pool_with_its_message(tmp_path):
    failing = pytest.raises(SystemExit, match="fail-me: finished with other settings")
    with failing, run_pool.sharing(tmp_path / "pool", 2):
        run_pool.settle([run_pool.submit(job) for job in _jobs(tmp_path, ["fail-me", "fine"])])
    assert run_pool._active is None


def test_a_worker_whose_run_fails_releases_it_for_the_leader_to_run_again(tmp_path):
    folder = JobFolder(tmp_path / "pool")
    (job,) = _jobs(tmp_path, ["fail-me"])
    folder.post(job)
    with pytest.raises(SystemExit, match="fail-me"):
        run_pool.work_loop(folder, tmp_path / "pool" / "stop", leader=os.getpid())
    assert folder.holder(job) is None and not folder.is_done(job)
    assert folder.claim(job), "the leader can take it"


def test_a_claim_of_a_process_that_died_is_taken_over(tmp_path):
    folder = JobFolder(tmp_path / "pool")
    (job,) = _jobs(tmp_path, ["a"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "pool" / "a.claim").write_text(dead.stdout.strip())
    assert folder.claim(job)
    assert folder.holder(job) == os.getpid()
    assert not folder.claim(job), "a live holder's claim is not taken"


def test_what_an_earlier_call_left_is_cleared_when_a_pool_starts(tmp_path):
    folder = JobFolder(tmp_path / "pool")
    (job,) = _jobs(tmp_path, ["a"])
    folder.post(job)
    folder.claim(job)
    folder.finish(job, done=True)  # a run that was deleted since: its mark would say "done"
    pool = RunPool(tmp_path / "pool", processes=2)
    pool.start()
    try:
        assert not folder.is_done(job)
    finally:
        pool.stop(wait=False)


@pytest.mark.parametrize("processes", [0, -1])
def test_a_pool_needs_a_process(tmp_path, processes):
    with pytest.raises(ValueError, match="at least 1"):
        RunPool(tmp_path, processes)


def test_threads_are_the_cores_shared_out_and_never_none(monkeypatch):
    monkeypatch.setattr(run_pool, "machine_cores", lambda: 2)
    assert [run_pool.threads_per_process(n) for n in (1, 2, 3)] == [2, 1, 1]
