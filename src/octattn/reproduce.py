"""``octattn reproduce``: every experiment of the paper on one data set, then the report.

Trains each preset of ``configs/paper/`` into ``OUT/<preset>``, evaluates it on the test
split, writes the report of all runs, and compares the attention model with its
Inception-v4 baseline. Finished runs are kept: running it again picks up where it
stopped (an interrupted run resumes from its checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from octattn.demo import config_path
from octattn.errors import OctattnError
from octattn.evaluation.compare import compare_models
from octattn.evaluation.evaluate import EVALUATION_DIR, evaluate_model, write_evaluation
from octattn.io import atomic_write_text
from octattn.progress import progress
from octattn.reporting.report import write_report
from octattn.training.checkpoint import CHECKPOINT_FILE
from octattn.training.config import load_config
from octattn.training.loop import train

PAPER_PRESETS: tuple[str, ...] = (
    "attention",
    "inception_v4",
    "inception_v3",
    "attention-original",
    "inception_v4-original",
    "attention-last1",
)
"""The paper's experiments: what ``reproduce`` runs by default."""

EXTRA_PRESETS: tuple[str, ...] = ("attention-nomask",)
"""Beyond the paper, run on request (``--only``): the attention modules without their masks,
which separates what the masks add from what the modules' trainable units add."""


def reproduce(
    data: str | Path,
    out_dir: str | Path,
    presets: Sequence[str] = PAPER_PRESETS,
    overrides: Sequence[str] = (),
    weights_v4: str | None = None,
    weights_v3: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run the matrix; returns the report page."""
    out = Path(out_dir)
    known = PAPER_PRESETS + EXTRA_PRESETS
    unknown = sorted(set(presets) - set(known))
    if unknown:
        raise OctattnError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    runs = []
    for preset in progress(presets, desc="presets", unit="run"):
        run_dir = out / preset
        runs.append(run_dir)
        if (run_dir / EVALUATION_DIR / "metrics.json").exists():
            log(f"{preset}: already trained and evaluated, kept")
            continue
        extra = list(overrides)
        weights = weights_v3 if preset.startswith("inception_v3") else weights_v4
        if weights:
            extra.append(f"weights={weights}")
        config = load_config(config_path(f"paper/{preset}"), [f"data={data}", *extra])
        log(f"{preset}: training ({config.model}, policy {config.policy}, {config.epochs} epochs)")
        train(config, run_dir, resume=(run_dir / CHECKPOINT_FILE).exists(), log=log)
        result = evaluate_model(run_dir, data, "test")
        write_evaluation(result, run_dir / EVALUATION_DIR)
        log(f"{preset}: test accuracy {100 * result.report['accuracy']:.1f}%")
    page = write_report(runs, out / "report", title="octattn: reproducing Shang et al.")
    if {"attention", "inception_v4"} <= set(presets):
        lines = compare_models(out / "inception_v4", out / "attention", data)
        atomic_write_text(out / "comparison.txt", "\n".join(lines) + "\n")
        log("\n".join(lines))
    log(f"report: {page}")
    return page
