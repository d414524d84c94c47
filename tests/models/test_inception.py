import pytest
import timm
import torch

import octattn
from octattn.errors import ConfigError
from octattn.models import MODEL_NAMES, InceptionV4Attention
from tests.conftest import cached_model

SHAPE_CASES = [
    (name, size, batch, chans)
    for name in MODEL_NAMES
    for size in [(75, 75), (107, 139)]
    for batch in (1, 2)
    for chans in (1, 3)
] + [("inception_v4_attention", (299, 299), 1, 1)]


@pytest.mark.parametrize(("name", "size", "batch", "chans"), SHAPE_CASES)
def test_logits_and_mask_shapes(name, size, batch, chans):
    model = cached_model(name, chans)
    with torch.no_grad():
        logits = model(torch.randn(batch, chans, *size))
    assert logits.shape == (batch, 4)
    if isinstance(model, InceptionV4Attention):
        masks = model.attention_masks()
        assert sorted(masks) == ["after_13", "after_17", "after_9"]
        for key, mask in masks.items():
            block = int(key.split("_")[1])
            with torch.no_grad():
                trunk = model.features[: block + 1](torch.zeros(batch, chans, *size))
            assert mask.shape == trunk.shape
            assert torch.all(mask > 0) and torch.all(mask < 1)


def test_timm_registry_builds_the_attention_model():
    model = timm.create_model("inception_v4_attention", num_classes=4, in_chans=1)
    assert isinstance(model, InceptionV4Attention)
    assert [p.after for p in model.placement] == [9, 13, 17]
    assert [p.order for p in model.placement] == [2, 1, 1]


def test_backbone_keeps_timm_parameter_names():
    plain = set(timm.create_model("inception_v4", num_classes=4, in_chans=1).state_dict())
    attention = set(octattn.create_model("inception_v4_attention").state_dict())
    assert plain <= attention
    assert all(k.startswith("attention.") for k in attention - plain)


def test_placement_is_configuration():
    model = octattn.create_model("inception_v4_attention", placement=[{"after": 5, "order": 1}])
    assert list(model.attention) == ["5"]
    assert model.attention["5"].order == 1
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 75, 75)).shape == (1, 4)


@pytest.mark.parametrize(
    "placement",
    [[{"after": 30, "order": 1}], [{"after": 9, "order": 1}, {"after": 9, "order": 2}], [{"order": 1}]],
)
def test_bad_placement_is_a_clear_error(placement):
    with pytest.raises(ConfigError):
        octattn.create_model("inception_v4_attention", placement=placement)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown model"):
        octattn.create_model("resnet50")


def _pre_logits(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


def test_identity_init_stays_close_to_the_plain_backbone():
    """Measured: 5.5% relative L2 difference of the pooled features (1.018^3 from three
    uniform masks); He initialisation gives a difference hundreds of times the signal."""
    torch.manual_seed(0)
    plain = octattn.create_model("inception_v4").eval()
    x = torch.randn(4, 1, 107, 107)
    differences = {}
    for init in ("identity", "he"):
        attention = octattn.create_model("inception_v4_attention", attention_init=init).eval()
        attention.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            a, b = _pre_logits(attention, x), _pre_logits(plain, x)
        differences[init] = float((a - b).norm() / b.norm())
    assert differences["identity"] < 0.08
    assert differences["he"] > 1.0


def test_models_command_lists_size_and_flops(capsys):
    from octattn.cli import main

    assert main(["models", "--size", "75"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"inception_v4_attention", "inception_v4", "inception_v3"}
    assert rows["inception_v4"][-1] == "1.00"
    assert float(rows["inception_v4_attention"][-1]) > 1.2  # attention costs FLOPs
    assert rows["inception_v4_attention"][1] == "60.48M" and rows["inception_v4"][1] == "41.15M"
