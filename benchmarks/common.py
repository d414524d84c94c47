"""Shared helpers of the benchmarks: machine description, timing, result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from octattn.io import atomic_write_text
from octattn.training.config import RUN_CONFIG, TrainConfig, absolute_paths, differing_keys, load_config

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "oct2017-mini"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cpu_flags": " ".join(_notable_flags()),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def _notable_flags() -> list[str]:
    """The CPU flags that decide speed here (AVX2, AVX-512, native bf16, VNNI, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [f for f in NOTABLE_FLAGS if f in present]
    except OSError:
        pass
    return []


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measured_on(results: dict[str, Any]) -> str:
    """One line naming the machine and date a results file was measured on."""
    m = results["machine"]
    flags = f"; {m['cpu_flags']}" if m.get("cpu_flags") else ""
    date = f" {m['date'][:10]}" if m.get("date") else ""
    return f"Measured{date} on {m['cpu']} ({m['cores']} cores{flags}), torch {m['torch']}."


REDONE_WHOLE = ("keep_checkpoint=false", "checkpoint_every=0")
"""Overrides for a benchmark's training runs, which are redone whole (overwrite), never resumed:
they write no checkpoint (the model and AdamW's state, three times a bundle: 0.5-0.7 GB, and a
write of 1-2 s after each epoch on a 2-core CPU, ``benchmarks/epoch.py``). Which checkpoints a
run wrote is not its recipe: a finished run from before is still reused
(:data:`octattn.training.config.KEEPING_KEYS`)."""


def refuse_other_settings(run: Path, config: TrainConfig) -> None:
    """Stop where the finished ``run`` was trained under other settings than ``config``: a
    recipe changed in the code since would otherwise be reported under the old run's numbers.

    Raises:
        SystemExit: one line naming the run and each setting that differs (the run is never
            overwritten unasked).
    """
    changed = differing_keys(absolute_paths(load_config(run / RUN_CONFIG)), absolute_paths(config))
    if changed:
        keys = "; ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise SystemExit(f"{run}: finished with other settings ({keys}); move it away or pass another --work")


def save_backbone(bundle: Path, out: Path) -> Path:
    """A trained bundle's weights without its classifier (``last_linear``), as a ``weights=``
    file for another run: the new run's head starts fresh whatever its class count. Written
    atomically (a cut-short write never passes for a finished backbone)."""
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(bundle / "model.safetensors")).items() if not k.startswith("last_linear.")}
    partial = out.with_name(out.name + ".partial")
    save_file(state, str(partial))
    os.replace(partial, out)
    return out


def write_results(
    name: str, results: dict[str, Any], table: Callable[[dict[str, Any]], str], folder: Path = RESULTS
) -> None:
    """``results/NAME.json`` (numbers + machine) and ``results/NAME.md``: ``table`` renders the
    JSON, the same function the docs' tables come from (``benchmarks.docs_tables``). A check
    run (``--quick``) passes its own ``folder`` so that it never replaces committed results."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **results}
    atomic_write_text(folder / f"{name}.json", json.dumps(payload, indent=1) + "\n")
    text = table(payload).rstrip() + "\n\n" + measured_on(payload) + "\n"
    atomic_write_text(folder / f"{name}.md", text)
    print(text)


def results_in(folder: Path, name: str) -> dict[str, Any] | None:
    """``folder/NAME.json`` as written by :func:`write_results`, or None where there is none."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def with_model(previous: dict[str, Any] | None, model: str, measured: dict[str, Any]) -> dict[str, Any]:
    """A results file of one measurement per model (``{"models": {MODEL: ...}}``): ``previous``
    (a file's, or None) with ``model``'s replaced by ``measured`` and every other model's kept,
    so that measuring a second model leaves the first's numbers as they were."""
    models = dict(previous["models"]) if previous is not None else {}
    models[model] = measured
    return {"models": models}


def whole_numbers(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    """``text``'s comma-separated whole numbers; anything else stops in one line naming ``flag``."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        parser.error(f"{flag}: whole numbers separated by commas, got {text!r}")


FROM_BACKBONE = "from_backbone:"
"""The prefix of a results file's keys for a start from a named backbone file, one per start."""


def start_key(name: str) -> str:
    """The results file's key of the backbone start ``name``."""
    return FROM_BACKBONE + name


def backbone_file_starts(results: dict[str, Any]) -> dict[str, Any]:
    """A results file's starts from named backbone files, by key, in the order first written."""
    return {key: found for key, found in results.items() if key.startswith(FROM_BACKBONE)}


START_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A start's name becomes part of run folder names: letters, digits, dots, dashes, underscores."""


def backbone_weights_arg(
    parser: argparse.ArgumentParser, flag: str, name: str | None, weights: str | None, known: Collection[str]
) -> Path | None:
    """``--backbone-weights`` checked against the start's name given with ``flag``: a file,
    and a name fit for run folders that is none of the ``known`` phantom backbones; without
    it, the name must be one of them."""
    if weights is None:
        if name is not None and name not in known:
            parser.error(
                f"{flag} {name}: not a phantom generator (of {', '.join(sorted(known))}); "
                "name a backbone file with --backbone-weights"
            )
        return None
    if name is None:
        parser.error(f"--backbone-weights needs {flag} NAME (the name its runs and tables get)")
    if not START_NAME.fullmatch(name) or name in known:
        parser.error(
            f"{flag} {name}: a backbone file's name is letters, digits, '.', '-' or '_', and not a phantom generator's"
        )
    if not Path(weights).is_file():
        parser.error(f"--backbone-weights {weights}: no such file")
    return Path(weights)
