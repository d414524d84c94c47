from pathlib import Path

import numpy as np
import pytest
import torch

from octattn.data.balance import COPY_SEQUENCE, class_weighted_sampler, expand_classes
from octattn.data.layout import Sample, class_counts
from octattn.data.transforms import (
    Preprocess,
    apply_augment,
    eval_transform,
    random_appearance,
    random_jitter,
    to_tensor,
    train_transform,
)
from octattn.errors import ConfigError

GRAY = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)


@pytest.mark.parametrize(("size", "chans"), [((75, 75), 1), ((107, 139), 1), ((75, 75), 3)])
def test_eval_transform_resizes_directly_and_normalises(size, chans):
    pre = Preprocess(size=size, in_chans=chans)
    x = eval_transform(pre)(GRAY)
    assert x.shape == (chans, *size) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(x, eval_transform(pre)(GRAY))
    if chans == 3:
        torch.testing.assert_close(x[0], x[2])


def test_eval_transform_keeps_the_whole_scan():
    """A bright left edge must survive the direct resize (a crop could drop it)."""
    gray = np.zeros((48, 96), dtype=np.uint8)
    gray[:, :4] = 255
    x = eval_transform(Preprocess(size=(75, 75)))(gray)
    assert float(x[0, :, 0].mean()) > 0.5


def test_crop_mode_is_random_and_resize_mode_is_not():
    pre = Preprocess(size=(75, 75))
    torch.manual_seed(0)
    crop = train_transform(pre, "crop")
    assert not torch.equal(crop(GRAY, ""), crop(GRAY, ""))
    resize = train_transform(pre, "resize")
    torch.testing.assert_close(resize(GRAY, ""), eval_transform(pre)(GRAY))
    with pytest.raises(ValueError, match="unknown pre-processing"):
        train_transform(pre, "zoom")


def _draws_the_same_under_a_seed(transform, pre: Preprocess) -> torch.Tensor:
    """One seeded draw of a training transform on GRAY, checked to repeat under the same seed,
    to keep the evaluation transform's shape and range, and to differ from it."""
    torch.manual_seed(0)
    first = transform(GRAY, "")
    torch.manual_seed(0)
    torch.testing.assert_close(transform(GRAY, ""), first)  # a seeded run draws the same
    plain = eval_transform(pre)(GRAY)
    assert first.shape == plain.shape and not torch.equal(first, plain)
    assert float(first.min()) >= -1.0 and float(first.max()) <= 1.0
    return first


def test_jitter_moves_the_scan_a_little_and_repeats_under_a_seed():
    pre = Preprocess(size=(75, 75))
    _draws_the_same_under_a_seed(train_transform(pre, "resize", jitter=1.0), pre)
    # a little: a smooth scan moved at most 10 degrees, 5%, 10%, 20% stays close to itself
    ramp = np.tile(np.linspace(40, 200, 75, dtype=np.uint8), (75, 1))
    image = to_tensor(ramp)
    torch.manual_seed(1)
    moved = [random_jitter(image, 1.0).float() for _ in range(20)]
    assert all(float((m - image.float()).abs()[:, 10:-10, 10:-10].mean()) < 40 for m in moved)
    assert len({m.sum().item() for m in moved}) == 20  # every draw differs
    assert torch.equal(random_jitter(image, 0.0), image)


def test_randomise_redraws_the_look_but_not_the_anatomy_and_repeats_under_a_seed():
    pre = Preprocess(size=(75, 75))
    _draws_the_same_under_a_seed(train_transform(pre, "resize", randomise=1.0), pre)
    # a bright band on a dark scan: the look changes from draw to draw, the band stays where it is
    scan = np.full((96, 96), 30, dtype=np.uint8)
    scan[40:56] = 200
    image = to_tensor(scan)
    torch.manual_seed(1)
    drawn = [random_appearance(image, 1.0) for _ in range(20)]
    assert len({int(d.int().sum()) for d in drawn}) == 20  # gamma, blur, scale and noise differ every draw
    assert all(d.dtype == torch.uint8 and d.shape == image.shape for d in drawn)
    assert all(float(d[0, 44:52].float().mean()) > float(d[0, 5:30].float().mean()) + 80 for d in drawn)
    assert torch.equal(random_appearance(image, 0.0), image)
    gentle = [float((random_appearance(image, 0.1).float() - image.float()).abs().mean()) for _ in range(10)]
    strong = [float((d.float() - image.float()).abs().mean()) for d in drawn[:10]]
    assert sum(gentle) < sum(strong)  # the strength scales the change


def test_augment_specs():
    image = to_tensor(GRAY)
    assert torch.equal(apply_augment(image, "hflip"), image.flip(-1))
    rotated = apply_augment(image, "rot+10")
    assert rotated.shape == image.shape and not torch.equal(rotated, image)
    assert int(rotated[0, 0, 0]) == 0  # dark fill in the corner
    with pytest.raises(ValueError):
        apply_augment(image, "shear")


def _samples(counts: dict[int, int]) -> list[Sample]:
    return [Sample(Path(f"{label}-{i}.png"), label, str(i)) for label, n in counts.items() for i in range(n)]


def test_paper_tripling_of_dme_and_drusen():
    samples = _samples({0: 5, 1: 2, 2: 3, 3: 4})
    expanded = expand_classes(samples)
    assert class_counts(expanded) == {"CNV": 5, "DME": 6, "DRUSEN": 9, "NORMAL": 4}
    copies = sorted(s.augment for s in expanded if s.path.name == "1-0.png")
    assert copies == sorted(["", "rot+10,hflip", "rot-10,hflip"])
    assert {s.augment for s in expanded if s.label in (0, 3)} == {""}


@pytest.mark.parametrize("factor", [1, 2, len(COPY_SEQUENCE)])
def test_factor_and_classes_are_configurable(factor):
    expanded = expand_classes(_samples({0: 2, 3: 2}), classes=["NORMAL"], factor=factor)
    assert class_counts(expanded)["NORMAL"] == 2 * factor
    assert class_counts(expanded)["CNV"] == 2


def test_bad_factor():
    with pytest.raises(ConfigError):
        expand_classes(_samples({0: 1}), factor=0)


def test_class_weighted_sampler_draws_classes_evenly():
    samples = _samples({0: 90, 1: 10})
    sampler = class_weighted_sampler(samples, torch.Generator().manual_seed(0))
    drawn = [samples[i].label for i in sampler]
    assert 0.35 < drawn.count(1) / len(drawn) < 0.65
