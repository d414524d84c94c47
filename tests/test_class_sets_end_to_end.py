"""A model of OCTDL's seven classes, end to end on the real OCTDL sample: train, evaluate, report,
predict, serve and export all speak its classes; and an OCT2017 model evaluated on OCTDL
through a class map."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from octattn.cli import main
from octattn.evaluation.evaluate import evaluate_model, format_headline
from octattn.inference.bundle import read_bundle_config
from octattn.inference.onnx_export import OnnxPredictor, export_onnx
from octattn.inference.publish import model_card
from octattn.serve.app import create_app
from tests.conftest import WRITES_RUNS
from tests.data.test_class_sets import OCTDL_CLASSES, OCTDL_MINI

pytestmark = WRITES_RUNS

TINY_7 = [
    "pretrained=false",
    "policy=paper",  # optimizer state for the last blocks only: a smaller checkpoint while it trains
    "image_size=75",
    "epochs=1",
    "batch_size=8",
    "num_workers=0",
    "val_fraction=0.3",
    "balance=loss_weights",
    "prior_correction=true",
    "amp=off",
    "keep_checkpoint=false",
    "referral={AMD: urgent, DME: urgent, RVO: urgent, RAO: urgent, NO: observation}",
]


@pytest.fixture(scope="module")
def octdl_run(tmp_path_factory) -> Iterator[Path]:
    if not OCTDL_MINI.is_dir():
        pytest.skip(f"OCTDL sample not found at {OCTDL_MINI} (only present on the project's machines)")
    run = tmp_path_factory.mktemp("octdl") / "run"
    assert main(["--quiet", "train", "--data", str(OCTDL_MINI), "--out", str(run), *TINY_7]) == 0
    yield run
    shutil.rmtree(run.parent, ignore_errors=True)


def test_the_bundle_carries_the_classes_and_their_tiers(octdl_run):
    config = read_bundle_config(octdl_run / "model")
    assert tuple(config.class_names) == OCTDL_CLASSES
    stored = json.loads((octdl_run / "model" / "config.json").read_text())
    assert stored["label_names"] == list(OCTDL_CLASSES) and stored["num_classes"] == 7
    assert config.referral["AMD"] == "urgent" and config.referral["ERM"] is None  # no tier, not a wrong one
    # octdl-mini is balanced, so the loss weights changed no frequency: a correction of zero
    assert 0 <= config.prior_power <= 1 and config.logit_bias == pytest.approx([0.0] * 7)
    card = model_card(octdl_run / "model", "org/octdl")
    assert "AMD, DME, ERM, NO, RAO, RVO, VID" in card and "ERM none" in card


def test_evaluate_and_report_in_the_models_classes(octdl_run, tmp_path, capsys):
    assert main(["--quiet", "evaluate", str(octdl_run), "--data", str(OCTDL_MINI)]) == 0
    metrics = json.loads((octdl_run / "evaluation" / "metrics.json").read_text())
    assert metrics["class_names"] == list(OCTDL_CLASSES) and metrics["n"] == 70
    assert len(metrics["confusion_matrix"]) == 7 and metrics["referral"]["urgent_classes"] == [
        "AMD",
        "DME",
        "RAO",
        "RVO",
    ]
    assert set(metrics["ci_recall"]) >= {f"recall {c}" for c in OCTDL_CLASSES}
    header = next(csv.reader((octdl_run / "evaluation" / "predictions.csv").open()))
    assert [h for h in header if h.startswith("p_")] == [f"p_{c}" for c in OCTDL_CLASSES]
    assert main(["--quiet", "report", str(octdl_run), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| NO |" in report or "NO |" in report
    assert all(f"| {c} " in report or f" {c} |" in report for c in OCTDL_CLASSES), report[:3000]


def test_predict_serve_and_onnx_speak_the_classes(octdl_run, tmp_path):
    scans = sorted((OCTDL_MINI / "RAO").iterdir())[:3]
    out = tmp_path / "p.csv"
    assert main(["--quiet", "predict", str(octdl_run), *map(str, scans), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [k for k in rows[0] if k.startswith("p_")] == [f"p_{c}" for c in OCTDL_CLASSES]
    tiers = read_bundle_config(octdl_run / "model").referral
    for r in rows:  # each class's own tier (none where it has none), unless a safety rule decided
        if r["class"] == "not assessed":
            assert r["referral"].startswith("not assessed: unlike the training data")
        else:
            assert r["referral"] in {tiers[r["class"]] or "none", "urgent", "uncertain: refer to a human"}

    client = TestClient(create_app(octdl_run))
    assert client.get("/v1/model").json()["class_names"] == list(OCTDL_CLASSES)
    body = client.post("/v1/predict", files={"file": ("s.jpg", scans[0].read_bytes(), "image/jpeg")}).json()
    assert set(body["probabilities"]) == set(OCTDL_CLASSES)

    onnx = OnnxPredictor(octdl_run, export_onnx(octdl_run, tmp_path / "m.onnx"))
    predictions = onnx.predict_files(scans).predictions
    assert set(predictions[0].probabilities) == set(OCTDL_CLASSES)


def test_an_oct2017_model_on_octdl_through_a_class_map(bundle, capsys):
    if not OCTDL_MINI.is_dir():
        pytest.skip(f"OCTDL sample not found at {OCTDL_MINI}")
    result = evaluate_model(bundle, OCTDL_MINI, "test", class_map={"NO": "NORMAL", "DME": "DME"}, resamples=50)
    assert result.report["n"] == 20 and result.report["left_out"] == {
        c: 10 for c in ("AMD", "ERM", "RAO", "RVO", "VID")
    }
    assert set(result.report["ci_recall"]) - {"_bootstrap"} == {"recall DME", "recall NORMAL"}
    # every mapped scan is counted under the model class it was given, the unmapped ones too
    predicted = result.report["predicted"]
    assert set(predicted) == {"CNV", "DME", "DRUSEN", "NORMAL"} and sum(predicted.values()) == 20
    assert predicted["NORMAL"] == int((result.probs.argmax(1) == result.class_names.index("NORMAL")).sum())
    assert "predicted as: CNV " in format_headline(result.report)
    code = main(["--quiet", "evaluate", str(bundle), "--data", str(OCTDL_MINI), "--class-map", "NO=NORMAL,XX=GLAUCOMA"])
    assert code == 2 and "GLAUCOMA, not among the model's classes" in capsys.readouterr().err
