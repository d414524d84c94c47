"""Ensemble bundles: several trained networks as one model for predict, evaluate, serve,
explain and ONNX, equal to the mean of the members' calibrated probabilities."""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.real_scans import averaged
from fastapi.testclient import TestClient

from octattn.cli import main
from octattn.data.synth import write_phantom_tree
from octattn.errors import OctattnError
from octattn.evaluation.evaluate import evaluate_model
from octattn.explain.run import saliency_maps
from octattn.inference.bundle import CONFIG_FILE, load_bundle, read_bundle_config
from octattn.inference.ensemble import build_ensemble
from octattn.inference.onnx_export import OnnxPredictor, export_onnx
from octattn.inference.predictor import Predictor
from octattn.inference.publish import stage_upload
from octattn.models.ensemble import ProbabilityEnsemble
from octattn.serve.app import create_app
from tests.conftest import WRITES_RUNS
from tests.model_fixtures import make_bundle

pytestmark = WRITES_RUNS


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> Iterator[list[Path]]:
    """Two plain Inception-v4 bundles (seeds 0, 1; plain: its ONNX export is a third faster
    than the attention model's); the second with a temperature and a prior correction, so that
    each member's own calibration must be applied inside the ensemble."""
    root = tmp_path_factory.mktemp("members")
    first = make_bundle(root / "a", name="inception_v4", seed=0)
    second = make_bundle(root / "b", name="inception_v4", seed=1)
    config = json.loads((second / CONFIG_FILE).read_text())
    config["octattn"]["calibration"] = {"temperature": 0.5, "prior_power": 1.0, "logit_bias": [0.3, -0.2, 0.1, 0.0]}
    (second / CONFIG_FILE).write_text(json.dumps(config))
    yield [first, second]
    shutil.rmtree(root, ignore_errors=True)  # 0.33 GB: gone with the module, not at the session's end


@pytest.fixture(scope="module")
def ensemble(members, tmp_path_factory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("ensemble") / "ens"
    build_ensemble(members, out)
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)


def _probs(predictor: Predictor, batch: torch.Tensor) -> np.ndarray:
    return predictor.probabilities(predictor.logits(batch))


def test_ensemble_is_the_mean_of_its_members_calibrated_probabilities(members, ensemble):
    batch = torch.randn(4, 1, 75, 75)
    expected = np.mean([_probs(Predictor(m), batch) for m in members], axis=0)
    got = _probs(Predictor(ensemble), batch)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # the second member's calibration matters: without it the mean is another one
    uncalibrated = np.mean([torch.softmax(load_bundle(m)[0](batch), 1).detach().numpy() for m in members], axis=0)
    assert np.abs(got - uncalibrated).max() > 1e-3
    model, config = load_bundle(ensemble)
    assert isinstance(model, ProbabilityEnsemble) and len(model.members) == 2
    assert config.temperature == 1.0 and config.prior_power is None and config.ensemble == ["members/0", "members/1"]
    # flip TTA averages calibrated probabilities too: the ensemble with TTA is the mean of its
    # members with TTA (the benchmark's reading) and each is the mean of its two views
    flipped = batch.flip(-1)
    views = [(_probs(Predictor(m), batch) + _probs(Predictor(m), flipped)) / 2 for m in members]
    np.testing.assert_allclose(_probs(Predictor(ensemble, tta=True), batch), np.mean(views, axis=0), atol=1e-6)


def test_flip_tta_averages_the_two_views_calibrated_probabilities(members):
    """Not softmax(mean of raw probabilities / T): the temperature was fitted on one view's
    logits, and only the mean of calibrated probabilities commutes with an ensemble's mean."""
    predictor = Predictor(members[1], tta=True)  # temperature 0.5 and a logit bias
    scale = torch.tensor([3.0, -1.0, 0.5, 0.0])

    def forward(batch: torch.Tensor) -> np.ndarray:  # left half minus right half: a flip turns its sign
        half = batch.shape[-1] // 2
        side = batch[..., :half].mean((1, 2, 3)) - batch[..., -half:].mean((1, 2, 3))
        return (side[:, None] * scale).numpy()

    predictor.forward = forward  # type: ignore[method-assign]
    batch = torch.linspace(0, 1, 75).expand(2, 1, 75, 75).clone()
    expected = (predictor.probabilities(forward(batch)) + predictor.probabilities(forward(batch.flip(-1)))) / 2
    np.testing.assert_allclose(_probs(predictor, batch), expected, atol=1e-9)


