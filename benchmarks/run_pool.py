"""Independent training runs of a benchmark shared among processes on one machine.

On a 2-core CPU one training process with two threads leaves part of both cores idle: the
data loading, the optimizer's update and the Python between the kernels run on one thread,
and a small batch's convolutions do not split evenly in two. Two processes of one thread
each, each training its own run, keep both cores busy (``benchmarks/parallel_runs.py``
measures by how much). A benchmark's runs of one part are independent of each other (folds,
seeds, models), so they can be shared out without changing what any run is.

The benchmark's process leads: it *submits* each run (:func:`submit`) as it walks its plan,
then *settles* them (:func:`settle`) where it needs their results, in its own order. With
``processes`` above one (:class:`RunPool`), the submitted runs are posted as job files in a
folder that the other processes (workers, started by the pool) read oldest first; whoever
claims a job (a claim file created exclusively) trains it, and the leader, when it settles,
trains the unclaimed ones itself, helps with other posted jobs while a worker finishes its
own, and reads a worker's finished run back through the same runner (which reuses a finished
run after checking its settings). A claim of a process that died is taken over. Without an
active pool (the default) :func:`settle` runs each submitted run in turn, as a plain loop.

A runner is named as ``module:function`` (resolved each time it is called, so that a test
can replace the function) and called as ``runner(name, work, data, overrides, split)``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from octattn.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
POLL_SECONDS = 1.0
"""How often a waiting process looks for a job or a finished run."""


@dataclass(frozen=True)
class Job:
    """One run to train and evaluate: what the runner is called with."""

    runner: str
    name: str
    work: str
    data: str
    overrides: tuple[str, ...]
    split: str = "test"

    def run(self) -> dict[str, Any]:
        """Call the runner (train or reuse, then evaluate) and return its result."""
        module, function = self.runner.split(":")
        runner: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), function)
        return runner(self.name, Path(self.work), Path(self.data), list(self.overrides), self.split)


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` sharing this machine's cores (at least one)."""
    return max(1, machine_cores() // processes)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class JobFolder:
    """The files through which the processes share jobs: ``NAME.job`` (posted), ``NAME.claim``
    (the pid of whoever trains it), ``NAME.done`` (trained by a worker)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Forget what an earlier call left: a killed call's jobs and claims, finished marks of
        runs deleted since (one benchmark a work folder at a time)."""
        for kind in ("job", "claim", "done"):
            for leftover in self.folder.glob(f"*.{kind}"):
                leftover.unlink()

    def _file(self, job: Job, kind: str) -> Path:
        return self.folder / f"{job.name}.{kind}"

    def post(self, job: Job) -> None:
        """Offer ``job`` to the workers (nothing if it is already posted or finished)."""
        if not self._file(job, "done").exists():
            record = {"posted": time.time_ns(), **asdict(job)}
            atomic_write_text(self._file(job, "job"), json.dumps(record))

    def posted(self) -> list[Job]:
        """The jobs offered and not yet finished, oldest first."""
        records = []
        for path in self.folder.glob("*.job"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):  # taken away meanwhile
                continue
        records.sort(key=lambda r: r.pop("posted"))
        return [Job(**{**r, "overrides": tuple(r["overrides"])}) for r in records]

    def claim(self, job: Job) -> bool:
        """True if this process now holds ``job`` (nobody alive held it)."""
        claim = self._file(job, "claim")
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = self.holder(job)
            if holder is None or _alive(holder):
                return False
            try:  # a dead process's claim: only the process that moves it aside takes over
                os.rename(claim, claim.with_name(f"{claim.name}.stale-{os.getpid()}"))
            except FileNotFoundError:
                return False
            claim.with_name(f"{claim.name}.stale-{os.getpid()}").unlink()
            return self.claim(job)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True

    def holder(self, job: Job) -> int | None:
        """The pid holding ``job``'s claim (None: no claim, or one still being written)."""
        try:
            return int(self._file(job, "claim").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def is_done(self, job: Job) -> bool:
        return self._file(job, "done").exists()

    def finish(self, job: Job, done: bool) -> None:
        """Release ``job``; ``done``: a worker trained it (the leader reads it back)."""
        if done:
            atomic_write_text(self._file(job, "done"), "")
        self._file(job, "job").unlink(missing_ok=True)
        self._file(job, "claim").unlink(missing_ok=True)


class RunPool:
    """``processes`` processes sharing the runs submitted while it is active (this one and
    ``processes - 1`` workers, each with its share of the cores' threads)."""

    def __init__(self, folder: Path, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.jobs = JobFolder(folder)
        self.processes = processes
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stop_file = folder / "stop"

    def start(self) -> None:
        """Set this process's threads and start the workers (their output in the folder)."""
        import torch

        threads = threads_per_process(self.processes)
        torch.set_num_threads(threads)
        self.jobs.clear()
        self.stop_file.unlink(missing_ok=True)
        for k in range(self.processes - 1):
            command = [sys.executable, "-m", "benchmarks.run_pool", str(self.jobs.folder), "--threads", str(threads)]
            command += ["--leader", str(os.getpid())]
            # the benchmarks package from this clone, whatever the folder the worker starts in
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            with (self.jobs.folder / f"worker-{k}.log").open("ab") as log:  # the worker keeps its own copy
                self.workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))

    def stop(self, wait: bool) -> None:
        """Ask the workers to stop after their job (``wait``) or at once (an error here)."""
        self.stop_file.write_text("")
        for worker in self.workers:
            if not wait:
                worker.terminate()
            worker.wait()
        self.workers = []

    def reap(self) -> None:
        """Collect workers that ended (so that a dead worker's claim reads as dead)."""
        for worker in self.workers:
            worker.poll()

    def submit(self, job: Job) -> Job:
        self.jobs.post(job)
        return job

    def settle(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """Each job's result, in order: trained here, or by a worker and read back."""
        results: dict[int, dict[str, Any]] = {}
        while len(results) < len(jobs):
            progressed = False
            for i, job in enumerate(jobs):
                if i in results:
                    continue
                if self.jobs.is_done(job):
                    results[i] = job.run()  # a worker's finished run, reused
                    progressed = True
                elif self.jobs.claim(job):
                    try:
                        results[i] = job.run()
                    finally:
                        self.jobs.finish(job, done=False)
                    progressed = True
            if not progressed and not self._help_with_another(set(jobs)):
                self.reap()
                time.sleep(POLL_SECONDS)
        return [results[i] for i in range(len(jobs))]

    def _help_with_another(self, mine: set[Job]) -> bool:
        """Train the oldest posted job that is not among ``mine`` and nobody holds."""
        for job in self.jobs.posted():
            if job not in mine and self.jobs.claim(job):
                try:
                    job.run()
                finally:
                    self.jobs.finish(job, done=True)
                return True
        return False


_active: RunPool | None = None


@contextlib.contextmanager
def sharing(folder: Path, processes: int) -> Iterator[None]:
    """Share the runs submitted inside the block among ``processes`` processes (one: a plain
    loop, no files, no workers)."""
    global _active
    if processes == 1:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    pool = RunPool(folder, processes)
    pool.start()
    _active = pool
    try:
        yield
    except BaseException:
        pool.stop(wait=False)
        raise
    else:
        pool.stop(wait=True)
    finally:
        _active = None
        torch.set_num_threads(threads)


def submit(job: Job) -> Job:
    """Offer ``job`` to the active pool's workers (no pool: nothing yet)."""
    return _active.submit(job) if _active is not None else job


def settle(jobs: list[Job]) -> list[dict[str, Any]]:
    """The results of submitted ``jobs``, in order (no pool: each run in turn)."""
    return _active.settle(jobs) if _active is not None else [job.run() for job in jobs]


def work_loop(jobs: JobFolder, stop: Path, leader: int) -> None:
    """A worker: train the oldest posted job nobody holds, until the leader asks to stop or
    is gone."""
    while not stop.exists() and _alive(leader):
        for job in jobs.posted():
            if jobs.claim(job):
                print(f"{time.strftime('%H:%M:%S')} {job.name}", flush=True)
                try:
                    job.run()
                except BaseException:
                    jobs.finish(job, done=False)  # the leader runs it again and reports the error
                    raise
                jobs.finish(job, done=True)
                break
        else:
            time.sleep(POLL_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description="a worker of a run pool (started by the pool)")
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--leader", type=int, required=True)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    work_loop(JobFolder(folder), folder / "stop", args.leader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
