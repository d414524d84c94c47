import math

import numpy as np
import pytest

from octattn.evaluation.calibration import fit_temperature, softmax
from octattn.evaluation.metrics import (
    classification_report,
    expected_calibration_error,
    headline_metrics,
    specificity_per_class,
)
from octattn.evaluation.uncertainty import (
    mcnemar_exact,
    paired_bootstrap_difference,
    patient_bootstrap,
    patient_bootstrap_mean,
)


def _onehot_probs(preds, k=4, confidence=0.7):
    probs = np.full((len(preds), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(preds)), preds] = confidence
    return probs


# truth:      CNV CNV DME DME DRUSEN NORMAL NORMAL NORMAL
# prediction: CNV DME DME DME NORMAL NORMAL NORMAL CNV
LABELS = np.array([0, 0, 1, 1, 2, 3, 3, 3])
PREDS = np.array([0, 1, 1, 1, 3, 3, 3, 0])


def test_hand_computed_case():
    report = classification_report(LABELS, _onehot_probs(PREDS))
    pc = report["per_class"]
    # CNV: TP 1, FP 1 (a NORMAL), FN 1 -> precision 1/2, recall 1/2; TN = 8 - 1 - 1 - 1 = 5 -> spec 5/6
    assert (pc["CNV"]["precision"], pc["CNV"]["recall"]) == (0.5, 0.5)
    assert pc["CNV"]["specificity"] == pytest.approx(5 / 6)
    # DME: TP 2, FP 1 -> precision 2/3, recall 1; DRUSEN: never predicted -> precision 0, recall 0
    assert pc["DME"]["precision"] == pytest.approx(2 / 3) and pc["DME"]["recall"] == 1.0
    assert pc["DRUSEN"]["precision"] == 0.0 and pc["DRUSEN"]["recall"] == 0.0
    # NORMAL: TP 2, FP 1 (the DRUSEN), FN 1 -> 2/3, 2/3
    assert pc["NORMAL"]["precision"] == pytest.approx(2 / 3) and pc["NORMAL"]["recall"] == pytest.approx(2 / 3)
    assert report["accuracy"] == 5 / 8
    assert report["precision"] == pytest.approx((0.5 + 2 / 3 + 0 + 2 / 3) / 4)
    assert report["recall"] == pytest.approx((0.5 + 1 + 0 + 2 / 3) / 4)
    assert report["confusion_matrix"][3] == [1, 0, 0, 2]
    # Referral: urgent truth = first 4; called urgent = CNV/DME predictions = rows 0,1,2,3,7
    assert report["referral"]["sensitivity"] == 1.0
    assert report["referral"]["specificity"] == pytest.approx(3 / 4)


def test_specificity_from_confusion():
    cm = np.array([[5, 1], [2, 2]])
    # class 0: TP 5, FN 1, FP 2, TN 2 -> 2/4; class 1: TP 2, FN 2, FP 1, TN 5 -> 5/6
    np.testing.assert_allclose(specificity_per_class(cm), [0.5, 5 / 6])


def test_auc_perfect_and_undefined():
    labels = np.array([0, 1, 2, 3] * 3)
    report = classification_report(labels, _onehot_probs(labels, confidence=0.9))
    assert report["auc_macro"] == 1.0 and report["auc_micro"] == 1.0
    single = classification_report(np.zeros(4, dtype=int), _onehot_probs(np.zeros(4, dtype=int)))
    assert math.isnan(single["per_class"]["CNV"]["auc"])


def test_expected_calibration_error():
    labels = np.array([0, 0, 1, 1])
    probs = _onehot_probs(np.array([0, 1, 0, 1]), confidence=0.8)  # 80% confident, 50% right
    assert expected_calibration_error(labels, probs) == pytest.approx(0.3)
    assert expected_calibration_error(labels, _onehot_probs(labels, confidence=1.0)) == pytest.approx(0.0)


