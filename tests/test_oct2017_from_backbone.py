"""The OCT2017 probe that asks the paper's question from a phantom backbone."""

import csv
import json
import sys

import benchmarks.oct2017_from_backbone as probe
import benchmarks.real_scans as real_scans
import pytest

RIGHT = {"plain": 1.0, "attention": 0.5, "nomask": 0.0}
"""The share of each fold's scans each fake model gets right."""


def _model(overrides: list[str]) -> str:
    if "model=inception_v4" in overrides:
        return "plain"
    return "nomask" if "attention_mask=false" in overrides else "attention"


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """Part a's folds over 20 fake scans, a fake backbone and fake training: each model gets
    the share of :data:`RIGHT` right; returns the overrides of every run trained, by name."""
    labels = ["CNV", "DME", "DRUSEN", "NORMAL"]
    rows = [{"path": f"s{i}.png", "label": labels[i % 4], "group": str(i)} for i in range(20)]
    monkeypatch.setattr(real_scans, "oct2017_scans", lambda: rows)
    monkeypatch.setattr(probe, "oct2017_scans", lambda: rows)
    monkeypatch.setattr(probe, "REAL_DATA", tmp_path)
    monkeypatch.setattr(probe, "RESULTS", tmp_path / "results")
    backbones: list[str] = []

    def phantom_backbone(work, p, generator):
        backbones.append(generator)
        return work / f"phantom-{generator}" / "pretrain"

    monkeypatch.setattr(probe, "phantom_backbone", phantom_backbone)
    trained: dict[str, list[str]] = {}

    def run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        with data.open() as handle:
            test = [r for r in csv.DictReader(handle) if r["split"] == "test"]
        right = round(RIGHT[_model(overrides)] * len(test))
        label_ids = [labels.index(r["label"]) for r in test]
        probs = [[float(j == (y if i < right else (y + 1) % 4)) for j in range(4)] for i, y in enumerate(label_ids)]
        paths = [r["path"] for r in test]
        return {"paths": paths, "groups": paths, "labels": label_ids, "probs": probs}

    monkeypatch.setattr(real_scans, "run_once", run_once)
    return trained, backbones


def _main(monkeypatch, tmp_path, *args):
    monkeypatch.setattr(sys, "argv", ["oct2017_from_backbone", "--work", str(tmp_path / "work"), *args])
    assert probe.main() == 0
    return json.loads((tmp_path / "results" / "oct2017_from_backbone.json").read_text())


