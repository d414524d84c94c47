"""``octattn report``: runs -> one self-contained HTML page and its Markdown twin.

For each run folder (``RUN/metrics.csv``, ``RUN/steps.csv``, ``RUN/config.yaml`` and, once
evaluated, ``RUN/evaluation/metrics.json`` + ``predictions.csv``) the report lays out the
paper's Tables I-III (precision, recall, precision with the original pre-processing; mean
with its 95% patient-bootstrap interval and per class), the training-loss curves of all
runs on one plot (Fig. 4), the accuracy after the first epoch, ROC curves (Fig. 5),
confusion matrices, reliability diagrams, the misclassified test scans (Fig. 1) and the
attention masks over a few test scans (Fig. 6). Plots are embedded as base64 PNG in the
HTML, so the page opens offline; the Markdown links the same PNGs in ``figures/``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from octattn.data.decode import load_scan
from octattn.errors import OctattnError
from octattn.evaluation.evaluate import EVALUATION_DIR
from octattn.io import atomic_write_bytes, atomic_write_text
from octattn.reporting import plots
from octattn.reporting.safety import safety_section
from octattn.reporting.section import Section, percent
from octattn.run_paths import RunPaths

MAX_GALLERY = 8


@dataclass
class RunSummary:
    """What the report reads from one run folder."""

    name: str
    path: Path
    config: dict[str, Any]
    epochs: list[dict[str, str]]
    step_losses: np.ndarray
    evaluation: dict[str, Any] | None
    predictions: list[dict[str, str]] = field(default_factory=list)

    @property
    def first_epoch_accuracy(self) -> float | None:
        """Validation accuracy after the first epoch (the paper: 99.1% vs 90.9%); None where
        the run did not validate it (``val_every``)."""
        value = float(self.epochs[0]["val_accuracy"]) if self.epochs else math.nan
        return None if math.isnan(value) else value


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_run(path: str | Path) -> RunSummary:
    """Read a run folder (or fail with a line saying what is missing)."""
    run = Path(path)
    if not (run / "config.yaml").exists():
        raise OctattnError(f"{run}: not a run folder (no config.yaml)")
    evaluation = None
    metrics_path = run / EVALUATION_DIR / "metrics.json"
    if metrics_path.exists():
        evaluation = json.loads(metrics_path.read_text())
    steps = _read_csv(run / "steps.csv")
    return RunSummary(
        name=run.name,
        path=run,
        config=yaml.safe_load((run / "config.yaml").read_text()) or {},
        epochs=_read_csv(run / "metrics.csv"),
        step_losses=np.array([float(s["loss"]) for s in steps]),
        evaluation=evaluation,
        predictions=_read_csv(run / EVALUATION_DIR / "predictions.csv"),
    )


def _metric_table(runs: list[RunSummary], metric: str) -> tuple[list[str], list[list[str]]]:
    header = ["Run", "Model", "Mean (95% CI)"]
    rows = []
    for run in runs:
        if run.evaluation is None:
            continue
        names = run.evaluation["class_names"]
        ci = run.evaluation.get("ci", {}).get(metric)
        mean = percent(run.evaluation[metric])
        if ci:
            mean += f" ({100 * ci['low']:.1f}-{100 * ci['high']:.1f})"
        rows.append(
            [run.name, str(run.config.get("model", "?")), mean]
            + [percent(run.evaluation["per_class"][c][metric]) for c in names]
        )
        header = ["Run", "Model", "Mean (95% CI)", *names]
    return header, rows


def _tables_section(runs: list[RunSummary]) -> list[Section]:
    evaluations = [r.evaluation for r in runs if r.evaluation is not None and "ci" in r.evaluation]
    note = (
        "Means are unweighted over the four classes (the paper's 'Mean'); intervals resample patients "
        f"({evaluations[0]['ci']['_bootstrap']['resamples']} resamples) because scans of one patient "
        "are not independent."
        if evaluations
        else "No run has been evaluated yet: run `octattn evaluate RUN --data DIR` first."
    )
    original = [r for r in runs if r.config.get("preprocess") == "crop"]
    table_three = Section(
        "Table III: precision with the original pre-processing",
        "Runs trained with random crop and no DME/DRUSEN tripling (the paper's 'original pre-processing')."
        if original
        else "No run here used the original pre-processing (`preprocess: crop`, `balance: none`); "
        "the `configs/paper/*-original.yaml` presets produce it.",
        tables=[_metric_table(original, "precision")] if original else [],
    )
    return [
        Section("Table I: precision", note, tables=[_metric_table(runs, "precision")]),
        Section("Table II: recall", note, tables=[_metric_table(runs, "recall")]),
        table_three,
    ]


def _summary_section(runs: list[RunSummary]) -> Section:
    header = [
        "Run",
        "Model",
        "Policy",
        "Accuracy (95% CI)",
        "Macro-F1",
        "AUC (macro)",
        "Referral sens./spec.",
        "ECE",
        "Val. accuracy after epoch 1",
    ]
    rows = []
    for run in runs:
        ev = run.evaluation
        if ev is None:
            rows.append(
                [
                    run.name,
                    str(run.config.get("model")),
                    str(run.config.get("policy")),
                    "not evaluated",
                    "",
                    "",
                    "",
                    "",
                    percent(run.first_epoch_accuracy),
                ]
            )
            continue
        ci = ev.get("ci", {}).get("accuracy")
        accuracy = percent(ev["accuracy"]) + (f" ({100 * ci['low']:.1f}-{100 * ci['high']:.1f})" if ci else "")
        referral = ev.get("referral") or {"sensitivity": float("nan"), "specificity": float("nan")}
        rows.append(
            [
                run.name,
                str(run.config.get("model")),
                str(run.config.get("policy")),
                accuracy,
                percent(ev["f1"]),
                f"{ev['auc_macro']:.3f}",
                f"{percent(referral['sensitivity'])} / {percent(referral['specificity'])}",
                f"{ev['ece']:.3f}",
                percent(run.first_epoch_accuracy),
            ]
        )
    text = (
        "Test-split results. Referral: a class whose tier is urgent (OCT2017: CNV or DME, Kermany et al.) "
        "called urgent, against the rest; - where the class set has no urgent class. "
        "ECE: expected calibration error after temperature scaling fitted on the validation split."
    )
    return Section("Summary", text, tables=[(header, rows)])


def _missing_note(missing: list[Path], figure: str) -> str:
    """One line naming the images a figure needed and could not find."""
    shown = ", ".join(str(p) for p in missing[:2]) + (f" and {len(missing) - 2} more" if len(missing) > 2 else "")
    return f"{figure} not drawn: {len(missing)} image(s) it needs are missing ({shown})."


def _existing(run: RunSummary, recorded: list[str]) -> tuple[list[Path], list[Path]]:
    """The recorded image paths mapped to where the run's data is now: (found, missing)."""
    paths = RunPaths(run.path)
    resolved = [paths.resolve(p) for p in recorded]
    return [p for p in resolved if p.is_file()], [p for p in resolved if not p.is_file()]


