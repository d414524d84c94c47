"""``octattn adapt``: BatchNorm statistics re-estimated on unlabeled scans (AdaBN)."""

import json
import shutil

import pytest
import torch

from octattn.cli import main
from octattn.data.decode import load_scan
from octattn.data.transforms import eval_transform
from octattn.errors import OctattnError
from octattn.inference.adapt import MIN_IMAGES, adapt_bundle
from octattn.inference.bundle import CONFIG_FILE, load_bundle, read_bundle_config
from octattn.inference.ensemble import build_ensemble
from octattn.inference.ood import OOD_FILE
from tests.conftest import link_weights


def _scans(real_data, count=40):
    return sorted((real_data / "train").rglob("*.jpeg"))[:count]


def test_adapted_statistics_are_those_of_the_scans(plain_bundle, real_data, tmp_path):
    """The first BatchNorm's running mean becomes the per-channel mean of its input over the
    scans; no weight changes; the detector and the operating points are dropped."""
    source = tmp_path / "source"
    shutil.copytree(plain_bundle, source, copy_function=link_weights)
    config = json.loads((source / CONFIG_FILE).read_text())
    config["octattn"]["decision"] = {"abstain_threshold": 0.9}
    (source / CONFIG_FILE).write_text(json.dumps(config))
    (source / OOD_FILE).write_bytes(b"stand-in: must not travel")
    scans = _scans(real_data)
    summary = adapt_bundle(source, scans, tmp_path / "adapted", batch_size=20)  # equal batches: a plain mean
    assert summary.images == len(scans) and not summary.unreadable

    before, bundle_config = load_bundle(source)
    after, adapted_config = load_bundle(tmp_path / "adapted")
    transform = eval_transform(bundle_config.preprocess)
    height, width = bundle_config.preprocess.size
    batch = torch.stack([transform(load_scan(p, (width, height))) for p in scans])
    first = before.features[0]  # ConvNormAct: conv, then the first BatchNorm
    with torch.no_grad():
        expected = first.conv(batch).mean(dim=(0, 2, 3))
    got = after.features[0].bn.running_mean
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(before.features[0].bn.running_mean, got)
    for (name, a), (_, b) in zip(before.named_parameters(), after.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert adapted_config.decision == {} and not (tmp_path / "adapted" / OOD_FILE).exists()
    assert adapted_config.provenance["adapted"]["scans"] == len(scans)


def test_adapt_cli_lists_unreadable_files_and_refuses_what_it_cannot_do(plain_bundle, real_data, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    for path in _scans(real_data, MIN_IMAGES):
        shutil.copyfile(path, scans / path.name)
    (scans / "notes.txt").write_text("not a scan")
    out = tmp_path / "adapted"
    assert main(["adapt", str(plain_bundle), str(scans), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "notes.txt" in captured.err and f"from {MIN_IMAGES} unlabeled scan(s)" in captured.out
    assert read_bundle_config(out).provenance["adapted"]["scans"] == MIN_IMAGES

    assert main(["adapt", str(plain_bundle), str(scans), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    few = sorted(scans.glob("*.jpeg"))[:3]
    assert main(["adapt", str(plain_bundle), *map(str, few), "--out", str(tmp_path / "few")]) == 2
    assert f"adapting needs at least {MIN_IMAGES}" in capsys.readouterr().err
    assert not (tmp_path / "few").exists()


def test_an_ensemble_is_adapted_member_by_member(plain_bundle, real_data, tmp_path):
    ensemble = tmp_path / "ens"
    build_ensemble([plain_bundle, plain_bundle], ensemble)
    with pytest.raises(OctattnError, match="adapt each member"):
        adapt_bundle(ensemble, _scans(real_data), tmp_path / "out")
    assert not (tmp_path / "out").exists()
