import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from octattn.classes import CLASS_NAMES
from octattn.cli import main
from octattn.data.cache import CacheReader, build_cache
from octattn.data.dataset import FileReader, ScanDataset, SkipReport, validate_samples
from octattn.data.decode import load_scan
from octattn.data.layout import scan_split
from octattn.data.phantom import DIFFICULTIES, Difficulty, generate_phantom, generate_phantoms
from octattn.data.synth import mask_path_for
from octattn.data.transforms import Preprocess, resize, to_tensor, train_transform
from octattn.errors import BadImageError, DataError
from tests.data.helpers import make_tree


@pytest.mark.parametrize("label", range(4))
def test_phantom_has_image_and_mask(label):
    phantom = generate_phantom(label, np.random.default_rng(label))
    assert phantom.image.shape == (248, 256) and phantom.image.dtype == np.uint8
    assert phantom.mask.shape == (248, 256) and phantom.mask.dtype == bool
    lesion_pixels = int(phantom.mask.sum())
    if CLASS_NAMES[label] == "NORMAL":
        assert lesion_pixels == 0
    else:
        assert lesion_pixels > 150


def test_phantoms_are_seeded():
    a, b = generate_phantoms(2, seed=5), generate_phantoms(2, seed=5)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].image, generate_phantoms(2, seed=6)[0].image)


@pytest.mark.parametrize("label", [CLASS_NAMES.index("DRUSEN"), CLASS_NAMES.index("DME"), CLASS_NAMES.index("CNV")])
def test_lesions_survive_the_demo_resize(label):
    """At 107 px every lesion still covers pixels that differ from the surrounding retina."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        phantom = generate_phantom(label, rng)
        small = np.asarray(Image.fromarray(phantom.mask.astype(np.uint8) * 255).resize((107, 107)))
        assert (small > 127).sum() >= 8


@pytest.mark.parametrize("label", range(4))
def test_hard_phantoms_have_smaller_fainter_lesions_on_the_same_scan(label):
    standard = generate_phantom(label, np.random.default_rng(label))
    hard = generate_phantom(label, np.random.default_rng(label), difficulty=DIFFICULTIES["hard"])
    if CLASS_NAMES[label] == "NORMAL":
        assert np.array_equal(standard.image, hard.image)  # same draws, no lesion to change
        return
    assert 0 < hard.mask.sum() < 0.5 * standard.mask.sum()
    # Inside the lesion the hard scan differs less from its lesion-free surroundings' level.
    background = np.median(standard.image[~standard.mask & (standard.image > 20)])
    assert abs(np.mean(hard.image[hard.mask]) - background) < abs(np.mean(standard.image[standard.mask]) - background)


def test_difficulty_is_checked():
    with pytest.raises(ValueError, match="lesion_scale"):
        Difficulty(lesion_scale=0)


def test_synth_cli_writes_hard_phantoms(tmp_path):
    out = tmp_path / "hard"
    assert main(["data", "synth", str(out), "--per-class", "1", "--test-per-class", "0", "--difficulty", "hard"]) == 0
    assert '"difficulty": "hard"' in (out / "phantoms.json").read_text()


def test_synth_cli_writes_a_tree_with_masks(tmp_path):
    assert main(["data", "synth", str(tmp_path), "--per-class", "2", "--test-per-class", "1", "--size", "128x124"]) == 0
    train = scan_split(tmp_path, "train")
    assert len(train) == 8 and len({s.patient for s in train}) == 8
    mask = load_scan(mask_path_for(tmp_path, train[0].path))
    assert mask.shape == (124, 128)
    assert main(["data", "synth", str(tmp_path)]) == 2  # refuses to overwrite


def test_cache_round_trip_and_loader_workers(tmp_path):
    make_tree(tmp_path / "d", {"train": {"CNV": ["CNV-1-1.jpeg", "CNV-1-2.jpeg"], "DME": ["DME-2-1.png"]}})
    samples = scan_split(tmp_path / "d", "train")
    assert len(build_cache(samples, tmp_path / "c", size=32, progress=False)) == 0
    reader = CacheReader(tmp_path / "c")
    expected = resize(to_tensor(load_scan(samples[2].path)), Preprocess(size=(32, 32)))[0].numpy()
    assert np.array_equal(reader(samples[2]), expected)
    assert [s.path for s in reader.samples()] == [s.path for s in samples]
    pickle.loads(pickle.dumps(reader))
    dataset = ScanDataset(samples, reader, train_transform(Preprocess(size=(32, 32))))
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == 3
    assert batches[0][0].shape == (2, 1, 32, 32) and batches[0][0].dtype == torch.float32
    with pytest.raises(DataError, match="already exists"):
        build_cache(samples, tmp_path / "c", size=32)


def test_bad_files_error_or_skip(tmp_path):
    make_tree(tmp_path / "d", {"train": {"CNV": ["CNV-1-1.jpeg", "CNV-1-2.jpeg"]}})
    (tmp_path / "d" / "train" / "CNV" / "CNV-1-3.jpeg").write_bytes(b"")
    samples = scan_split(tmp_path / "d", "train")
    with pytest.raises(BadImageError, match=r"CNV-1-3\.jpeg: empty file"):
        validate_samples(samples, FileReader())
    report = SkipReport()
    kept = validate_samples(samples, FileReader(), skip_bad=True, report=report)
    assert len(kept) == 2 and report.skipped[0]["reason"] == "empty file (0 bytes)"
    with pytest.raises(BadImageError):
        build_cache(samples, tmp_path / "c", size=32, progress=False)
    assert len(build_cache(samples, tmp_path / "c2", size=32, skip_bad=True, progress=False)) == 1
    assert CacheReader(tmp_path / "c2").count == 2


def test_cache_finds_a_file_by_relative_or_absolute_path(tmp_path, monkeypatch):
    make_tree(tmp_path / "d", {"train": {"CNV": ["CNV-1-1.jpeg"]}})
    monkeypatch.chdir(tmp_path)
    relative = scan_split("d", "train")
    build_cache(relative, tmp_path / "c", size=16, progress=False)
    absolute = scan_split(tmp_path / "d", "train")
    assert CacheReader(tmp_path / "c")(absolute[0]).shape == (16, 16)


def test_cache_of_real_scans(real_data, tmp_path):
    samples = scan_split(real_data, "test")[:6]
    build_cache(samples, tmp_path / "c", size=75, progress=False)
    assert CacheReader(tmp_path / "c")(samples[5]).shape == (75, 75)
