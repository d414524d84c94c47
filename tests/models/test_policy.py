import pytest
import torch
from torch import nn

import octattn
from octattn.errors import ConfigError
from octattn.models import param_groups, parameter_roles, set_train_mode

CASES = [
    ("inception_v4_attention", "paper", ("features.19", "features.20", "features.21"), ("attention", "last_linear")),
    ("inception_v4_attention", "last1", ("features.21",), ("attention", "last_linear")),
    ("inception_v4_attention", "all", ("",), ()),
    ("inception_v4", "paper", ("features.19", "features.20", "features.21"), ("last_linear",)),
    ("inception_v3", "paper", ("Mixed_7a", "Mixed_7b", "Mixed_7c"), ("fc",)),
    ("inception_v3", "last1", ("Mixed_7c",), ("fc",)),
]


def _trained_by(name: str, blocks: tuple[str, ...], new: tuple[str, ...]) -> bool:
    return any(name.startswith(b) for b in blocks + new)


def _frozen_bn_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    stats = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and not module.weight.requires_grad:
            stats[name] = module.running_mean.clone()
    return stats


@pytest.mark.parametrize(("model_name", "policy", "blocks", "new"), CASES)
def test_one_step_changes_exactly_what_the_policy_trains(model_name, policy, blocks, new):
    torch.manual_seed(0)
    # He init: with the identity init some trainable weights get an exactly zero first gradient.
    kwargs = {"attention_init": "he"} if model_name.endswith("attention") else {}
    model = octattn.create_model(model_name, **kwargs)
    groups = param_groups(model, policy, lr_backbone=0.01, lr_new=0.01, weight_decay=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_stats = _frozen_bn_stats(model)
    set_train_mode(model)
    optimizer = torch.optim.SGD(groups)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 1, 75, 75)), torch.tensor([0, 3]))
    loss.backward()
    optimizer.step()
    for name, param in model.named_parameters():
        trained = _trained_by(name, blocks, new)
        assert param.requires_grad == trained, name
        if trained:
            assert not torch.equal(param, before[name]), f"{name} should have changed"
        else:
            assert param.grad is None, f"{name} is frozen but has a gradient"
            assert torch.equal(param, before[name]), f"{name} is frozen but changed"
    for name, module in model.named_modules():
        if name in frozen_stats:
            assert not module.training
            assert torch.equal(module.running_mean, frozen_stats[name]), f"{name} running stats moved"


def test_paper_groups_have_the_papers_rates_and_no_decay_on_bn_and_bias():
    model = octattn.create_model("inception_v4_attention")
    groups = {g["name"]: g for g in param_groups(model, "paper")}
    assert set(groups) == {"backbone", "backbone_no_decay", "new", "new_no_decay"}
    assert groups["backbone"]["lr"] == 0.001 and groups["new"]["lr"] == 0.1
    assert groups["backbone"]["weight_decay"] == 1e-4 and groups["new_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["new_no_decay"]["params"])
    assert model.last_linear.weight in groups["new"]["params"]


def test_roles_cover_every_parameter():
    model = octattn.create_model("inception_v4_attention")
    roles = parameter_roles(model, "paper")
    assert set(roles.values()) == {"new", "backbone", "frozen"}
    assert roles["features.18.branch0.0.conv.weight"] == "frozen"
    assert roles["features.19.branch0.conv.weight"] == "backbone"


def test_unknown_policy():
    with pytest.raises(ConfigError, match="unknown policy"):
        parameter_roles(octattn.create_model("inception_v4"), "most")


def test_mask_branches_get_their_own_rate_only_when_asked():
    model = octattn.create_model("inception_v4_attention")
    default = param_groups(model, "paper", lr_backbone=1e-5, lr_new=1e-3)
    assert {g["name"] for g in default} == {"backbone", "backbone_no_decay", "new", "new_no_decay"}
    groups = {g["name"]: g for g in param_groups(model, "paper", lr_backbone=1e-5, lr_new=1e-3, lr_mask_factor=10)}
    assert groups["mask"]["lr"] == pytest.approx(1e-2) and groups["new"]["lr"] == pytest.approx(1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    in_mask = [names[id(p)] for p in groups["mask"]["params"] + groups["mask_no_decay"]["params"]]
    assert in_mask and all(".mask_body." in n or ".mask_head." in n for n in in_mask)
    mask_params = sum(1 for n, _ in model.named_parameters() if ".mask_body." in n or ".mask_head." in n)
    assert len(in_mask) == mask_params  # every mask parameter, and the trunks stay at lr_new
    assert not any(".mask_" in names[id(p)] for p in groups["new"]["params"] + groups["new_no_decay"]["params"])
