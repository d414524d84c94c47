import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from octattn.classes import REFERRAL_TIER
from octattn.cli import main
from octattn.errors import BadImageError, OctattnError
from octattn.inference.bundle import load_bundle, save_bundle
from octattn.inference.inputs import expand_inputs
from octattn.inference.onnx_export import OnnxPredictor, onnx_threads
from octattn.inference.predictor import Predictor, ScanPrediction
from octattn.inference.volume_call import VolumeRule, volume_call
from octattn.inference.volumes import predict_volume, read_volume
from tests.data.helpers import write_scan


def test_bundle_round_trip_is_exact(bundle, tmp_path):
    model, config = load_bundle(bundle)
    again = save_bundle(tmp_path / "copy", model, config)
    model2, config2 = load_bundle(again)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert a.equal(b), k
    assert config2.to_dict() == config.to_dict()


def test_bundle_that_does_not_fit_is_refused(bundle, plain_bundle, tmp_path):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "config.json").write_text((bundle / "config.json").read_text())
    (tmp_path / "mixed" / "model.safetensors").write_bytes((plain_bundle / "model.safetensors").read_bytes())
    with pytest.raises(OctattnError, match="does not fit inception_v4_attention"):
        load_bundle(tmp_path / "mixed")
    with pytest.raises(OctattnError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_inputs_files_folders_globs(tmp_path):
    a = write_scan(tmp_path / "a" / "one.jpeg")
    b = write_scan(tmp_path / "a" / "deep" / "two.png", fmt="PNG")
    notes = tmp_path / "a" / "notes.txt"
    notes.write_text("x")
    # Every file of a folder, sorted by path; whether it is a scan is decided by its content.
    assert expand_inputs([tmp_path / "a"]) == [b, notes, a]
    assert expand_inputs([str(tmp_path / "a" / "*.jpeg"), a]) == [a]
    with pytest.raises(OctattnError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.tif")])
    with pytest.raises(OctattnError, match="no such file"):
        expand_inputs([tmp_path / "missing.png"])


def test_predict_cli_lists_failures_and_still_predicts(bundle, tmp_path, capsys):
    good = write_scan(tmp_path / "in" / "good.jpeg")
    (tmp_path / "in" / "bad.jpeg").write_bytes(b"")
    code = main(["predict", str(bundle), str(tmp_path / "in"), "--out", str(tmp_path / "p.json")])
    captured = capsys.readouterr()
    assert code == 1
    assert "bad.jpeg: empty file" in captured.err
    assert "1 file(s) not predicted (1 unreadable)" in captured.out
    payload = json.loads((tmp_path / "p.json").read_text())
    (row,) = payload["predictions"]
    assert row["source"] == str(good) and row["class"] in row["probabilities"]
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-6
    assert row["referral"] in {"urgent", "routine", "observation"}
    assert main(["predict", str(bundle), str(good), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("source,class,referral,p_CNV") and len(lines) == 2


def test_predict_reads_scans_by_content_and_reports_every_other_file(bundle, tmp_path, capsys):
    folder = tmp_path / "in"
    write_scan(folder / "scan.webp", fmt="WEBP")
    write_scan(folder / "CAMERA.JPG")
    write_scan(folder / "no_suffix", fmt="PNG")
    (folder / "notes.txt").write_text("not a scan")
    (folder / "cut.png").write_bytes((folder / "CAMERA.JPG").read_bytes()[:200])
    code = main(["predict", str(bundle), str(folder), "--out", str(tmp_path / "p.json")])
    captured = capsys.readouterr()
    assert code == 1  # files not predicted count as failures
    payload = json.loads((tmp_path / "p.json").read_text())
    predicted = sorted(Path(row["source"]).name for row in payload["predictions"])
    assert predicted == ["CAMERA.JPG", "no_suffix", "scan.webp"]
    reasons = {Path(row["source"]).name: row["reason"] for row in payload["not_predicted"]}
    assert reasons["notes.txt"].startswith("not an image")
    assert "truncated" in reasons["cut.png"]
    assert "3 scan(s) and 0 volume(s) predicted; 2 file(s) not predicted (1 not an image, 1 unreadable)" in captured.out
    assert f"not predicted: {folder / 'notes.txt'}: not an image" in captured.err
    assert main(["predict", str(bundle), str(folder), "--out", str(tmp_path / "p.csv")]) == 1
    rows = {Path(r.split(",")[0]).name: r for r in (tmp_path / "p.csv").read_text().splitlines()[1:]}
    assert rows["notes.txt"].endswith("not an image (unrecognised content)") and len(rows) == 5


def test_temperature_changes_confidence_not_class(bundle):
    predictor = Predictor(bundle)
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    sharp = predictor.describe("x", logits[0])
    predictor.config.temperature = 4.0
    soft = predictor.describe("x", logits[0])
    assert sharp.label == soft.label == "CNV"
    assert soft.probabilities["CNV"] < sharp.probabilities["CNV"]


def test_onnx_matches_pytorch_on_real_scans(bundle, bundle_onnx, real_data):
    """Measured: 4e-9 for this bundle, 2.6e-6 for the demo model on all 36 test scans (limit 1e-4)."""
    onnx_path = bundle_onnx
    paths = sorted((real_data / "test").rglob("*.jpeg"))[:12]
    torch_result = Predictor(bundle).predict_files(paths, batch_size=5)
    onnx_result = OnnxPredictor(bundle, onnx_path).predict_files(paths, batch_size=7)  # dynamic batch
    difference = max(
        abs(a.probabilities[k] - b.probabilities[k])
        for a, b in zip(torch_result.predictions, onnx_result.predictions, strict=True)
        for k in a.probabilities
    )
    assert difference <= 1e-4
    assert [p.label for p in torch_result.predictions] == [p.label for p in onnx_result.predictions]
    # Flip averaging is one code path for both backends.
    torch_tta = Predictor(bundle, tta=True).predict_files(paths[:4]).predictions
    onnx_tta = OnnxPredictor(bundle, onnx_path, tta=True).predict_files(paths[:4]).predictions
    for a, b in zip(torch_tta, onnx_tta, strict=True):
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-4
    assert torch_tta[0].probabilities != torch_result.predictions[0].probabilities  # TTA changed something


def test_onnxruntime_takes_the_cores_it_is_told_to(bundle, bundle_onnx, monkeypatch):
    """onnxruntime ignores OMP_NUM_THREADS: two one-core processes (the suite's workers, a
    service's) each spun a thread per core, and slowed each other several-fold."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert onnx_threads() == 1 and onnx_threads(3) == 3  # an explicit count wins
    session = OnnxPredictor(bundle, bundle_onnx).session
    assert session.get_session_options().intra_op_num_threads == 1
    for unset in ("", "0", "four"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert onnx_threads() == 0  # onnxruntime's own default
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert onnx_threads() == 0


def _dicom(path, frames: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OPT"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16 if frames.dtype == np.uint16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_multiframe_dicom_volume(bundle, tmp_path, dtype):
    frames = np.random.default_rng(0).integers(0, 200, (5, 96, 128)).astype(dtype)
    path = tmp_path / "volume.dcm"
    _dicom(path, frames)
    read = read_volume(path)
    assert read.shape == (5, 96, 128) and read.dtype == np.uint8
    result = predict_volume(Predictor(bundle), path, batch_size=2)
    assert len(result.bscans) == 5 and result.bscans[4].source.endswith("#4")
    assert result.label in {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert pydicom.dcmread(path).Modality == "OPT"


def test_volume_cli(bundle, tmp_path, capsys):
    _dicom(tmp_path / "v.dcm", np.zeros((3, 80, 80), dtype=np.uint8))
    assert main(["predict", str(bundle), str(tmp_path / "v.dcm"), "--out", str(tmp_path / "v.json")]) == 0
    volume = json.loads((tmp_path / "v.json").read_text())["volumes"][0]
    assert len(volume["bscans"]) == 3 and "rule" in volume


def _p(label: str, p: float) -> ScanPrediction:
    probs = dict.fromkeys(("CNV", "DME", "DRUSEN", "NORMAL"), (1 - p) / 3)
    probs[label] = p
    return ScanPrediction("x", label, probs, "")


@pytest.mark.parametrize(
    ("bscans", "expected"),
    [
        ([("NORMAL", 0.9)] * 40 + [("CNV", 0.8)] * 2, ("CNV", [40, 41])),
        ([("NORMAL", 0.9)] * 10 + [("CNV", 0.4)], ("NORMAL", list(range(10)))),
        ([("DRUSEN", 0.7), ("NORMAL", 0.9), ("DME", 0.6)], ("DME", [2])),
        ([("DME", 0.9), ("CNV", 0.9), ("CNV", 0.7)], ("CNV", [1, 2])),
        ([("DRUSEN", 0.9), ("NORMAL", 0.9)], ("DRUSEN", [0])),
    ],
)
def test_the_any_rule(bscans, expected):
    assert volume_call([_p(label, p) for label, p in bscans], REFERRAL_TIER, VolumeRule("any")) == expected


def test_damaged_vendor_files_give_one_line_with_the_reason(tmp_path):
    bad = tmp_path / "scan.e2e"
    bad.write_bytes(b"not a heidelberg file" * 10)
    with pytest.raises(BadImageError) as caught:
        read_volume(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: not a readable Heidelberg .e2e file (") and message.count(str(bad)) == 1
    (tmp_path / "scan.vol").write_bytes(b"\x00" * 100)
    with pytest.raises(BadImageError, match=r"scan\.vol: not a readable Heidelberg \.vol file \(.+\)") as caught:
        read_volume(tmp_path / "scan.vol")
    assert str(caught.value).count("scan.vol") == 1
    with pytest.raises(BadImageError, match="not a volume format"):
        read_volume(write_scan(tmp_path / "x.jpeg"))


def test_real_heidelberg_line_scan_is_predicted(bundle, vendor_data, tmp_path, capsys):
    import eyepy

    frames = read_volume(vendor_data / "spectralis-line.vol")
    assert frames.shape == (1, 496, 768) and frames.dtype == np.uint8
    # The same pixels as eyepy's own high-level reader, which applies Heyex's intensity transform.
    assert np.array_equal(frames, eyepy.import_heyex_vol(vendor_data / "spectralis-line.vol").data)
    out = tmp_path / "v.json"
    assert main(["predict", str(bundle), str(vendor_data / "spectralis-line.vol"), "--out", str(out)]) == 0
    (volume,) = json.loads(out.read_text())["volumes"]
    assert len(volume["bscans"]) == 1 and volume["class"] in {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert "0 file(s) not predicted" not in capsys.readouterr().out


def test_real_heidelberg_circular_scan_is_refused_naming_its_pattern(bundle, vendor_data, capsys):
    circle = vendor_data / "spectralis-circle.vol"
    with pytest.raises(BadImageError) as caught:
        read_volume(circle)
    assert str(caught.value) == (
        f"{circle}: circular scan (Heidelberg scan pattern 2) not classified: it images the nerve fibre layer "
        "around the optic disc, and the model was trained on macular B-scans only"
    )
    assert main(["predict", str(bundle), str(circle)]) == 1
    captured = capsys.readouterr()
    assert f"not predicted: {circle}: circular scan (Heidelberg scan pattern 2)" in captured.err
    assert "1 file(s) not predicted (1 unreadable volume)" in captured.out
    assert "Traceback" not in captured.err


def test_vendor_log_lines_are_hidden_unless_verbose(bundle, tmp_path, monkeypatch, caplog):
    from octattn.inference import volumes

    def noisy_reader(path):
        logging.getLogger("eyepy.io.HeVolReader").warning("The volume contains less layers than expected.")
        return np.full((1, 40, 50), 90, dtype=np.uint8)

    monkeypatch.setattr(volumes, "read_heidelberg_vol", noisy_reader)
    scan = tmp_path / "scan.vol"
    scan.write_bytes(b"\x00")
    assert main(["predict", str(bundle), str(scan)]) == 0
    assert "less layers" not in caplog.text  # the record is not even emitted
    assert main(["predict", str(bundle), str(scan), "--verbose"]) == 0
    assert "less layers" in caplog.text


def test_predictor_runs_channels_last(bundle):
    """The default memory layout ran at 0.60x the speed on this CPU (benchmarks/inference.py)."""
    import torch

    predictor = Predictor(bundle)
    weight = predictor.model.features[1].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
