"""Bundles are timm model folders; old bundles still load; models travel through the Hub."""

import json
import shutil

import pytest
import timm
import torch
import yaml
from timm.data import resolve_data_config

from octattn.cli import main
from octattn.errors import OctattnError
from octattn.inference.bundle import load_bundle, resolve_bundle_dir
from octattn.inference.predictor import Predictor
from octattn.inference.publish import model_card, push_model, stage_upload
from tests.conftest import link_weights
from tests.data.helpers import write_scan


@pytest.mark.parametrize("which", ["bundle", "plain_bundle"])
def test_timm_builds_the_trained_network_from_a_bundle(which, request):
    folder = request.getfixturevalue(which)
    config = json.loads((folder / "config.json").read_text())
    assert {"architecture", "num_classes", "pretrained_cfg", "model_args", "octattn"} <= set(config)
    assert (folder / "model.safetensors").is_file()
    ours, _ = load_bundle(folder)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()  # timm loads weights only when asked
    assert type(model) is type(ours)
    for key, value in ours.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    data = resolve_data_config({}, model=model)
    assert data["input_size"] == (1, 75, 75) and data["crop_mode"] == "squash" and len(data["mean"]) == 1
    assert model.pretrained_cfg["label_names"] == ["CNV", "DME", "DRUSEN", "NORMAL"]


def _as_version_1(folder, target):
    """What octattn wrote before bundles were timm folders."""
    target.mkdir()
    config = json.loads((folder / "config.json").read_text())
    ours = config["octattn"]
    legacy = {
        "format": "octattn-bundle",
        "version": 1,
        "architecture": {"name": config["architecture"], "num_classes": config["num_classes"], **config["model_args"]},
        "class_names": ours["class_names"],
        "preprocess": ours["preprocess"],
        "calibration": ours["calibration"],
        "provenance": ours["provenance"],
    }
    (target / "config.json").write_text(json.dumps(legacy))
    shutil.copyfile(folder / "model.safetensors", target / "weights.safetensors")
    return target


def test_bundles_from_before_the_timm_layout_still_load_and_predict(bundle, tmp_path, capsys):
    old = _as_version_1(bundle, tmp_path / "old")
    scan = write_scan(tmp_path / "scan.jpeg", size=(90, 80))
    new_row = Predictor(bundle).predict_files([scan]).predictions[0]
    old_row = Predictor(old).predict_files([scan]).predictions[0]
    assert old_row.probabilities == new_row.probabilities
    assert main(["predict", str(old), str(scan)]) == 0
    staged = stage_upload(old, "org/name", tmp_path / "staged")  # re-published in the current layout
    assert "octattn" in json.loads((staged / "config.json").read_text())


def test_a_timm_folder_without_our_fields_is_refused_in_one_line(bundle, tmp_path):
    folder = tmp_path / "timm-only"
    folder.mkdir()
    config = json.loads((bundle / "config.json").read_text())
    del config["octattn"]
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copyfile(bundle / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(OctattnError, match="a timm model folder without octattn's fields"):
        load_bundle(folder)


def test_predict_and_serve_take_local_dir_and_hf_hub_names(bundle, tmp_path, monkeypatch):
    from octattn.hub import hub_reachable

    hub_reachable.cache_clear()
    snapshot = tmp_path / "hub-cache" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(bundle / name, snapshot / name)
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        return str(snapshot / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert resolve_bundle_dir("hf-hub:org/oct-model") == snapshot
    assert ("org/oct-model", "model.safetensors") in asked
    assert resolve_bundle_dir(f"local-dir:{bundle}") == bundle
    scan = write_scan(tmp_path / "scan.jpeg", size=(90, 80))
    assert main(["predict", "hf-hub:org/oct-model", str(scan)]) == 0
    assert main(["predict", f"local-dir:{bundle}", str(scan)]) == 0
    from fastapi.testclient import TestClient

    from octattn.serve.app import create_app

    client = TestClient(create_app("hf-hub:org/oct-model"))
    assert client.get("/v1/model").json()["model"].startswith("org/oct-model@")
    with pytest.raises(OctattnError, match="hf-hub:ORG/NAME"):
        resolve_bundle_dir("hf-hub:no-organisation")


def test_model_card_has_the_hub_header_metrics_and_limits(bundle, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(bundle, run / "model", copy_function=link_weights)
    (run / "evaluation").mkdir()
    metrics = {
        "split": "test",
        "n": 200,
        "accuracy": 0.975,
        "precision": 0.976,
        "recall": 0.975,
        "f1": 0.975,
        "auc_macro": 0.998,
        "ece": 0.012,
        "referral": {"sensitivity": 0.99, "specificity": 0.98},
        "ci": {"accuracy": {"low": 0.95, "high": 0.995}},
    }
    (run / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    card = model_card(run, "org/oct-model")
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "timm" and "octattn" in header["tags"] and header["license"] == "apache-2.0"
    values = {m["type"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    assert values["accuracy"] == 97.5
    assert "97.5% (95% CI 95.0%-99.5%)" in card and "not a medical device" in card
    assert "same patients in its train and test" in card
    assert (
        'timm.create_model("hf-hub:org/oct-model", pretrained=True)' in card
        and "octattn predict hf-hub:org/oct-model" in card
    )
    staged = stage_upload(run, "org/oct-model", tmp_path / "staged")
    assert sorted(p.name for p in staged.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_push_calls_the_hub_with_the_staged_folder(bundle, monkeypatch):
    import huggingface_hub

    from octattn.hub import hub_reachable

    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, private, exist_ok, repo_type):
            calls.append(("create", repo_id, private))

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            from pathlib import Path

            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr("octattn.hub.hub_reachable", lambda: True)
    url = push_model(bundle, "org/oct-model", private=True, token="hf_test")
    assert url.endswith("/org/oct-model")
    assert calls == [
        ("token", "hf_test"),
        ("create", "org/oct-model", True),
        ("upload", "org/oct-model", ["README.md", "config.json", "model.safetensors"]),
    ]
    hub_reachable.cache_clear()


def test_push_without_token_or_network_is_one_line(bundle, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert main(["push", str(bundle), "org/oct-model"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_test")
    monkeypatch.setattr("octattn.hub.hub_reachable", lambda: False)
    assert main(["push", str(bundle), "org/oct-model"]) == 2
    assert "cannot be reached" in capsys.readouterr().err
    assert main(["push", str(bundle), "not-a-repo-name"]) == 2
