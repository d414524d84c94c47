"""Mask health: hand-computable statistics, the moved share, and the epoch line."""

import pytest
import torch

from octattn.models.health import (
    ChannelProfile,
    MaskMeter,
    describe_health,
    flatten_health,
    health_columns,
    moved_share,
    profiles_from_tensors,
    profiles_to_tensors,
)


def _uniform(value: float, n: int = 2, c: int = 3, h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.full((n, c, h, w), value)


def test_uniform_mask_has_no_contrast():
    meter = MaskMeter()
    meter.update({"after_9": _uniform(0.018)})
    row = meter.summary()["after_9"]
    assert row["mean"] == pytest.approx(0.018)
    assert row["contrast"] == pytest.approx(0.0, abs=1e-7)
    assert row["channel_contrast"] == pytest.approx(0.0, abs=1e-7)
    assert row["moved"] != row["moved"]  # NaN without a start


def test_contrast_is_the_spatial_spread_of_the_channel_mean():
    mask = torch.zeros(1, 2, 1, 2)
    mask[0, 0, 0] = torch.tensor([0.0, 1.0])  # channel 0: 0 | 1
    mask[0, 1, 0] = torch.tensor([1.0, 0.0])  # channel 1: 1 | 0, cancels channel 0 in the mean
    meter = MaskMeter()
    meter.update({"m": mask})
    row = meter.summary()["m"]
    assert row["contrast"] == pytest.approx(0.0, abs=1e-7)  # the channel mean is flat...
    assert row["channel_contrast"] == pytest.approx(0.5)  # ...but every channel attends
    assert row["mean"] == pytest.approx(0.5)


def test_batches_are_averaged_per_image():
    meter = MaskMeter()
    meter.update({"m": _uniform(0.2, n=1)})
    meter.update({"m": _uniform(0.6, n=3)})
    assert meter.summary()["m"]["mean"] == pytest.approx((0.2 + 3 * 0.6) / 4)


def test_moved_share_counts_channels_past_the_threshold():
    start = ChannelProfile(mean=torch.tensor([0.02, 0.02, 0.02, 0.02]), spread=torch.zeros(4))
    now = ChannelProfile(mean=torch.tensor([0.02, 0.5, 0.03, 0.02]), spread=torch.tensor([0.0, 0.0, 0.0, 0.2]))
    assert moved_share(start, now) == pytest.approx(0.5)
    meter = MaskMeter()
    meter.update({"m": _uniform(0.5, c=4)})
    assert meter.summary({"m": start})["m"]["moved"] == pytest.approx(1.0)


def test_profiles_round_trip_through_plain_tensors():
    profiles = {
        "after_9": ChannelProfile(torch.rand(3), torch.rand(3)),
        "after_13": ChannelProfile(torch.rand(2), torch.rand(2)),
    }
    back = profiles_from_tensors(profiles_to_tensors(profiles))
    assert set(back) == set(profiles)
    assert torch.equal(back["after_13"].spread, profiles["after_13"].spread)


def test_columns_and_epoch_line():
    summary = {"after_9": {"mean": 0.018, "contrast": 0.0, "channel_contrast": 0.0, "moved": 0.0}}
    assert list(flatten_health(summary)) == health_columns(["after_9"])
    assert "switched off" in describe_health(summary)
    alive = {"after_9": {"mean": 0.3, "contrast": 0.08, "channel_contrast": 0.2, "moved": 0.6}}
    line = describe_health(alive)
    assert "after_9 0.300/0.080/60%" in line and "switched off" not in line
    assert describe_health({}) == ""
