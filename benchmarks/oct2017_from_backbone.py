"""The paper's question on OCT2017 from a phantom backbone: the three models fine-tuned from one start.

Part a of the real-scan benchmark fine-tunes from the lesion-sized phantoms' backbone only on
request (``--lesion-models``) and always beside its whole grid of runs from scratch. A probe
fine-tuned plain Inception-v4 from three such backbones to 84% of the 307 scans; what the
attention modules and their masks do from there was not asked. This probe asks only that: the
models named fine-tuned from the real-scan benchmark's own backbone (its work folder's
``phantom-GENERATOR``, made there if missing) with part a's folds, recipe and run names
(``oct2017-MODEL-START-foldK``, so part a reuses them), pooled out of fold with
patient-bootstrap intervals, and paired scan by scan on each seed: attention against plain and
against the same modules without masks (:data:`benchmarks.real_scans.PAIRS_A`).

``python -m benchmarks.oct2017_from_backbone [--backbone lesion-sized] [--models
plain,attention,nomask] [--seeds 0]``: resumable (a finished fold is reused); the seeds run
before and not now stay in the results file, each with the machine it ran on. Writes
``results/oct2017_from_backbone.{json,md}``.

``--backbone NAME --backbone-weights FILE`` asks the same of any backbone file (a phantom
probe's ``backbone.safetensors``): its runs are kept beside the file (``FILE``'s folder
``runs/``, where the phantom-only probe's own fine-tuning of plain Inception-v4 already stands
under the same start and names, so it is reused), and its seeds under the results file's
``from_backbone:NAME`` key, beside the other starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REAL_DATA,
    RESULTS,
    backbone_file_starts,
    backbone_weights_arg,
    machine,
    start_key,
    write_results,
)
from benchmarks.phantom_zero_shot import FINE_TUNE_START
from benchmarks.real_scans import (
    MODELS,
    PAIRS_A,
    PAPER_EPOCHS,
    backbone_file,
    cross_validated,
    measured_phrase,
    oct2017_scans,
    pct_ci,
    phantom_backbone,
    plan,
    points_p,
    split_seed,
)

STARTS = {"lesion-sized": "lesion_gentle_e20", "realistic": "phantom_gentle_e20"}
"""Each backbone's start in part a: its layers at a tenth of the new head's rate, for the
paper's 20 epochs (:data:`benchmarks.real_scans.START_OVERRIDES`)."""

FILE_START = FINE_TUNE_START
"""A backbone file's start: the same gentle 20-epoch recipe under the phantom-only probe's
name for it, so the plain runs that probe left beside its backbone are this probe's too."""

DEFAULT_MODELS = ("plain", "attention", "nomask")
"""Cheapest first: a call cut short for time keeps the run every other one is paired with."""


def fine_tuned_seed(
    work: Path, start: str, backbone: Path, models: tuple[str, ...], seed: int, size: int
) -> dict[str, Any]:
    """The ``models`` fine-tuned from the ``backbone`` file as part a's ``start`` on one seed,
    their runs in ``work``: each pooled out of fold (its private per-scan lists dropped) and
    the pairs of part a between them, with the machine they ran on."""
    p = plan(False, size)
    weights = {start: backbone}
    part = cross_validated(work, p, [(m, start) for m in models], weights, PAIRS_A, (seed,), frozenset({start}))
    runs = {
        _model_of(name, start): {k: v for k, v in run.items() if not k.startswith("_")}
        for name, run in part["runs"].items()
    }
    comparisons = {
        " vs ".join(_model_of(n, start) for n in name.split(" vs ")): c for name, c in part["comparisons"].items()
    }
    return {"machine": machine(), "runs": runs, "comparisons": comparisons}


def _model_of(name: str, start: str) -> str:
    """A part a run's model: 'attention-lesion_gentle_e20-s1' -> 'attention'."""
    return split_seed(name)[0].removesuffix(f"-{start}")


def table(results: dict[str, Any]) -> str:
    """The docs' tables: each start's (the phantom generator's, then each backbone file's in the
    order first written), each seed's models, then their paired differences."""
    return "\n\n".join(_start_table(found) for found in start_sections(results))


