"""Archive-scale prediction on Ray Data: ``octattn predict ... --engine ray``.

The inputs (files, folders, globs, volumes, and CSV or Parquet manifests with a ``path``
column; every worker must be able to read the paths) become a Ray dataset of paths. Each
batch of paths is read and classified by an actor pool: each actor loads the bundle once
(PyTorch at a precision, or an ONNX file in onnxruntime; CPU or GPU) and runs the very code of
local ``predict`` (:func:`octattn.inference.batch.predict_paths`) on its batch, so rows, volume
calls, per-file errors and the out-of-distribution flag are the same. The driver writes each
finished batch as a Parquet shard under OUT, atomically (temporary name, then rename).

Resumable: a rerun with the same OUT reads the shards already there and skips their inputs,
so a killed job loses at most the batches in flight and nothing is predicted twice. A worker
that dies is replaced by Ray and its batch retried (Ray Data's defaults for actor pools).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octattn.errors import OctattnError
from octattn.inference.batch import PredictionRun, predict_paths, rows_to_csv
from octattn.inference.bundle import read_bundle_config

SHARD_PREFIX = "part-"
INSTALL_HINT = "--engine ray needs Ray: pip install 'octattn[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to get it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise OctattnError(INSTALL_HINT) from None
    return ray


def manifest_paths(manifest: Path) -> list[str]:
    """The ``path`` column of a CSV or Parquet manifest (relative paths: relative to it)."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(manifest) if manifest.suffix.lower() == ".parquet" else pa_csv.read_csv(manifest)
    except (OSError, ValueError) as exc:
        raise OctattnError(f"{manifest}: cannot read the manifest ({exc})") from None
    if "path" not in table.column_names:
        raise OctattnError(f"{manifest}: a manifest needs a 'path' column (has {', '.join(table.column_names)})")
    paths = [str(p) for p in table.column("path").to_pylist() if p]
    return [p if Path(p).is_absolute() or "://" in p else str(manifest.parent / p) for p in paths]


def archive_inputs(inputs: Sequence[str]) -> list[str]:
    """Every input path: manifests read, the rest expanded as local ``predict`` does."""
    from octattn.inference.inputs import expand_inputs

    paths: list[str] = []
    plain: list[str] = []
    for item in inputs:
        if Path(item).suffix.lower() in (".parquet", ".csv") and Path(item).is_file():
            paths += manifest_paths(Path(item))
        else:
            plain.append(item)
    found = paths + ([str(p) for p in expand_inputs(plain)] if plain else [])
    # every worker must find the same file: local paths travel absolute (URIs as given)
    return [p if "://" in p else str(Path(p).resolve()) for p in found]


def done_inputs(out: Path) -> set[str]:
    """Inputs already written under ``out``: the input of every row of every shard."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for shard in sorted(out.glob(f"{SHARD_PREFIX}*.parquet")):
        done.update(pq.read_table(shard, columns=["input"]).column("input").to_pylist())
    return done


class BatchPredictor:
    """A Ray actor: the bundle loaded once; each batch of paths is predicted by local
    ``predict``'s code and returned as its rows (with the input each row came from)."""

    def __init__(
        self, model: str, backend: str, onnx: str | None, precision: str, allow_ood: bool, batch_size: int, threads: int
    ) -> None:
        import torch

        from octattn.inference.onnx_export import make_predictor

        if threads > 0:
            torch.set_num_threads(threads)
        self.predictor = make_predictor(model, backend, onnx, precision, allow_ood=allow_ood, threads=threads)
        self.batch_size = batch_size
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        paths = [Path(str(p)) for p in batch["path"]]
        run = predict_paths(self.predictor, paths, self.batch_size)
        rows = run.rows()
        columns = run.columns()
        out: dict[str, list[Any]] = {key: [r[key] for r in rows] for key in columns}
        out["input"] = [_input_of(str(r["source"]), paths) for r in rows]
        out["worker"] = [self.worker] * len(rows)
        return out


def _input_of(source: str, paths: Sequence[Path]) -> str:
    """The input file a row came from (a B-scan ``FILE#k`` came from ``FILE``)."""
    names = {str(p) for p in paths}
    if source in names:
        return source
    head, _, _ = source.rpartition("#")
    return head if head in names else source


