import pytest
import torch

from octattn.models.attention import MASK_INIT_BIAS, AttentionModule, ResidualUnit


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "stride", "size", "expected"),
    [
        (16, None, 1, (9, 9), (16, 9, 9)),
        (16, 32, 1, (9, 9), (32, 9, 9)),
        (16, 32, 2, (9, 9), (32, 5, 5)),
        (8, None, 1, (3, 5), (8, 3, 5)),
    ],
)
def test_residual_unit_shapes(in_ch, out_ch, stride, size, expected):
    unit = ResidualUnit(in_ch, out_ch, stride)
    assert unit(torch.randn(2, in_ch, *size)).shape == (2, *expected)


def test_residual_unit_projects_only_when_shape_changes():
    assert isinstance(ResidualUnit(16).shortcut, torch.nn.Identity)
    assert isinstance(ResidualUnit(16, 32).shortcut, torch.nn.Conv2d)
    assert isinstance(ResidualUnit(16, 16, stride=2).shortcut, torch.nn.Conv2d)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("size", [(35, 35), (17, 17), (9, 9), (7, 7), (3, 3), (1, 1), (11, 15)])
def test_attention_module_keeps_odd_sizes_and_masks_are_trunk_sized(order, size):
    module = AttentionModule(8, order=order, init="he").train()  # BN normalises: no saturation
    x = torch.randn(2, 8, *size)
    y = module(x)
    assert y.shape == x.shape
    mask = module.last_mask
    assert mask is not None and mask.shape == x.shape
    assert torch.all(mask > 0) and torch.all(mask < 1)


def test_order_two_nests_order_one():
    order2 = AttentionModule(8, order=2)
    assert order2.mask_body.inner is not None and order2.mask_body.inner.inner is None
    assert AttentionModule(8, order=1).mask_body.inner is None


@pytest.mark.parametrize(("init", "gain"), [("identity", 1.018), ("gentle", 1.119)])
def test_near_identity_inits_are_a_uniform_mask_times_input(init, gain):
    module = AttentionModule(8, order=2, init=init).eval()
    x = torch.randn(2, 8, 9, 9)
    y = module(x)
    mask = torch.sigmoid(torch.tensor(MASK_INIT_BIAS[init]))
    torch.testing.assert_close(y, x * (1 + mask))
    assert torch.allclose(module.last_mask, mask)
    assert float(1 + mask) == pytest.approx(gain, abs=1e-3)


def test_he_init_is_not_identity():
    module = AttentionModule(8, order=1, init="he").eval()
    x = torch.randn(2, 8, 9, 9)
    assert not torch.allclose(module(x), x, atol=1e-2)


def test_output_is_one_plus_mask_times_trunk():
    module = AttentionModule(4, order=1, p=0, init="he").eval()
    x = torch.randn(1, 4, 7, 7)
    expected = (1 + torch.sigmoid(module.mask_head(module.mask_body(x)))) * module.trunk(x)
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("bad", [0, 3])
def test_order_must_be_one_or_two(bad):
    with pytest.raises(ValueError, match="order"):
        AttentionModule(8, order=bad)