def _gallery(run: RunSummary) -> tuple[bytes | None, str]:
    wrong = [p for p in run.predictions if p["label"] != p["prediction"]][:MAX_GALLERY]
    if not wrong:
        return None, "No test scan was misclassified."
    found, missing = _existing(run, [row["path"] for row in wrong])
    if missing:
        return None, _missing_note(missing, "The misclassified-scan figure")
    images, captions = [], []
    for row, path in zip(wrong, found, strict=True):
        try:
            images.append(load_scan(path, (256, 256)))
        except OctattnError:
            continue
        captions.append(f"{path.name}\ntrue {row['label']}, predicted {row['prediction']}")
    return (plots.image_grid(images, captions) if images else None), ""


def _attention_figure(run: RunSummary) -> tuple[bytes | None, str]:
    from octattn.explain.attention import attention_overlays

    if run.config.get("model") != "inception_v4_attention":
        return None, f"{run.name} has no attention modules ({run.config.get('model')})."
    recorded = [row["path"] for row in run.predictions[:: max(1, len(run.predictions) // 4)]][:4]
    if not recorded:
        return None, f"{run.name} has not been evaluated: no test scans to show."
    found, missing = _existing(run, recorded)
    if missing:
        return None, _missing_note(missing, "The attention-mask figure")
    images, overlays, captions = attention_overlays(run.path / "model", found)
    columns = len(overlays[0]) if overlays else 4  # a row: the scan, then one mask per module
    return plots.image_grid(images, captions, columns=columns, overlays=[o for row in overlays for o in row]), ""


HEALTH_NOTE = (
    "Attention health, per epoch on a fixed sample of validation scans: the mean mask (the gain 1 + M starts "
    "at 1.018 under the near-identity start), the spatial contrast of the channel-mean mask (0 = uniform), the "
    "mean spatial contrast of single channels, and the share of channels whose mask moved by more than 0.05 "
    "from where it started. A module whose masks neither moved nor vary over the scan is switched off."
)


def _health_table(run: RunSummary) -> tuple[list[str], list[list[str]]]:
    """The last epoch's mask health, one row per module."""
    last = run.epochs[-1]
    modules = [k[len("mask_") : -len("_mean")] for k in last if k.startswith("mask_") and k.endswith("_mean")]
    header = ["Module (last epoch)", "Mean mask", "Contrast", "Channel contrast", "Channels moved"]
    rows = [
        [
            m,
            f"{float(last[f'mask_{m}_mean']):.3f}",
            f"{float(last[f'mask_{m}_contrast']):.3f}",
            f"{float(last[f'mask_{m}_channel_contrast']):.3f}",
            percent(float(last[f"mask_{m}_moved"])),
        ]
        for m in modules
    ]
    return header, rows


def _figures_sections(runs: list[RunSummary]) -> list[Section]:
    losses = {r.name: r.step_losses for r in runs if len(r.step_losses)}
    sections = [
        Section(
            "Training loss (Fig. 4)",
            "Training loss per step, moving average of 10 steps, log scale.",
            figures=[("loss_curves", plots.loss_curves(losses))] if losses else [],
        )
    ]
    for run in runs:
        if run.evaluation is None:
            continue
        ev = run.evaluation
        figures = [
            (f"{run.name}_roc", plots.roc_curves(ev, run.name)),
            (f"{run.name}_confusion", plots.confusion(ev, run.name)),
            (f"{run.name}_reliability", plots.reliability(ev, run.name)),
        ]
        sections.append(Section(f"{run.name}: ROC (Fig. 5), confusion, calibration", figures=figures))
        safety = safety_section(run.evaluation, run.name)
        if safety is not None:
            sections.append(safety)
        gallery, gallery_note = _gallery(run)
        sections.append(
            Section(
                f"{run.name}: misclassified test scans (Fig. 1)",
                gallery_note,
                figures=[(f"{run.name}_misclassified", gallery)] if gallery else [],
            )
        )
        attention, why = _attention_figure(run)
        health = plots.mask_health(run.epochs, run.name)
        figures = [(f"{run.name}_attention", attention)] if attention else []
        text = why or (
            "Each row: a test scan, then the mean soft mask M of each attention module (red = enhanced), "
            "up-sampled to the scan."
        )
        if health is not None:
            figures.append((f"{run.name}_attention_health", health))
            text += " " + HEALTH_NOTE
        sections.append(
            Section(
                f"{run.name}: attention masks (Fig. 6)",
                text,
                tables=[_health_table(run)] if health is not None else [],
                figures=figures,
            )
        )
    return sections


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(c.replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;margin:0.4em 0.4em 0 0}
.note{color:#555}
"""


def write_report(run_paths: Sequence[str | Path], out_dir: str | Path, title: str = "octattn report") -> Path:
    """Build the report of ``run_paths`` in ``out_dir``; returns the HTML page's path."""
    runs = [read_run(p) for p in run_paths]
    if not runs:
        raise OctattnError("no runs to report")
    sections = [_summary_section(runs), *_tables_section(runs), *_figures_sections(runs)]
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    html_parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    md_parts = [f"# {title}", ""]
    for section in sections:
        html_parts.append(f"<h2>{html.escape(section.title)}</h2>")
        md_parts += [f"## {section.title}", ""]
        if section.text:
            html_parts.append(f"<p class='note'>{html.escape(section.text)}</p>")
            md_parts += [section.text, ""]
        for header, rows in section.tables:
            html_parts.append(_html_table(header, rows))
            md_parts += [_md_table(header, rows), ""]
        for name, png in section.figures:
            atomic_write_bytes(out / "figures" / f"{name}.png", png)
            encoded = base64.b64encode(png).decode("ascii")
            html_parts.append(f"<img class='plot' alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
            md_parts += [f"![{name}](figures/{name}.png)", ""]
    html_parts.append("</body></html>")
    atomic_write_text(out / "report.md", "\n".join(md_parts))
    page = out / "index.html"
    atomic_write_text(page, "\n".join(html_parts))
    return page
