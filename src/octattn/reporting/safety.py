"""The report's safety section: how the bundle's own limits fared on the test split."""

from __future__ import annotations

from typing import Any

from octattn.reporting import plots
from octattn.reporting.section import Section, percent


def safety_section(ev: dict[str, Any] | None, name: str) -> Section | None:
    """Out-of-distribution scores, risk-coverage with the abstention point, and the urgent
    operating point, as they fared on the test split."""
    if not ev or "abstention" not in ev:
        return None
    figures = [(f"{name}_risk_coverage", plots.risk_coverage(ev, name))]
    rows: list[list[str]] = []
    abstention = ev["abstention"]
    rows.append(["area under the risk-coverage curve (test)", f"{abstention['curve']['aurc']:.4f}"])
    if "coverage" in abstention:
        ci = abstention.get("accuracy_accepted_ci")
        interval = f" (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else ""
        rows.append(
            [
                f"abstention for {percent(abstention.get('target'))} accuracy "
                f"(threshold {abstention['threshold']:.3f}, chosen on validation)",
                f"coverage {percent(abstention['coverage'])}; accuracy of the accepted "
                f"{percent(abstention['accuracy_accepted'])}{interval}",
            ]
        )
    point = ev.get("urgent_operating_point")
    if point:
        rows.append(
            [
                f"urgent at summed urgent probability >= {point['threshold']:.3f} (for "
                f"{percent(point.get('target_sensitivity'))} sensitivity on validation)",
                f"sensitivity {percent(point['sensitivity'])}, specificity {percent(point['specificity'])} "
                f"on test; the most likely class alone: {percent(point['plain_sensitivity'])} / "
                f"{percent(point['plain_specificity'])}",
            ]
        )
    ood = ev.get("ood")
    if ood:
        figures.append((f"{name}_ood", plots.ood_scores(ev, name)))
        rows.append(
            [
                f"flagged as unlike the training data (threshold {ood['threshold']:.2f})",
                f"{ood['flagged']} of {len(ood['scores'])} test scans ({ood['by_cheap_checks']} by the cheap checks)",
            ]
        )
    text = (
        "The limits the bundle knows of itself, chosen on validation and measured on the test split: confidence "
        "below the abstention threshold is referred to a human; the urgent operating point trades specificity for "
        "sensitivity; the out-of-distribution score (1 = a typical training image) flags scans unlike the training "
        "data, which get no class call."
    )
    return Section(f"{name}: safety at the door", text, tables=[(["", "test split"], rows)], figures=figures)
