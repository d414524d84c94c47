"""Class sets beyond OCT2017: classes from the data or a config, referral tiers per class,
imbalance weights, class maps, and OCTDL's layout (class folders without split folders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from octattn.classes import CLASS_NAMES, parse_class_map, referral_tiers, resolve_classes
from octattn.data.audit import audit_dataset
from octattn.data.balance import inverse_frequency_weights
from octattn.data.layout import Sample, data_classes, left_out, load_samples, parse_name
from octattn.errors import ConfigError, DataError
from octattn.training.config import load_config
from tests.conftest import REPO_ROOT
from tests.data.helpers import make_tree

OCTDL_MINI = REPO_ROOT.parent / "shared" / "data" / "octdl-mini"
OCTDL_CLASSES = ("AMD", "DME", "ERM", "NO", "RAO", "RVO", "VID")


@pytest.fixture
def octdl() -> Path:
    """The 70 real OCTDL scans beside the repository, or a skip saying why not."""
    if not OCTDL_MINI.is_dir():
        pytest.skip(f"OCTDL sample not found at {OCTDL_MINI} (only present on the project's machines)")
    return OCTDL_MINI


@pytest.mark.parametrize(
    ("found", "requested", "expected"),
    [
        (["normal", "cnv"], None, CLASS_NAMES),  # a subset of OCT2017's: still its four, in order
        (["NO", "amd", "DME"], None, ("AMD", "DME", "NO")),  # other names: sorted
        (["NO", "AMD"], ["no", "amd"], ("NO", "AMD")),  # a config's order wins
    ],
)
def test_class_sets_come_from_the_data_or_the_config(found, requested, expected):
    assert resolve_classes(found, requested) == expected


def test_referral_tiers_per_class_and_none_where_unnamed():
    assert referral_tiers(CLASS_NAMES) == {
        "CNV": "urgent",
        "DME": "urgent",
        "DRUSEN": "routine",
        "NORMAL": "observation",
    }
    tiers = referral_tiers(OCTDL_CLASSES, {"amd": "urgent", "NO": "observation"})
    assert tiers["AMD"] == "urgent" and tiers["NO"] == "observation"
    assert tiers["ERM"] is None  # a class with no tier gets none, never a wrong one
    assert referral_tiers(OCTDL_CLASSES)["DME"] == "urgent" and referral_tiers(OCTDL_CLASSES)["AMD"] is None
    with pytest.raises(ValueError, match="must be one of"):
        referral_tiers(["AMD"], {"AMD": "soon"})
    with pytest.raises(ConfigError, match="referral"):
        load_config(None, ["referral={AMD: soon}"])


def test_class_map_parses_and_refuses_bad_items():
    assert parse_class_map("NO=NORMAL, dme=DME") == {"NO": "NORMAL", "DME": "DME"}
    with pytest.raises(ValueError, match="DATA_CLASS=MODEL_CLASS"):
        parse_class_map("NO")


def test_loss_weights_balance_the_classes():
    samples = [Sample(Path(f"{i}.png"), 0) for i in range(6)] + [Sample(Path("x.png"), 2)]
    weights = inverse_frequency_weights(samples, 4)
    # n / (k_present * n_c): 7 / (2 * 6) and 7 / (2 * 1); an absent class weighs nothing
    assert torch.allclose(weights, torch.tensor([7 / 12, 0.0, 3.5, 0.0]))
    assert float((weights[0] * 6 + weights[2] * 1) / 7) == pytest.approx(1.0)


def test_a_tree_of_any_classes(tmp_path):
    make_tree(
        tmp_path, {"train": {"glaucoma": ["glaucoma-1-1.jpeg"], "healthy": ["healthy-2-1.jpeg", "healthy-3-1.jpeg"]}}
    )
    samples = load_samples(tmp_path, "train")
    assert data_classes(tmp_path) == ("GLAUCOMA", "HEALTHY")
    assert [(s.class_name, s.label, s.patient) for s in samples] == [
        ("GLAUCOMA", 0, "1"),
        ("HEALTHY", 1, "2"),
        ("HEALTHY", 1, "3"),
    ]


def test_octdl_names_give_patients():
    assert parse_name("amd_4812691_1.jpg") == ("AMD", "4812691", 1)
    assert parse_name("CNV-103044-18.jpeg") == ("CNV", "103044", 18)


def test_octdl_is_read_as_one_pool_of_seven_classes(octdl):
    assert data_classes(octdl) == OCTDL_CLASSES
    samples = load_samples(octdl, "test")  # no split folders: every split name reads the pool
    assert len(samples) == 70 and len({s.patient for s in samples}) == 70
    assert {s.class_name for s in samples} == set(OCTDL_CLASSES)
    audit = audit_dataset(octdl)
    assert list(audit.counts) == ["all"] and audit.counts["all"]["RAO"] == 10
    assert not audit.leakage


def test_octdl_through_a_class_map_onto_oct2017(octdl):
    mapping = {"NO": "NORMAL", "DME": "DME"}
    samples = load_samples(octdl, "test", CLASS_NAMES, mapping)
    assert len(samples) == 20
    assert {(s.class_name, s.label) for s in samples} == {("NORMAL", 3), ("DME", 1)}
    assert left_out(octdl, "test", mapping) == {c: 10 for c in ("AMD", "ERM", "RAO", "RVO", "VID")}
    with pytest.raises(DataError, match="unknown class folder"):
        load_samples(octdl, "test", CLASS_NAMES)  # without a map, OCTDL's classes are not the model's
