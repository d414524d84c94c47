"""The class-prior correction: undoing what a balanced sampler or loss weights do to the outputs."""

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import f1_score

from octattn.errors import OctattnError
from octattn.evaluation.calibration import fit_prior_power, prior_shift, softmax
from octattn.inference.bundle import read_bundle_config
from octattn.inference.predictor import Predictor
from octattn.training.run_data import trained_class_counts
from tests.conftest import link_weights


def test_the_shift_is_zero_where_the_frequencies_agree_and_the_log_ratio_where_not():
    assert prior_shift([30, 30, 30], [10, 10, 10]) == pytest.approx([0, 0, 0])
    shift = prior_shift([90, 10], [50, 50])
    assert shift == pytest.approx([np.log(0.9 / 0.5), np.log(0.1 / 0.5)])
    assert np.isfinite(prior_shift([10, 0], [5, 5])).all()  # a class with no scan stays finite


def test_what_the_loss_saw_is_equal_shares_under_the_sampler_and_loss_weights_and_the_counts_otherwise():
    labels = [0] * 6 + [1] * 2  # class 2 has none
    assert trained_class_counts(labels, 3, "sampler") == [4.0, 4.0, 0.0]
    assert trained_class_counts(labels, 3, "loss_weights") == [4.0, 4.0, 0.0]
    assert trained_class_counts(labels, 3, "none") == [6.0, 2.0, 0.0]
    assert trained_class_counts(labels, 3, "triple") == [6.0, 2.0, 0.0]  # the copies are in labels


def _over_calling_rare_class(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A balanced-trained model on natural frequencies: 180 common scans, 20 rare; the rare
    class's logit is lifted by 1.5 for everyone, as a balanced sampler does."""
    labels = np.array([0] * 180 + [1] * 20)
    logits = rng.normal(0, 1, (200, 2))
    logits[np.arange(200), labels] += 1.5
    logits[:, 1] += 1.5
    return logits, labels


def test_the_fitted_power_takes_back_the_over_calls_and_raises_macro_f1():
    logits, labels = _over_calling_rare_class(np.random.default_rng(0))
    shift = prior_shift([180, 20], [100, 100])
    power = fit_prior_power(logits, labels, 1.0, shift)
    before = f1_score(labels, logits.argmax(1), average="macro")
    after = f1_score(labels, (logits + power * shift).argmax(1), average="macro")
    assert 0 < power <= 1 and after > before + 0.1
    # nothing to take back: the smallest power wins the tie
    assert fit_prior_power(np.eye(2)[labels] * 5, labels, 1.0, shift) == 0.0


def test_the_bias_moves_the_softmax_and_the_temperature_still_applies():
    logits = np.array([[2.0, 0.0]])
    assert softmax(logits, 1.0, [0.0, 3.0]).argmax() == 1
    assert softmax(logits, 2.0, []) == pytest.approx(softmax(logits / 2.0))


def test_a_bundle_keeps_its_correction_and_its_predictions_follow_it(bundle, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundle, folder, copy_function=link_weights)
    assert read_bundle_config(folder).prior_power is None and read_bundle_config(folder).logit_bias == []
    stored = json.loads((folder / "config.json").read_text())
    stored["octattn"]["calibration"].update(prior_power=0.5, logit_bias=[0.0, 0.0, 0.0, 50.0])
    (folder / "config.json").write_text(json.dumps(stored))
    config = read_bundle_config(folder)
    assert config.prior_power == 0.5 and config.to_dict()["octattn"]["calibration"]["logit_bias"][3] == 50.0
    predictor = Predictor(folder)
    assert predictor.describe("x", np.array([5.0, 1.0, 0.0, -1.0])).label == predictor.class_names[3]
    stored["octattn"]["calibration"]["logit_bias"] = [0.0, 1.0]
    (folder / "config.json").write_text(json.dumps(stored))
    with pytest.raises(OctattnError, match="logit_bias has 2 values for 4 classes"):
        read_bundle_config(folder)
