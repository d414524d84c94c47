"""Precision chosen by the machine (bf16 where native) and int8 through ONNX Runtime."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from octattn import precision
from octattn.cli import main
from octattn.errors import OctattnError
from octattn.inference.onnx_export import OnnxPredictor, export_onnx, make_predictor
from octattn.inference.predictor import Predictor
from tests.conftest import WRITES_RUNS


@pytest.fixture(scope="module")
def confident_bundle(bundle, tmp_path_factory):
    """The test bundle with a 30x classifier: clear margins between classes, so that
    agreement of classes between precisions is a real check, not a coin toss."""
    folder = tmp_path_factory.mktemp("confident") / "model"
    shutil.copytree(bundle, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    state = load_file(str(bundle / "model.safetensors"))
    state["last_linear.weight"] = state["last_linear.weight"] * 30
    save_file(state, str(folder / "model.safetensors"))
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)  # 0.2 GB: gone with the module


def _real_scans(real_data, count=12):
    return [p for c in ("CNV", "DME", "DRUSEN", "NORMAL") for p in sorted((real_data / "test" / c).iterdir())[:3]][
        :count
    ]


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_hardware(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("fp32", "cpu") == "fp32" and precision.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp16", "cpu")


def test_native_bf16_is_read_from_the_cpu_not_the_vendor(monkeypatch):
    precision.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_has_native_bf16() is True  # AMX alone is enough
    precision.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert precision.cpu_has_native_bf16() is False
    precision.cpu_has_native_bf16.cache_clear()


def test_bf16_agrees_with_fp32_on_real_scans(confident_bundle, real_data):
    """bf16 moves no probability by more than 0.05, and it really ran in bf16 (the outputs
    differ). Class agreement on trained models is measured by benchmarks/inference.py: this
    untrained bundle's calls are near-ties, where agreement means nothing."""
    scans = _real_scans(real_data)
    fp32 = Predictor(confident_bundle, precision="fp32").predict_files(scans).predictions
    bf16 = Predictor(confident_bundle, precision="bf16").predict_files(scans).predictions
    worst = max(
        abs(a.probabilities[c] - b.probabilities[c]) for a, b in zip(fp32, bf16, strict=True) for c in a.probabilities
    )
    assert 0 < worst < 0.05


def test_evaluation_report_keeps_the_precision_metric_apart_from_the_arithmetic(confident_bundle, real_data):
    from octattn.evaluation.evaluate import evaluate_model, format_headline

    result = evaluate_model(confident_bundle, real_data, precision="bf16", resamples=20)
    assert isinstance(result.report["precision"], float) and 0.0 <= result.report["precision"] <= 1.0
    assert result.report["arithmetic"] == "bf16"
    assert "precision" in format_headline(result.report)


@WRITES_RUNS  # 0.73 GB at once: the prepared graph, onnxruntime's pre-processing and calibration copies
def test_int8_onnx_agrees_with_fp32_on_real_scans(demo_dir, real_data, tmp_path, capsys, monkeypatch):
    """A model trained for one epoch at 75 px (the demo's code path): the measurement on the
    real demo model at its own size is the benchmark's (benchmarks/inference.py)."""
    import onnxruntime.quantization

    scratch: list[str] = []
    quantize = onnxruntime.quantization.quantize_static

    def watched(model_input, *args, **kwargs):  # what the scratch folder holds while quantising
        scratch.extend(sorted(path.name for path in Path(model_input).parent.iterdir()))
        return quantize(model_input, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", watched)
    model = demo_dir / "run"
    out = tmp_path / "int8.onnx"
    assert main(["export", str(model), str(out), "--quantize", "int8", "--calibration", str(real_data / "train")]) == 0
    assert "int8 (QDQ, per-channel weights)" in capsys.readouterr().out
    assert scratch == ["prepared.onnx"]  # the fp32 export is gone by then: one model-sized file less on disk
    import onnx

    graph = onnx.load(str(out)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 100
    scans = _real_scans(real_data)
    fp32 = Predictor(model).predict_files(scans).predictions
    int8 = OnnxPredictor(model, out).predict_files(scans, batch_size=5).predictions
    agree = np.mean([a.label == b.label for a, b in zip(fp32, int8, strict=True)])
    assert agree >= 0.8  # 11 of 12 measured
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in int8)
    assert main(["predict", str(model), str(scans[0]), "--backend", "onnxruntime", "--onnx", str(out)]) == 0


def test_int8_errors_are_one_line(confident_bundle, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no scans here")
    assert (
        main(
            [
                "export",
                str(confident_bundle),
                str(tmp_path / "q.onnx"),
                "--quantize",
                "int8",
                "--calibration",
                str(empty),
            ]
        )
        == 2
    )
    assert f"{empty}: no readable scans to calibrate the int8 model on (1 file(s) tried)" in capsys.readouterr().err
    with pytest.raises(OctattnError, match="needs --calibration DIR"):
        export_onnx(confident_bundle, tmp_path / "q.onnx", quantize="int8")
    with pytest.raises(OctattnError, match="bf16 runs in the torch backend"):
        make_predictor(confident_bundle, "onnxruntime", tmp_path / "q.onnx", "bf16")
    assert not (tmp_path / "q.onnx").exists()


def test_service_runs_at_the_chosen_precision_or_in_onnxruntime(confident_bundle, bundle, bundle_onnx):
    from fastapi.testclient import TestClient

    from octattn.serve.app import create_app
    from tests.serve.test_app import _jpeg

    bf16 = TestClient(create_app(confident_bundle, precision="bf16"))
    assert bf16.get("/v1/model").json()["engine"] == "torch, bf16"
    assert bf16.post("/v1/predict", files={"file": ("s.jpeg", _jpeg(), "image/jpeg")}).status_code == 200
    # the suite's shared export: a second one of the same graph took 20 s and 0.24 GB of disk
    served = TestClient(create_app(bundle, backend="onnxruntime", onnx_path=bundle_onnx))
    assert served.get("/v1/model").json()["engine"] == "onnxruntime, bundle.onnx"
    assert served.post("/v1/predict", files={"file": ("s.jpeg", _jpeg(), "image/jpeg")}).status_code == 200
    explained = served.post("/v1/explain", files={"file": ("s.jpeg", _jpeg(), "image/jpeg")})
    assert explained.status_code == 200 and explained.headers["content-type"] == "image/png"