def test_evaluating_an_ensemble_gives_what_the_benchmark_averages(members, ensemble, real_data):
    """real_scans' seed-ensemble headline (averaged probabilities) is what this bundle scores."""
    runs = [evaluate_model(m, real_data, "test", resamples=10) for m in members]
    as_one = evaluate_model(ensemble, real_data, "test", resamples=10)
    benchmark = averaged(
        [{"paths": [str(s.path) for s in r.samples], "groups": [], "labels": [], "probs": r.probs} for r in runs]
    )
    np.testing.assert_allclose(as_one.probs, np.asarray(benchmark["probs"]), atol=1e-5)


def test_ensemble_exports_to_onnx_and_scores_alike(ensemble, tmp_path):
    onnx_path = export_onnx(ensemble, tmp_path / "ens.onnx")
    batch = torch.randn(3, 1, 75, 75)
    torch_probs = _probs(Predictor(ensemble), batch)
    onnx_probs = _probs(OnnxPredictor(ensemble, onnx_path), batch)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)


def test_ensemble_is_served_and_explained(ensemble, bundle, plain_bundle, real_data, tmp_path):
    client = TestClient(create_app(ensemble))
    info = client.get("/v1/model").json()
    assert info["ensemble_members"] == 2 and info["model"].startswith("ens@")
    scan = next((real_data / "test" / "DME").iterdir()).read_bytes()
    body = client.post("/v1/predict", files={"file": ("scan.jpeg", scan, "image/jpeg")}).json()
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-6
    attention = tmp_path / "attention"
    build_ensemble([bundle, plain_bundle], attention)  # the suite's own bundles: no third 0.2 GB model on disk
    scan = np.random.default_rng(0).integers(0, 255, (90, 120), dtype=np.uint8)
    maps = saliency_maps(Predictor(attention), scan)  # the first member's masks, Grad-CAM at its layer
    assert "gradcam" in maps and any(name.startswith("attention_after") for name in maps)
    assert np.isfinite(maps["gradcam"]).all() and maps["gradcam"].shape == scan.shape