@dataclass
class ArchiveSummary:
    """What one ``--engine ray`` run did."""

    inputs: int
    skipped_done: int
    scans: int = 0
    volumes: int = 0
    bscans: int = 0
    failures: int = 0
    flagged: int = 0
    shards: int = 0
    seconds: float = 0.0
    workers: set[str] = field(default_factory=set)

    def line(self, planned_workers: int) -> str:
        """The final summary line."""
        rate = (self.scans + self.bscans) / self.seconds if self.seconds else 0.0
        replaced = max(0, len(self.workers) - planned_workers)
        text = (
            f"{self.scans} scan(s) and {self.volumes} volume(s) ({self.bscans} B-scans) predicted, "
            f"{self.failures} file(s) not predicted, "
            f"{self.flagged} flagged as unlike the training data; {self.shards} shard(s) written in "
            f"{self.seconds:.1f} s ({rate:.1f} scans and B-scans/s)"
        )
        if self.skipped_done:
            text += f"; {self.skipped_done} input(s) already done, skipped"
        if replaced:
            text += f"; {replaced} worker(s) were replaced by Ray and their batches retried"
        return text


def predict_archive(
    model: str,
    inputs: Sequence[str],
    out: str | Path,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    batch_size: int = 16,
    files_per_task: int = 64,
    backend: str = "torch",
    onnx: str | None = None,
    precision: str = "auto",
    allow_ood: bool = False,
    csv: bool = False,
    log: Any = print,
) -> ArchiveSummary:
    """Predict every input on Ray and write Parquet shards (and a CSV if asked) under ``out``."""
    import pyarrow.parquet as pq

    ray = require_ray()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = read_bundle_config(model).class_names  # a bad bundle fails here, before any cluster work
    every = archive_inputs(inputs)
    done = done_inputs(out_dir)
    todo = [p for p in every if p not in done]
    summary = ArchiveSummary(inputs=len(every), skipped_done=len(every) - len(todo))
    start = time.perf_counter()
    if todo:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, workers))
        # at least one block per worker, at most files_per_task paths in each
        blocks = max(workers, -(-len(todo) // files_per_task))
        per_batch = max(1, -(-len(todo) // blocks))
        dataset = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=blocks)
        predicted = dataset.map_batches(
            BatchPredictor,
            fn_constructor_kwargs={
                "model": str(model),
                "backend": backend,
                "onnx": onnx,
                "precision": precision,
                "allow_ood": allow_ood,
                "batch_size": batch_size,
                "threads": cpus if gpus_per_worker == 0 else 0,
            },
            batch_size=per_batch,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=cpus,
            num_gpus=gpus_per_worker,
            # Ray Data's actor pools restart a dead actor and retry its tasks by default
            # (max_restarts=-1, max_task_retries=-1): nothing to set here.
        )
        for batch in predicted.iter_batches(batch_size=None, batch_format="pyarrow"):
            _write_shard(batch, out_dir, pq)
            summary.shards += 1
            _count(summary, batch)
    summary.seconds = time.perf_counter() - start
    if csv:
        _write_csv(out_dir, class_names)
    log(summary.line(workers))
    return summary


def _count(summary: ArchiveSummary, batch: Any) -> None:
    rows = batch.to_pylist()
    summary.workers.update(r["worker"] for r in rows)
    by_input: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_input.setdefault(r["input"], []).append(r)
    for group in by_input.values():
        if group[0]["not_predicted_reason"]:
            summary.failures += 1
        elif len(group) > 1:  # a volume: its B-scans and its own call share the input
            summary.volumes += 1
            summary.bscans += len(group) - 1
            summary.flagged += bool(group[-1]["ood"])
        else:
            summary.scans += 1
            summary.flagged += bool(group[0]["ood"])


def _write_shard(batch: Any, out_dir: Path, pq: Any) -> Path:
    """One batch as ``part-<uuid>.parquet``, complete or absent."""
    name = f"{SHARD_PREFIX}{uuid.uuid4().hex}.parquet"
    tmp = out_dir / f".{name}.tmp"
    pq.write_table(batch.drop_columns(["worker"]), tmp)
    os.replace(tmp, out_dir / name)
    return out_dir / name


def read_shards(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every row written under ``out_dir`` (in shard order)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for shard in sorted(Path(out_dir).glob(f"{SHARD_PREFIX}*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


def _write_csv(out_dir: Path, class_names: Iterable[str]) -> Path:
    """All shards as one ``predictions.csv``, with local ``predict``'s columns."""
    from octattn.io import atomic_write_text

    path = out_dir / "predictions.csv"
    atomic_write_text(path, rows_to_csv(PredictionRun(list(class_names)).columns(), read_shards(out_dir)))
    return path
