"""Phantoms that look like real scans: measured statistics, the style file, the renderer."""

import numpy as np
import pytest

from octattn.cli import main
from octattn.data.decode import load_scan
from octattn.data.phantom import generate_phantom
from octattn.data.phantom_style import (
    PhantomStyle,
    default_style,
    learn_style,
    measure_scan,
    style_distance,
)
from octattn.errors import DataError


def _banded_scan(wedge: bool = False) -> np.ndarray:
    """A 248x256 scan: dark noisy vitreous, a retina from row 80 to its brightest row 120."""
    rng = np.random.default_rng(0)
    image = rng.normal(20, 3, (248, 256))
    image[80:120] = 120
    image[120:126] = 230  # the RPE: the brightest rows
    image[126:] = 40
    if wedge:
        image[:10, :] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def test_measure_scan_finds_the_retina_noise_floor_and_wedge():
    stats = measure_scan(_banded_scan())
    assert stats.retina_top == pytest.approx(80 / 248, abs=0.03)
    assert stats.retina_thickness == pytest.approx(41 / 248, abs=0.03)
    assert stats.noise_floor == pytest.approx(20, abs=2)
    assert not stats.wedge
    with_wedge = measure_scan(_banded_scan(wedge=True))
    assert with_wedge.wedge
    assert max(with_wedge.quantiles) < 250  # wedge pixels are not part of the grey levels


def test_style_round_trips_and_bad_files_are_one_line_errors(tmp_path):
    style = default_style()
    path = tmp_path / "style.json"
    style.save(path)
    assert PhantomStyle.load(path) == style
    (tmp_path / "bad.json").write_text('{"source": 1}')
    with pytest.raises(DataError, match=r"bad\.json: not a phantom style file"):
        PhantomStyle.load(tmp_path / "bad.json")


def test_styled_phantoms_are_seeded_keep_their_masks_and_follow_the_style():
    style = default_style()
    a = generate_phantom(2, np.random.default_rng(3), style=style)
    b = generate_phantom(2, np.random.default_rng(3), style=style)
    assert np.array_equal(a.image, b.image) and a.mask.any()
    never = PhantomStyle(**{**style.__dict__, "wedge_rate": 0.0})
    always = PhantomStyle(**{**style.__dict__, "wedge_rate": 1.0})
    rng = np.random.default_rng(1)
    assert not any(measure_scan(generate_phantom(i % 4, rng, style=never).image).wedge for i in range(8))
    wedges = [(generate_phantom(i % 4, rng, style=always).image == 255).mean() for i in range(8)]
    assert min(wedges) > 0


def test_realistic_phantoms_are_closer_to_real_scans_than_standard_ones(real_data):
    """The style is learnt from train/; it is judged on the scans it never saw."""
    unseen = sorted((real_data / "test").rglob("*.jpeg"))
    real = learn_style(unseen, "test scans")
    rng = np.random.default_rng(0)
    standard = [measure_scan(generate_phantom(i % 4, rng).image) for i in range(24)]
    realistic = [measure_scan(generate_phantom(i % 4, rng, style=default_style()).image) for i in range(24)]
    far, near = style_distance(real, standard), style_distance(real, realistic)
    assert near["quantiles"] < far["quantiles"] / 2
    assert near["speckle_contrast"] < far["speckle_contrast"] / 2
    assert near["noise_floor"] < far["noise_floor"] / 2


def test_the_shipped_style_is_what_learn_style_gives_on_its_source(real_data):
    paths = sorted((real_data / "train").rglob("*.jpeg"))
    learnt = learn_style(paths, default_style().source)
    assert learnt.scans == default_style().scans == 100
    assert learnt.retina_top == pytest.approx(default_style().retina_top, abs=1e-6)
    assert np.allclose(learnt.quantiles, default_style().quantiles)


def test_style_and_synth_commands(tmp_path, real_data, capsys):
    out = tmp_path / "style.json"
    assert main(["data", "style", str(real_data / "test"), "--out", str(out)]) == 0
    assert PhantomStyle.load(out).scans == 36
    assert main(["data", "style", str(real_data / "test"), "--out", str(out)]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert (
        main(["data", "synth", str(tmp_path / "ph"), "--per-class", "1", "--test-per-class", "0", "--style", str(out)])
        == 0
    )
    written = sorted((tmp_path / "ph" / "train").rglob("*.png"))
    assert len(written) == 4 and load_scan(written[0]).shape == (248, 256)
    assert main(["data", "synth", str(tmp_path / "ph2"), "--style", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: not a phantom style file" in capsys.readouterr().err