def start_sections(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every start of a results file: the phantom generator's (its top level, where it ran),
    then each backbone file's (``from_backbone:NAME``) in the order first written."""
    sections = [results] if "seeds" in results else []
    return sections + list(backbone_file_starts(results).values())


def backbone_phrase(found: dict[str, Any]) -> str:
    """What the tables call a start: a phantom generator's backbone, or a named backbone file."""
    if "weights" in found:
        return f"the {found['backbone']} backbone file `{found['weights']}`"
    return f"the {found['backbone']} phantoms' backbone"


def _start_table(results: dict[str, Any]) -> str:
    """One start's tables: each seed's models, then their paired differences."""
    lines = [
        f"OCT2017, {results['scans']} real scans, part a's {results['folds']} patient-grouped folds at "
        f"{results['size']} px: each model fine-tuned from {backbone_phrase(results)} "
        f"(`{results['start']}`: its layers at a tenth of the new head's rate, {results['epochs']} one-cycle "
        "epochs), pooled out of fold:",
        "",
        "| seed | model | accuracy (95% CI) | macro-F1 (95% CI) | measured on |",
        "| ---: | --- | ---: | ---: | --- |",
    ]
    for seed, reading in results["seeds"].items():
        for model, r in reading["runs"].items():
            lines.append(
                f"| {seed} | {model} | {pct_ci(r['accuracy'], r['accuracy_ci'])} "
                f"| {pct_ci(r['macro_f1'], r['macro_f1_ci'])} | {measured_phrase(reading['machine'])} |"
            )
    lines += [
        "",
        "| seed | paired comparison (same scans) | B - A, accuracy points (95% CI; McNemar p) |",
        "| ---: | --- | ---: |",
    ]
    for seed, reading in results["seeds"].items():
        lines += [f"| {seed} | {name} | {points_p(c)} |" for name, c in reading["comparisons"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone",
        default="lesion-sized",
        metavar="NAME",
        help=f"which phantoms' backbone (of {', '.join(sorted(STARTS))}); with --backbone-weights, that file's name",
    )
    parser.add_argument(
        "--backbone-weights",
        metavar="FILE",
        help="fine-tune from this backbone file (safetensors, e.g. a phantom probe's backbone.safetensors); its runs "
        "are kept in the file's folder",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, of {', '.join(MODELS)}, trained in this order (default: all three, plain first)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated fine-tuning seeds (default 0)")
    parser.add_argument("--size", type=int, default=147, help="image size (part a's: 147)")
    parser.add_argument(
        "--work",
        default="runs/real-scans",
        help="the real-scan benchmark's work folder (with --backbone-weights the runs go beside the file instead)",
    )
    args = parser.parse_args()
    backbone = backbone_weights_arg(parser, "--backbone", args.backbone, args.backbone_weights, STARTS)
    models = tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    if not models or not set(models) <= set(MODELS):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: expected comma-separated whole numbers")
    if not REAL_DATA.is_dir():
        print(f"skipped: {REAL_DATA} not found")
        return 0
    if backbone is None:
        work = Path(args.work) / "full"
        work.mkdir(parents=True, exist_ok=True)
        start = STARTS[args.backbone]
        backbone = backbone_file(phantom_backbone(work, plan(False, args.size), args.backbone))
    else:
        work, start = backbone.parent, FILE_START
    previous = RESULTS / "oct2017_from_backbone.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("machine", None)  # the file's machine is this write's; each seed keeps its own
    recipe = {
        "backbone": args.backbone,
        "start": start,
        "scans": len(oct2017_scans()),
        "folds": plan(False, args.size).folds,
        "size": args.size,
        "epochs": PAPER_EPOCHS,
        **({"weights": args.backbone_weights} if args.backbone_weights else {}),
    }
    key = start_key(args.backbone) if args.backbone_weights else None
    old = results.get(key, {}) if key else results
    # seeds of another recipe cannot stand in one table: they are replaced, not kept
    kept = old.get("seeds", {}) if all(old.get(k) == v for k, v in recipe.items()) else {}
    for seed in seeds:
        kept[str(seed)] = fine_tuned_seed(work, start, backbone, models, seed, args.size)
        section = {**recipe, "seeds": {s: kept[s] for s in sorted(kept, key=int)}}
        if key:
            results[key] = section
        else:  # the generator's start stays at the top level, the files' starts beside it
            results = {**section, **backbone_file_starts(results)}
        write_results("oct2017_from_backbone", results, table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
