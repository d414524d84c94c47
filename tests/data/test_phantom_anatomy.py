"""Lesion-sized phantoms (:mod:`octattn.data.phantom_anatomy`) and the generator hook of the tree writer."""

import json

import numpy as np
import pytest
from PIL import Image

from octattn.classes import CLASS_NAMES
from octattn.data.phantom_anatomy import generate_lesion_sized_phantom
from octattn.data.phantom_style import default_style
from octattn.data.synth import mask_path_for, write_phantom_tree


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_each_class_draws_its_lesion_and_normal_none(label):
    rng = np.random.default_rng(label)
    phantoms = [generate_lesion_sized_phantom(label, rng, style=default_style()) for _ in range(4)]
    for p in phantoms:
        assert p.image.shape == (248, 256) and p.image.dtype == np.uint8 and p.label == label
    lesion = [int(p.mask.sum()) for p in phantoms]
    if CLASS_NAMES[label] == "NORMAL":
        assert lesion == [0, 0, 0, 0]
    else:  # real-sized lesions: present, but far smaller than a tenth of the scan
        assert all(0 < n < 0.1 * 248 * 256 for n in lesion)


def test_the_same_seed_draws_the_same_phantom_and_another_seed_another():
    def draw(seed: int) -> np.ndarray:
        return generate_lesion_sized_phantom(2, np.random.default_rng(seed), style=default_style()).image

    assert np.array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))


def test_lesion_sized_phantoms_need_a_style():
    with pytest.raises(ValueError, match="need a style"):
        generate_lesion_sized_phantom(0, np.random.default_rng(0))


def test_the_tree_writer_draws_with_the_generator_it_is_given(tmp_path):
    write_phantom_tree(tmp_path, {"train": 1}, seed=3, style=default_style(), generator=generate_lesion_sized_phantom)
    images = sorted((tmp_path / "train").rglob("*.png"))
    assert [p.parent.name for p in images] == list(CLASS_NAMES)
    first = generate_lesion_sized_phantom(0, np.random.default_rng(3), style=default_style())
    assert np.array_equal(np.asarray(Image.open(images[0])), first.image)
    assert np.asarray(Image.open(mask_path_for(tmp_path, images[0]))).any()
    assert json.loads((tmp_path / "phantoms.json").read_text())["seed"] == 3
