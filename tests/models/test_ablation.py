"""The mask-free ablation of the attention modules."""

import torch

import octattn
from octattn.inference.bundle import architecture_of
from octattn.models.attention import AttentionModule


def test_a_module_without_its_mask_is_its_trunk_alone():
    module = AttentionModule(8, order=1, init="he", use_mask=False).eval()
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(module(x), module.post(module.trunk(module.pre(x))))
    assert module.last_mask is None


def test_the_ablation_travels_in_the_bundle_architecture():
    model = octattn.create_model("inception_v4_attention", attention_mask=False)
    assert architecture_of("inception_v4_attention", model)["attention_mask"] is False
    assert "attention_mask" not in architecture_of(
        "inception_v4_attention", octattn.create_model("inception_v4_attention")
    )
    model.eval()
    model(torch.zeros(1, 1, 75, 75))
    assert model.attention_masks() == {}
