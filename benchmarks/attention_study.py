"""Does attention attend? The paper's transfer setting, rebuilt from phantoms, on a CPU.

One command (``python -m benchmarks.attention_study``) runs the whole study and writes
``benchmarks/results/attention_study.json`` and ``attention_study.md``:

1. Phantoms: a pretraining set (standard lesions), a fine-tuning set the backbone never
   saw (``hard``: smaller, fainter lesions, so the models do not both sit at the ceiling)
   with its test split, and standard-difficulty test phantoms for localisation.
2. Pretraining: plain Inception-v4, every layer (policy ``all``), on the pretraining set;
   its backbone (no classifier) is saved as a ``.safetensors`` file that ``--weights``
   takes: the stand-in for ImageNet weights.
3. Fine-tuning with the paper's policy (lower blocks frozen; the last three Inception-C
   blocks at the backbone rate, attention modules and classifier at the new-layer rate,
   100 times higher) under several optimiser recipes and mask starts, for the attention
   model and the plain baseline, over seeds.
4. For every run: training loss and mask health per epoch, validation accuracy after the
   first epoch, test accuracy with its interval, whether training diverged, and the
   localisation of every mask summary and of Grad-CAM on the hard and the standard test
   phantoms; for every seed, ``compare`` (McNemar, paired patient bootstrap) of the
   attention model against the plain one under the same recipe. An ablation runs the
   attention modules without their masks: under the paper's policy the modules add
   trainable units in the middle of a frozen backbone, which the plain model lacks.

Runs that finished are kept: rerunning the command resumes the study. ``--quick`` runs
a tiny version (75 px, a few phantoms, one epoch) to check the code path.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REDONE_WHOLE, RESULTS, machine, refuse_other_settings, save_backbone
from octattn.data.synth import write_phantom_tree
from octattn.demo import config_path
from octattn.evaluation.compare import compare_models
from octattn.evaluation.evaluate import EVALUATION_DIR, evaluate_model, write_evaluation
from octattn.explain.run import explain_eval
from octattn.io import atomic_write_text
from octattn.training.config import load_config
from octattn.training.loop import train

RECIPES: dict[str, list[str]] = {
    # The paper's numbers as our presets first read them: SGD, momentum 0.9, 0.1 / 0.001.
    "paper-sgd": ["optimizer=sgd", "momentum=0.9", "grad_clip=0.0", "lr_new=0.1", "lr_backbone=0.001"],
    # The same rates with plain SGD and the gradient norm clipped at 1.
    "sgd-clip": ["optimizer=sgd", "momentum=0.0", "grad_clip=1.0", "lr_new=0.1", "lr_backbone=0.001"],
    # AdamW, the paper's 100:1 ratio of new-layer to backbone rate.
    "adamw": ["optimizer=adamw", "grad_clip=0.0", "lr_new=0.001", "lr_backbone=0.00001"],
}


FAST_MASK_FACTOR = 10.0
"""The ``fastmask`` runs train the soft-mask branches at this multiple of the new-layer rate."""


@dataclass(frozen=True)
class Run:
    """One fine-tuning run of the grid."""

    recipe: str
    model: str  # "attention" or "plain"
    start: str  # the mask start for attention ("nomask": the modules without masks; "fastmask":
    # the identity start with the masks at 10x the new-layer rate); "-" for plain
    seed: int

    @property
    def name(self) -> str:
        start = f"-{self.start}" if self.model == "attention" else ""
        return f"{self.recipe}-{self.model}{start}-s{self.seed}"

    def overrides(self) -> list[str]:
        extra = [f"seed={self.seed}", *RECIPES[self.recipe]]
        if self.model == "plain":
            return [*extra, "model=inception_v4"]
        if self.start == "nomask":  # the ablation: the modules' units without their masks
            return [*extra, "attention_init=identity", "attention_mask=false"]
        if self.start == "fastmask":  # the lever for masks that barely leave the identity start
            return [*extra, "attention_init=identity", f"lr_mask_factor={FAST_MASK_FACTOR}"]
        return [*extra, f"attention_init={self.start}"]


def grid(quick: bool) -> list[Run]:
    """The runs: every recipe once; the chosen recipe with every start, the modules without
    their masks (what the masks add beyond the modules' trainable units) and two seeds."""
    if quick:
        return [Run("adamw", "attention", "identity", 0), Run("adamw", "plain", "-", 0)]
    runs = [
        Run(recipe, model, "identity" if model == "attention" else "-", 0)
        for recipe in ("paper-sgd", "sgd-clip")
        for model in ("attention", "plain")
    ]
    for seed in (0, 1):
        runs += [Run("adamw", "attention", start, seed) for start in ("identity", "gentle", "he")]
        runs.append(Run("adamw", "plain", "-", seed))
    runs += [Run("adamw", "attention", "nomask", seed) for seed in (0, 1)]
    runs += [Run("adamw", "attention", "fastmask", seed) for seed in (0, 1)]
    return runs


@dataclass(frozen=True)
class Setup:
    """Sizes of the study (the full one, or ``--quick``)."""

    size: int
    pretrain_per_class: int
    pretrain_epochs: int
    finetune_per_class: int
    test_per_class: int
    epochs: int
    batch: int


FULL = Setup(
    size=147, pretrain_per_class=200, pretrain_epochs=8, finetune_per_class=200, test_per_class=50, epochs=4, batch=32
)
QUICK = Setup(
    size=75, pretrain_per_class=3, pretrain_epochs=1, finetune_per_class=3, test_per_class=1, epochs=1, batch=4
)


def _phantoms(work: Path, setup: Setup) -> dict[str, Path]:
    folders = {
        "pretrain": (work / "phantoms-pretrain", {"train": setup.pretrain_per_class}, 11, "standard"),
        "finetune": (
            work / "phantoms-hard",
            {"train": setup.finetune_per_class, "test": setup.test_per_class},
            21,
            "hard",
        ),
        "standard": (work / "phantoms-standard-test", {"test": setup.test_per_class}, 31, "standard"),
    }
    for folder, counts, seed, difficulty in folders.values():
        if not (folder / "phantoms.json").exists():
            write_phantom_tree(folder, counts, seed=seed, difficulty=difficulty)
    return {key: value[0] for key, value in folders.items()}


def _pretrain(work: Path, data: Path, setup: Setup, recipe: Sequence[str] = ()) -> Path:
    """Plain Inception-v4 on phantoms; its backbone as a weights file. ``recipe``: config
    overrides applied after the study's own (another schedule, augmentation)."""
    backbone = work / "backbone.safetensors"
    run = work / "pretrain"
    overrides = [
        f"data={data}",
        "model=inception_v4",
        f"image_size={setup.size}",
        f"epochs={setup.pretrain_epochs}",
        f"batch_size={setup.batch}",
        f"bn_recalibrate={min(256, 4 * setup.pretrain_per_class)}",
        "amp=auto",
        *REDONE_WHOLE,
        *recipe,
    ]
    config = load_config(config_path("demo"), overrides)
    if backbone.exists():  # reused only if trained as asked now
        refuse_other_settings(run, config)
        return backbone
    train(config, run, overwrite=True, progress=False)
    return save_backbone(run / "model", backbone)


def _epochs(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


CHANCE_LOSS = math.log(4)
"""Cross-entropy of a uniform guess over the four classes: a training loss above it is a
model worse than guessing."""


def worse_than_chance(losses: list[float]) -> bool:
    """Any epoch's training loss above :data:`CHANCE_LOSS` (or not finite)."""
    return any(not math.isfinite(v) or v > CHANCE_LOSS for v in losses)


def diverged(losses: list[float]) -> bool:
    """The divergence test: the training loss above its first-epoch level for more than one
    epoch, or not finite."""
    if any(not math.isfinite(v) for v in losses):
        return True
    above = [v > losses[0] for v in losses[1:]]
    return any(a and b for a, b in itertools.pairwise(above))


def _finetune(run: Run, work: Path, data: dict[str, Path], backbone: Path, setup: Setup) -> dict[str, Any]:
    run_dir = work / "runs" / run.name
    result_file = run_dir / "study.json"
    if result_file.exists():
        loaded: dict[str, Any] = json.loads(result_file.read_text())
        return loaded
    overrides = [
        f"data={data['finetune']}",
        f"weights={backbone}",
        f"image_size={setup.size}",
        f"epochs={setup.epochs}",
        f"batch_size={setup.batch}",
        "amp=auto",
        "num_workers=0",
        *REDONE_WHOLE,
        *run.overrides(),
    ]
    start = time.perf_counter()
    error = None
    try:
        train(load_config(config_path("paper/attention"), overrides), run_dir, overwrite=True, progress=False)
    except Exception as exc:  # a diverged run (non-finite loss) is a result, not a crash
        error = str(exc)
    seconds = time.perf_counter() - start
    epochs = _epochs(run_dir) if (run_dir / "metrics.csv").exists() else []
    record: dict[str, Any] = {
        "run": run.name,
        "recipe": run.recipe,
        "model": run.model,
        "start": run.start,
        "seed": run.seed,
        "seconds": round(seconds, 1),
        "error": error,
        "epochs": epochs,
        "train_loss": [e["train_loss"] for e in epochs],
        "val_accuracy_epoch1": epochs[0]["val_accuracy"] if epochs else None,
        "diverged": error is not None or diverged([e["train_loss"] for e in epochs]),
    }
    if (run_dir / "model").exists():
        evaluation = evaluate_model(run_dir, data["finetune"], "test")
        write_evaluation(evaluation, run_dir / EVALUATION_DIR)
        report = evaluation.report
        record["test"] = {
            "accuracy": report["accuracy"],
            "accuracy_ci": [report["ci"]["accuracy"]["low"], report["ci"]["accuracy"]["high"]],
            "f1": report["f1"],
            "n": report["n"],
        }
        record["localisation"] = {
            "hard": explain_eval(run_dir, data["finetune"])["maps"],
            "standard": explain_eval(run_dir, data["standard"])["maps"],
        }
    atomic_write_text(result_file, json.dumps(record, indent=1))
    return record


def _comparisons(runs: list[Run], work: Path, data: dict[str, Path]) -> list[dict[str, Any]]:
    """On the same test phantoms, per recipe and seed: every attention run against the plain
    model, and every run with masks against the modules without masks (what the masks add)."""
    found = []
    for run in runs:
        if run.model != "attention":
            continue
        baselines = [Run(run.recipe, "plain", "-", run.seed)]
        if run.start != "nomask":
            baselines.append(Run(run.recipe, "attention", "nomask", run.seed))
        for baseline in baselines:
            a, b = work / "runs" / baseline.name, work / "runs" / run.name
            if baseline in runs and (a / "model").exists() and (b / "model").exists():
                found.append({"a": baseline.name, "b": run.name, "lines": compare_models(a, b, data["finetune"])})
    return found


LOCALISED_MAPS = (
    "attention_after_9",
    "attention_after_9_weighted",
    "attention_after_13_weighted",
    "attention_after_17_weighted",
    "gradcam",
)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _health(epochs: list[dict[str, float]], block: int = 9) -> str:
    """The last epoch's mean / contrast / moved share of the mask after ``block``."""
    last = epochs[-1] if epochs else {}
    key = f"mask_after_{block}_"
    if f"{key}mean" not in last:
        return "-"
    return f"{last[key + 'mean']:.3f} / {last[key + 'contrast']:.3f} / {100 * last[key + 'moved']:.0f}%"


def training_table(records: list[dict[str, Any]]) -> str:
    """Training and accuracy: one row per run."""
    header = [
        "run",
        "loss rises",
        "above chance (ln 4)",
        "train loss by epoch",
        "val acc. epoch 1",
        "test acc. (95% CI)",
        "mask after_9 at the end: mean / contrast / moved",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for r in records:
        test = r.get("test")
        acc = (
            f"{100 * test['accuracy']:.1f} ({100 * test['accuracy_ci'][0]:.1f}-{100 * test['accuracy_ci'][1]:.1f})"
            if test
            else "-"
        )
        epoch1 = f"{100 * r['val_accuracy_epoch1']:.1f}" if r["val_accuracy_epoch1"] is not None else "-"
        lines.append(
            _row(
                [
                    r["run"],
                    "yes" if r["diverged"] else "no",
                    "yes" if worse_than_chance(r["train_loss"]) else "no",
                    ", ".join(f"{v:.2f}" for v in r["train_loss"]),
                    epoch1,
                    acc,
                    _health(r["epochs"]),
                ]
            )
        )
    return "\n".join(lines)


def localisation_table(records: list[dict[str, Any]], difficulty: str) -> str:
    """Pointing-game hits and energy on the lesion (as a multiple of chance) per map."""
    header = ["run", *(f"{m.removeprefix('attention_')}: hits / energy x chance" for m in LOCALISED_MAPS)]
    lines = [_row(header), _row(["---"] * len(header))]
    for r in records:
        scores = r.get("localisation", {}).get(difficulty, {})
        cells = [
            f"{100 * scores[m]['pointing_hit_rate']:.0f}% / {scores[m]['energy_inside'] / scores[m]['chance']:.1f}x"
            if m in scores
            else "-"
            for m in LOCALISED_MAPS
        ]
        lines.append(_row([r["run"], *cells]))
    return "\n".join(lines)


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """A stored comparison's McNemar and accuracy lines with both runs named (results written
    before ``compare`` named its models said A and B: those letters become the run names)."""
    names = {"A": comparison["a"], "B": comparison["b"]}
    return [re.sub(r"\b[AB]\b", lambda m: names[m.group(0)], line) for line in comparison["lines"][2:4]]


def table(results: dict[str, Any]) -> str:
    """The study's tables and paired comparisons, rendered from ``attention_study.json``."""
    records = results["runs"]
    notes = "\n".join(f"- {c['b']} vs {c['a']}: " + " ".join(comparison_lines(c)) for c in results["comparisons"])
    return "\n\n".join(
        [
            training_table(records),
            "Localisation on the hard test phantoms (150 with lesions):",
            localisation_table(records, "hard"),
            "Localisation on the standard test phantoms (150 with lesions):",
            localisation_table(records, "standard"),
            "Paired comparisons on the same 200 test phantoms:",
            notes,
        ]
    )


def main() -> None:
    """Run (or resume) the study and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/attention-study", help="phantoms and runs (resumable)")
    parser.add_argument("--quick", action="store_true", help="a tiny version that checks the code path")
    parser.add_argument("--results", default=str(RESULTS), help="where attention_study.json/.md go")
    args = parser.parse_args()
    setup = QUICK if args.quick else FULL
    work = Path(args.work)
    data = _phantoms(work, setup)
    backbone = _pretrain(work, data["pretrain"], setup)
    runs = grid(args.quick)
    records = [_finetune(run, work, data, backbone, setup) for run in runs]
    comparisons = _comparisons(runs, work, data)
    results = {
        "machine": machine(),
        "setup": setup.__dict__,
        "recipes": RECIPES,
        "runs": records,
        "comparisons": comparisons,
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "attention_study.json", json.dumps(results, indent=1))
    text = table(results)
    atomic_write_text(out / "attention_study.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
