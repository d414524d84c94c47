"""A volume's call: the count rule keeps the false urgent rate within alpha at every size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from octattn.classes import CLASS_NAMES, REFERRAL_TIER
from octattn.inference.predictor import ScanPrediction
from octattn.inference.volume_call import VolumeRule, fit_volume_rule, required_count, volume_call


def _scan(label: str, p: float, ood: bool | None = None) -> ScanPrediction:
    probs = dict.fromkeys(CLASS_NAMES, (1 - p) / 3)
    probs[label] = p
    return ScanPrediction("x", label, probs, "", ood=ood)


@pytest.mark.parametrize("n", [1, 25, 49, 97, 128, 512])
def test_required_count_bounds_the_false_rate_at_every_size(n):
    m = required_count(n, 0.01, 0.01)
    assert binom.sf(m - 1, n, 0.01) <= 0.01  # a normal volume reaches m with probability <= alpha
    assert m == 1 or binom.sf(m - 2, n, 0.01) > 0.01  # and m is the smallest such count


def test_the_false_urgent_rate_does_not_grow_with_the_number_of_bscans():
    """Simulated normal volumes whose B-scans each say CNV with probability 1%: the old rule's
    false rate grows with the size, the count rule's stays within alpha."""
    rng = np.random.default_rng(0)
    rule, old = VolumeRule("count", false_rates=dict.fromkeys(CLASS_NAMES, 0.01)), VolumeRule("any")
    rates: dict[str, list[float]] = {"count": [], "any": []}
    for n in (25, 49, 97, 128):
        false = {"count": 0, "any": 0}
        for _ in range(300):
            scans = [_scan("CNV", 0.9) if rng.random() < 0.01 else _scan("NORMAL", 0.9) for _ in range(n)]
            false["count"] += volume_call(scans, REFERRAL_TIER, rule)[0] == "CNV"
            false["any"] += volume_call(scans, REFERRAL_TIER, old)[0] == "CNV"
        for kind in rates:
            rates[kind].append(false[kind] / 300)
    assert max(rates["count"]) <= 0.03  # alpha = 0.01, with room for 300 draws
    assert rates["any"][-1] > 0.6 and rates["any"][-1] > rates["any"][0]  # 1 - 0.99^128 = 72%


def test_a_lesion_in_a_few_bscans_still_decides():
    rule = VolumeRule("count", false_rates=dict.fromkeys(CLASS_NAMES, 0.005))
    m = required_count(97, 0.005, rule.alpha)
    scans = [_scan("NORMAL", 0.9)] * (97 - m) + [_scan("CNV", 0.8)] * m
    assert volume_call(scans, REFERRAL_TIER, rule) == ("CNV", list(range(97 - m, 97)))
    assert m <= 4
    fewer = [_scan("NORMAL", 0.9)] * (98 - m) + [_scan("CNV", 0.8)] * (m - 1)
    assert volume_call(fewer, REFERRAL_TIER, rule)[0] == "NORMAL"


def test_flagged_bscans_take_no_part():
    scans = [_scan("NORMAL", 0.9)] * 5 + [_scan("CNV", 0.95, ood=True)] * 5
    assert volume_call(scans, REFERRAL_TIER, VolumeRule("any"))[0] == "NORMAL"


def test_false_rates_are_measured_on_validation_and_never_zero():
    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.6, 0.1, 0.1, 0.2], [0.1, 0.1, 0.1, 0.7], [0.2, 0.1, 0.1, 0.6]])
    labels = np.array([0, 0, 3, 3])
    rule = fit_volume_rule(probs, labels, CLASS_NAMES)
    assert rule.false_rates["CNV"] == pytest.approx(0.5 / 3)  # no NORMAL scan called CNV: (0 + 1/2) / (2 + 1)
    assert rule.false_rates["NORMAL"] == pytest.approx(0.5 / 3)
    assert VolumeRule.from_dict(rule.to_dict()) == rule