def test_ensemble_cli_predicts_and_never_overwrites(members, tmp_path, real_data, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 0
    assert "2 members" in capsys.readouterr().out
    scan = next((real_data / "test" / "NORMAL").iterdir())
    assert main(["predict", str(out), str(scan), "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().count("\n") == 2
    assert main(["compare", str(out), str(members[0]), "--data", str(real_data)]) == 0
    assert "McNemar" in capsys.readouterr().out
    weights = (out / "members" / "0" / "model.safetensors").read_bytes()
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "members" / "0" / "model.safetensors").read_bytes() == weights


def test_ensemble_with_data_chooses_its_own_operating_points(members, tmp_path, real_data):
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--data", str(real_data)]) == 0
    config = read_bundle_config(out)
    assert "abstain_threshold" in config.decision and (out / "ood.safetensors").is_file()
    assert Predictor(out).ood is not None


def test_members_that_disagree_are_refused(members, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(members[1], other)
    config = json.loads((other / CONFIG_FILE).read_text())
    config["octattn"]["class_names"] = ["AMD", "DME", "NO", "RVO"]
    config["label_names"] = config["octattn"]["class_names"]
    (other / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(OctattnError, match=r"other: classes \['AMD'"):
        build_ensemble([members[0], other], tmp_path / "ens")
    with pytest.raises(OctattnError, match="at least two"):
        build_ensemble([members[0]], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_a_member_outside_the_bundle_or_missing_is_refused(ensemble, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ensemble, broken)
    config = json.loads((broken / CONFIG_FILE).read_text())
    config["octattn"]["ensemble"] = ["members/0", "../elsewhere"]
    (broken / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(OctattnError, match="outside the bundle"):
        load_bundle(broken)
    shutil.rmtree(broken / "members" / "1")
    config["octattn"]["ensemble"] = ["members/0", "members/1"]
    (broken / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(OctattnError, match="member missing"):
        load_bundle(broken)


def test_an_ensemble_is_not_pushed_as_one_hub_model(ensemble, tmp_path):
    with pytest.raises(OctattnError, match="push each member"):
        stage_upload(ensemble, "org/name", tmp_path / "staging")


def test_the_archive_engines_actor_runs_an_ensemble(ensemble, real_data):
    """``predict --engine ray`` loads the model in :class:`BatchPredictor` (called here
    without a cluster): an ensemble gives the local path's probabilities."""
    from octattn.inference.archive import BatchPredictor

    scans = sorted((real_data / "test" / "DME").iterdir())[:3]
    actor = BatchPredictor(str(ensemble), "torch", None, "fp32", allow_ood=False, batch_size=2, threads=1)
    rows = actor({"path": [str(p) for p in scans]})
    local = Predictor(ensemble).predict_files(scans).predictions
    assert rows["input"] == [str(p) for p in scans]
    np.testing.assert_allclose(rows["p_DME"], [p.probabilities["DME"] for p in local], atol=1e-5)


def _as_run(bundle: Path, run: Path, val: list[str]) -> Path:
    """A run folder around ``bundle`` whose split.json held out ``val``. Its files are hard
    links (0.17 GB of weights not copied): octattn replaces files, never writes into them."""
    shutil.copytree(bundle, run / "model", copy_function=os.link)
    (run / "split.json").write_text(json.dumps({"seed": 0, "val_fraction": 0.1, "train": [], "val": val}))
    return run


def test_ensemble_of_runs_fits_on_the_scans_every_member_held_out(members, tmp_path, real_data, capsys):
    scans = sorted(str(p) for p in (real_data / "train").rglob("*.jpeg"))
    shared = scans[::5]
    runs = [_as_run(m, tmp_path / f"run{i}", shared) for i, m in enumerate(members)]
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--out", str(out), "--data", str(real_data)]) == 0
    assert read_bundle_config(out).decision["chosen_on"] == f"{len(shared)} validation images"
    shutil.rmtree(out)  # 0.33 GB: one ensemble on disk at a time

    # runs trained on the data's own val split (OCTDL's): the held-out scans are in "val"
    manifest = tmp_path / "m.csv"
    rows = [f"{p},{Path(p).parent.name},{Path(p).stem},{'val' if p in shared else 'train'}\n" for p in scans]
    manifest.write_text("path,label,patient,split\n" + "".join(rows))
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "by-val"), "--data", str(manifest)]) == 0
    assert read_bundle_config(tmp_path / "by-val").decision["chosen_on"] == f"{len(shared)} validation images"

    apart = [runs[0], _as_run(members[1], tmp_path / "apart", scans[1::5])]
    assert main(["ensemble", *map(str, apart), "--out", str(tmp_path / "no"), "--data", str(real_data)]) == 2
    assert "different validation scans" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_fit_ood_on_a_run_chooses_its_points_on_the_scans_the_run_held_out(members, tmp_path, real_data, capsys):
    """A new share of the run's own data would hold scans it trained on (optimistic points)."""
    scans = sorted(str(p) for p in (real_data / "train").rglob("*.jpeg"))
    held_out = scans[::4]
    run = _as_run(members[0], tmp_path / "run", held_out)
    assert main(["fit-ood", str(run), "--data", str(real_data)]) == 0
    assert read_bundle_config(run / "model").decision["chosen_on"] == f"{len(held_out)} validation images"
    assert "new patient-grouped share" not in capsys.readouterr().out
    other = tmp_path / "other"  # data the run never saw: a new share, said so
    write_phantom_tree(other, {"train": 10}, seed=5, size=(96, 93))
    assert main(["fit-ood", str(run), "--data", str(other)]) == 0
    assert "holds none of the run's validation scans" in capsys.readouterr().out
    # a run trained on the data's own val split (val_fraction 0): its scans are in "val", not "train"
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,patient,split\n"
        + "".join(
            f"{p},{Path(p).parent.name},{Path(p).stem},{'val' if i % 4 == 0 else 'train'}\n"
            for i, p in enumerate(scans)
        )
    )
    split_run = _as_run(members[0], tmp_path / "split-run", scans[::4])
    assert main(["fit-ood", str(split_run), "--data", str(manifest)]) == 0
    assert read_bundle_config(split_run / "model").decision["chosen_on"] == f"{len(held_out)} validation images"
    assert "new patient-grouped share" not in capsys.readouterr().out
    bare = tmp_path / "bare"
    shutil.copytree(members[0], bare)
    assert main(["fit-ood", str(bare), "--data", str(other)]) == 0
    assert "optimistic" in capsys.readouterr().out
