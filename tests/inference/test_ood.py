"""Safe at the door: the detector, the cheap checks, abstention and the urgent operating point,
through predict, the Python API, the service and ONNX."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from octattn.cli import main
from octattn.data.synth import write_phantom_tree
from octattn.evaluation.evaluate import evaluate_model
from octattn.evaluation.operating_points import (
    abstention_on,
    abstention_threshold,
    risk_coverage,
    urgent_on,
    urgent_threshold,
)
from octattn.inference.checks import cheap_finding
from octattn.inference.ood import OOD_FILE, OodDetector
from octattn.inference.predictor import NOT_ASSESSED, Predictor
from octattn.reporting.report import write_report
from octattn.serve.app import create_app
from tests.conftest import link_weights


def test_detector_scores_typical_images_near_one_and_strange_ones_far(tmp_path):
    rng = np.random.default_rng(0)
    centres = [rng.normal(0, 3, 40), rng.normal(0, 3, 40)]
    labels = np.repeat([0, 1], 60)

    def draw(n: int, shift: float = 0.0) -> list[np.ndarray]:
        first = np.concatenate(
            [centres[0] + rng.normal(0, 1, (n // 2, 40)), centres[1] + rng.normal(0, 1, (n // 2, 40))]
        )
        return [first + shift, first[:, :8] * 0.5 + shift]  # two "stages"

    detector = OodDetector.fit(["a", "b"], draw(120), labels, draw(200), keep=0.99)
    typical, strange = detector.score(draw(100)), detector.score(draw(100, shift=6.0))
    assert 0.5 < float(np.median(typical)) < 2.0  # 1 = a typical training image
    assert np.mean(typical <= detector.threshold) >= 0.95
    assert np.all(strange > detector.threshold)
    assert np.mean(detector.validation_scores <= detector.threshold) >= 0.99  # the threshold keeps 99%
    detector.save(tmp_path)
    loaded = OodDetector.load(tmp_path)
    assert loaded is not None and loaded.stages == ["a", "b"] and loaded.threshold == detector.threshold
    sample = draw(10, shift=1.0)
    assert np.allclose(loaded.score(sample), detector.score(sample), rtol=1e-4)
    assert OodDetector.load(tmp_path / "none") is None


def _text_image(size=(512, 496)) -> np.ndarray:
    image = Image.new("L", size, 235)
    draw = ImageDraw.Draw(image)
    for row in range(10, size[1] - 20, 22):
        draw.text((12, row), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2, fill=20)
    return np.asarray(image)


def test_cheap_checks_say_what_they_found(tmp_path):
    assert "constant image" in (cheap_finding(np.full((496, 512), 255, np.uint8)) or "")
    assert "aspect ratio" in (
        cheap_finding(np.random.default_rng(0).integers(0, 255, (50, 2000), dtype=np.uint8)) or ""
    )
    colour = tmp_path / "photo.png"
    rgb = np.random.default_rng(2).integers(0, 120, (64, 64, 3), dtype=np.uint8)
    rgb[..., 0] += 120  # a reddish photograph with structure
    Image.fromarray(rgb).save(colour)
    gray = np.asarray(Image.open(colour).convert("L"))
    assert "colour image" in (cheap_finding(gray, colour) or "")
    assert "colour image" in (cheap_finding(gray, colour.read_bytes()) or "")  # uploads, in memory
    three_equal = tmp_path / "oct-as-rgb.png"  # OCT2017 has RGB files with three equal channels
    scan = np.random.default_rng(1).integers(0, 255, (96, 100), dtype=np.uint8)
    Image.fromarray(np.stack([scan] * 3, axis=2)).save(three_equal)
    assert cheap_finding(scan, three_equal) is None


def test_abstention_and_urgent_points_on_hand_computed_cases():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.45, 0.55]])
    labels = np.array([0, 0, 1, 1, 1])  # the 0.7 call is the one error
    assert abstention_threshold(probs, labels, 0.99) == 0.9  # accept 0.95 and 0.9 only: both right
    assert abstention_threshold(probs, labels, 0.8) == 0.55  # 4 of 5 right when all are accepted
    assert abstention_threshold(probs[2:3], labels[2:3], 0.99) == float("inf")
    point = abstention_on(probs, labels, 0.9)
    assert point["coverage"] == pytest.approx(0.4) and point["accuracy_accepted"] == 1.0
    curve = risk_coverage(probs, labels)
    assert curve["risk"][-1] == pytest.approx(0.2) and curve["coverage"][-1] == 1.0
    threshold = urgent_threshold(probs, labels, [1], 0.95)  # urgent scores of the urgent scans: .3, .6, .55
    assert threshold == pytest.approx(0.3)
    at = urgent_on(probs, labels, [1], threshold)
    assert at["sensitivity"] == 1.0 and at["specificity"] == 1.0 and at["plain_sensitivity"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def guarded(bundle, tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """A copy of the test bundle with a detector fitted by `octattn fit-ood` on phantoms."""
    root = tmp_path_factory.mktemp("ood")
    model = root / "model"
    shutil.copytree(bundle, model, copy_function=link_weights)
    phantoms = root / "phantoms"
    write_phantom_tree(phantoms, {"train": 12, "test": 3}, seed=3, size=(96, 93))
    assert main(["--quiet", "fit-ood", str(model), "--data", str(phantoms)]) == 0
    yield model, phantoms
    shutil.rmtree(root, ignore_errors=True)


def test_fit_ood_writes_a_detector_and_operating_points(guarded):
    model, _ = guarded
    assert (model / OOD_FILE).is_file()
    decision = json.loads((model / "config.json").read_text())["octattn"]["decision"]
    assert {"abstain_threshold", "urgent_threshold", "volume"} <= set(decision)
    assert decision["abstain_target_accuracy"] == 0.99 and decision["urgent_sensitivity"] == 0.95


def test_flagged_scans_get_no_class_or_tier_unless_asked(guarded, tmp_path, capsys):
    model, phantoms = guarded
    white = tmp_path / "white.png"
    Image.new("L", (512, 496), 255).save(white)
    text = tmp_path / "text.png"
    Image.fromarray(_text_image()).save(text)
    scans = sorted((phantoms / "test").rglob("*.png"))[:4]
    out = tmp_path / "p.csv"
    assert main(["--quiet", "predict", str(model), str(white), str(text), *map(str, scans), "--out", str(out)]) == 0
    rows = {Path(r["source"]).name: r for r in csv.DictReader(out.open())}
    assert rows["white.png"]["class"] == NOT_ASSESSED and rows["white.png"]["ood"] == "true"
    assert rows["white.png"]["referral"].startswith("not assessed: unlike the training data (a constant image")
    assert float(rows["white.png"]["p_CNV"]) >= 0  # the probabilities are still written
    assert all(rows[s.name]["ood_score"] for s in scans)
    assert "flagged as unlike the training data" in capsys.readouterr().out
    allowed = Predictor(model, allow_ood=True).predict_files([white]).predictions[0]
    assert allowed.ood is True and allowed.label in {"CNV", "DME", "DRUSEN", "NORMAL"}


def test_the_detector_flags_text_and_keeps_its_own_phantoms(guarded):
    model, phantoms = guarded
    predictor = Predictor(model)
    own = predictor.predict_files(sorted((phantoms / "test").rglob("*.png"))).predictions
    text = predictor.predict_arrays([_text_image()], ["text"])[0]
    assert text.ood is True and text.ood_reason.startswith("score")  # no cheap check fired: the detector did
    assert np.mean([p.ood for p in own]) <= 0.5


def test_a_bundle_without_a_detector_says_so(bundle, real_data, capsys):
    scan = next((real_data / "test" / "DME").iterdir())
    assert main(["predict", str(bundle), str(scan)]) == 0
    assert "no out-of-distribution detector" in capsys.readouterr().out
    assert Predictor(bundle).predict_files([scan]).predictions[0].ood is None


def test_service_and_onnx_carry_the_flag(guarded, bundle_onnx, tmp_path):
    model, _ = guarded
    client = TestClient(create_app(model))
    assert client.get("/v1/model").json()["ood_detector"] is True
    buffer = tmp_path / "w.png"
    Image.new("L", (300, 300), 0).save(buffer)
    body = client.post("/v1/predict", files={"file": ("w.png", buffer.read_bytes(), "image/png")}).json()
    assert body["ood"] is True and body["class"] == NOT_ASSESSED and "constant image" in body["ood_reason"]

    from octattn.inference.onnx_export import OnnxPredictor

    onnx = OnnxPredictor(model, bundle_onnx)  # the copy's weights are the bundle's: the same graph
    image = _text_image()
    torch_score = Predictor(model).predict_arrays([image], ["t"])[0].ood_score
    onnx_score = onnx.predict_arrays([image], ["t"])[0].ood_score
    assert torch_score is not None and onnx_score == pytest.approx(torch_score, rel=1e-3)


def test_evaluation_and_report_show_the_limits(guarded, tmp_path):
    model, phantoms = guarded
    run = tmp_path / "run"
    shutil.copytree(model, run / "model")
    result = evaluate_model(run, phantoms, "test", resamples=30)
    report = result.report
    assert report["ood"]["flagged"] <= len(report["ood"]["scores"]) == report["n"]
    assert 0 <= report["abstention"]["coverage"] <= 1 and report["abstention"]["target"] == 0.99
    assert "specificity" in report["urgent_operating_point"]
    from octattn.evaluation.evaluate import write_evaluation
    from octattn.training.config import load_config, save_config

    write_evaluation(result, run / "evaluation")
    save_config(load_config(None, [f"data={phantoms}"]), run / "config.yaml")  # a run folder, as training leaves it
    page = write_report([run], tmp_path / "report")
    text = (page.parent / "report.md").read_text()
    assert "safety at the door" in text and "risk_coverage" in text and "_ood.png" in text