def test_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits, 2.0)])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_patient_bootstrap_is_wider_than_pretending_images_are_independent():
    # 10 patients x 10 identical scans: the evidence is 10 outcomes, not 100.
    labels = np.repeat(np.arange(10) % 4, 10)
    preds = labels.copy()
    preds[:30] = (preds[:30] + 1) % 4  # three patients wrong
    probs = _onehot_probs(preds)
    by_patient = patient_bootstrap(labels, probs, [str(i // 10) for i in range(100)], resamples=300)
    by_image = patient_bootstrap(labels, probs, [str(i) for i in range(100)], resamples=300)
    width = lambda ci: ci["accuracy"]["high"] - ci["accuracy"]["low"]  # noqa: E731
    assert by_patient["accuracy"]["low"] <= 0.7 <= by_patient["accuracy"]["high"]
    assert width(by_patient) > 1.5 * width(by_image)
    assert by_patient["_bootstrap"] == {"resamples": 300, "seed": 0, "level": 0.95, "groups": 10}


def test_mcnemar_exact():
    a = np.array([True] * 10 + [False] * 6)
    b = np.array([True] * 16)
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"]) == (0, 6)
    assert result["p_value"] == pytest.approx(2 * 0.5**6)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_difference_in_plain_words():
    labels = np.repeat(np.arange(4), 25)
    probs_a = _onehot_probs(labels)
    wrong = labels.copy()
    wrong[::5] = (wrong[::5] + 1) % 4
    probs_b = _onehot_probs(wrong)
    groups = [str(i) for i in range(100)]
    accuracy, _ = paired_bootstrap_difference(labels, probs_a, probs_b, groups, resamples=300)
    assert accuracy.difference == pytest.approx(-0.2)
    assert accuracy.shown and accuracy.high < 0
    sentence = accuracy.sentence("A", "B")
    assert sentence.startswith("accuracy: A is better than B by 20.0 points, 95% CI -")
    same, _ = paired_bootstrap_difference(labels, probs_a, probs_a, groups, resamples=50)
    assert not same.shown and "not shown" in same.sentence()


def test_the_paired_interval_of_correct_differences_is_compares_accuracy_interval():
    """Benchmarks keep which scans each model got right, not its probabilities: the patient
    bootstrap of ``correct_b - correct_a`` draws the same patients as ``octattn compare`` and
    gives its accuracy interval exactly."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 120)
    preds_a, preds_b = labels.copy(), labels.copy()
    preds_a[rng.random(120) < 0.4] = 0
    preds_b[rng.random(120) < 0.2] = 0
    groups = [str(i // 3) for i in range(120)]  # 40 patients, 3 scans each
    accuracy, _ = paired_bootstrap_difference(
        labels, _onehot_probs(preds_a), _onehot_probs(preds_b), groups, resamples=200
    )
    correct = (preds_b == labels).astype(float) - (preds_a == labels)
    assert patient_bootstrap_mean(correct, groups, resamples=200) == pytest.approx((accuracy.low, accuracy.high))
    assert patient_bootstrap_mean(np.zeros(120), groups) == (0.0, 0.0)


@pytest.mark.parametrize(("n", "k", "present"), [(1, 4, 1), (5, 4, 2), (40, 4, 4), (300, 7, 5), (12, 2, 2)])
def test_headline_metrics_are_scikit_learns(n, k, present):
    """The bootstraps' fast path (one bincount) gives what scikit-learn gives, classes absent
    from the truth or the calls included (0 where undefined, averaged over all K classes)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(n * k)
    labels = rng.integers(0, present, n)
    probs = rng.dirichlet(np.ones(k), n)
    preds = probs.argmax(1)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=list(range(k)), zero_division=0)
    got = headline_metrics(labels, probs)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert got["precision"] == pytest.approx(np.mean(precision))
    assert got["recall"] == pytest.approx(np.mean(recall))
    assert got["f1"] == pytest.approx(np.mean(f1))
    assert set(got) == {"accuracy", "precision", "recall", "f1", "specificity"}
