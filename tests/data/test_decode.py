import io

import numpy as np
import pytest
from PIL import Image

from octattn.data.decode import load_scan
from octattn.errors import BadImageError


def _save(path, image, fmt, **kwargs):
    image.save(path, fmt, **kwargs)
    return path


GOOD_CASES = [
    ("gray.jpeg", lambda: Image.new("L", (40, 30), 120), "JPEG"),
    ("jpeg-named.png", lambda: Image.new("L", (40, 30), 120), "JPEG"),
    ("rgb.png", lambda: Image.new("RGB", (40, 30), (120, 120, 120)), "PNG"),
    ("rgba.png", lambda: Image.new("RGBA", (40, 30), (120, 120, 120, 255)), "PNG"),
    ("cmyk.jpg", lambda: Image.new("CMYK", (40, 30), (0, 0, 0, 135)), "JPEG"),
    ("palette.png", lambda: Image.new("L", (40, 30), 120).convert("P"), "PNG"),
    ("scan.tif", lambda: Image.new("L", (40, 30), 120), "TIFF"),
]


@pytest.mark.parametrize(("name", "make", "fmt"), GOOD_CASES)
def test_modes_become_8bit_gray(tmp_path, name, make, fmt):
    gray = load_scan(_save(tmp_path / name, make(), fmt))
    assert gray.dtype == np.uint8 and gray.shape == (30, 40)
    assert abs(float(gray.mean()) - 120) < 6


def test_16bit_is_scaled_by_its_range(tmp_path):
    data = np.linspace(1000, 3000, 40 * 30).reshape(30, 40).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(data).save(path)
    gray = load_scan(path)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255


def test_reduced_jpeg_decoding_keeps_at_least_the_target(tmp_path):
    path = _save(tmp_path / "big.jpeg", Image.new("L", (1024, 992), 90), "JPEG")
    gray = load_scan(path, target_size=(256, 248))
    assert gray.shape == (248, 256)
    assert load_scan(path).shape == (992, 1024)


def _truncated(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD_CASES = [
    ("empty.jpeg", lambda p: p.write_bytes(b""), "empty file"),
    ("notes.png", lambda p: p.write_text("not an image at all"), "not an image"),
    ("garbage.jpeg", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64), "not an image"),
    ("half.jpeg", _truncated, "truncated"),
    ("missing.jpeg", lambda p: None, "cannot read"),
]


@pytest.mark.parametrize(("name", "make", "reason"), BAD_CASES)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(BadImageError, match=reason) as info:
        load_scan(path)
    assert str(path) in str(info.value)


def test_decompression_bomb_limit(tmp_path):
    path = _save(tmp_path / "huge.png", Image.new("L", (400, 300)), "PNG")
    with pytest.raises(BadImageError, match="too large"):
        load_scan(path, max_pixels=100_000)


def test_real_scans_decode(real_data):
    for path in sorted((real_data / "renamed" / "CNV").iterdir())[:3]:
        gray = load_scan(path)
        assert gray.dtype == np.uint8 and gray.shape[0] >= 496