def test_the_models_are_fine_tuned_from_the_backbone_and_paired_seed_by_seed(fake_runs, tmp_path, monkeypatch):
    trained, backbones = fake_runs
    first = _main(monkeypatch, tmp_path, "--models", "plain,attention", "--seeds", "1")
    assert backbones == ["lesion-sized"] and first["start"] == "lesion_gentle_e20" and first["scans"] == 20
    assert list(trained)[:5] == [f"oct2017-plain-lesion_gentle_e20-s1-fold{k}" for k in range(5)]  # plain first
    backbone = tmp_path / "work" / "full" / "phantom-lesion-sized" / "backbone.safetensors"
    for overrides in trained.values():  # part a's start: the backbone, a tenth of the rate, 20 epochs, the seed
        assert f"weights={backbone}" in overrides and "lr_backbone=0.0002" in overrides
        assert overrides.index("epochs=20") > overrides.index("epochs=12") and "seed=1" in overrides
    seed = first["seeds"]["1"]
    assert set(seed["runs"]) == {"plain", "attention"} and seed["machine"]["cores"] >= 1
    assert seed["runs"]["plain"]["accuracy"] == 1.0 and seed["runs"]["attention"]["accuracy"] == 0.5
    assert not any(k.startswith("_") for run in seed["runs"].values() for k in run)
    assert seed["comparisons"]["attention vs plain"]["difference_points"] == pytest.approx(-50.0)
    assert set(seed["comparisons"]) == {"attention vs plain"}

    # another seed joins the first; the masks' pair appears where no masks ran
    both = _main(monkeypatch, tmp_path, "--models", "nomask,attention", "--seeds", "0")
    assert list(both["seeds"]) == ["0", "1"] and both["seeds"]["1"] == first["seeds"]["1"]
    assert both["seeds"]["0"]["comparisons"]["attention vs nomask"]["difference_points"] == pytest.approx(50.0)
    text = (tmp_path / "results" / "oct2017_from_backbone.md").read_text()
    assert "| 1 | attention vs plain | -50.0 (" in text and "| 0 | nomask | 0.0% (" in text
    assert "lesion-sized phantoms' backbone" in text

    # the docs render the table from the JSON (a results name with digits was once skipped silently)
    from benchmarks import docs_tables

    monkeypatch.setattr(docs_tables, "RESULTS", tmp_path / "results")
    page = tmp_path / "page.md"
    page.write_text("<!-- results: oct2017_from_backbone -->\n<!-- /results -->\n")
    assert docs_tables.stale_pages([page]) == [page]
    assert "| 1 | attention vs plain | -50.0 (" in docs_tables.refreshed(page.read_text())

    # another recipe (the image size) cannot share the table: the seeds before it are dropped
    other = _main(monkeypatch, tmp_path, "--models", "plain", "--seeds", "2", "--size", "160")
    assert list(other["seeds"]) == ["2"] and other["size"] == 160


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--models", "plain,resnet"], "--models: choose from"), (["--seeds", "0,x"], "--seeds '0,x'")],
)
def test_the_probe_refuses_an_unknown_model_or_seed_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(sys, "argv", ["oct2017_from_backbone", "--work", str(tmp_path), *args])
    with pytest.raises(SystemExit) as exit_info:
        probe.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_backbone_file_start_runs_beside_its_file_and_is_kept_beside_the_generators(fake_runs, tmp_path, monkeypatch):
    trained, backbones = fake_runs
    generator = _main(monkeypatch, tmp_path, "--models", "plain,attention", "--seeds", "0")
    probe_folder = tmp_path / "probe-s18"
    probe_folder.mkdir()
    weights = probe_folder / "backbone.safetensors"
    weights.write_bytes(b"fake")
    trained.clear()
    both = _main(
        monkeypatch, tmp_path, "--backbone", "diverse-long-s18", "--backbone-weights", str(weights), "--models",
        "plain,attention", "--seeds", "0",
    )  # fmt: skip
    assert backbones == ["lesion-sized"]  # the file is used as it is: no phantom backbone is made for it
    # the phantom-only probe's start and run names, so its plain runs beside the file are reused
    assert list(trained)[:5] == [f"oct2017-plain-phantom_gentle_e20-fold{k}" for k in range(5)]
    assert all(f"weights={weights}" in overrides for overrides in trained.values())
    found = both["from_backbone:diverse-long-s18"]
    assert found["weights"] == str(weights) and found["start"] == "phantom_gentle_e20"
    assert found["seeds"]["0"]["comparisons"]["attention vs plain"]["difference_points"] == pytest.approx(-50.0)
    # the generator's start stays as it was, and stays when it is run again
    assert both["seeds"] == generator["seeds"] and both["backbone"] == "lesion-sized"
    again = _main(monkeypatch, tmp_path, "--models", "plain", "--seeds", "1")
    assert again["from_backbone:diverse-long-s18"] == found and list(again["seeds"]) == ["0", "1"]
    text = (tmp_path / "results" / "oct2017_from_backbone.md").read_text()
    assert (
        "lesion-sized phantoms' backbone" in text
        and f"the diverse-long-s18 backbone file `{weights}` (`phantom_gentle_e20`" in text
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "nonesuch"], "--backbone nonesuch: not a phantom generator"),
        (["--backbone", "a/b", "--backbone-weights", "{file}"], "--backbone a/b: a backbone file's name"),
        (["--backbone", "s18", "--backbone-weights", "{missing}"], "no such file"),
    ],
)
def test_a_backbone_file_start_is_checked_before_anything_runs(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "backbone.safetensors").write_bytes(b"fake")
    paths = {"{file}": str(tmp_path / "backbone.safetensors"), "{missing}": str(tmp_path / "gone.safetensors")}
    args = [paths.get(a, a) for a in args]
    monkeypatch.setattr(probe, "fine_tuned_seed", lambda *a, **k: pytest.fail("nothing may run"))
    monkeypatch.setattr(sys, "argv", ["oct2017_from_backbone", "--work", str(tmp_path), *args])
    with pytest.raises(SystemExit) as exit_info:
        probe.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
