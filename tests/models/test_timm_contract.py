"""timm's model contract, checked our way on octattn's three models (after timm's own
tests/test_models.py: forward, backward, default configs, TorchScript, features, FX)."""

import pytest
import timm
import torch
from timm.data import resolve_data_config
from timm.models._features_fx import create_feature_extractor, get_graph_node_names

import octattn  # noqa: F401  (registers inception_v4_attention)
from octattn.models import MODEL_NAMES

SMALL = 75  # the smallest input Inception takes; 299 only where timm checks the default size


def _model(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **{"in_chans": 1, "num_classes": 4, **kwargs})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward(name):
    out = _model(name).eval()(torch.randn(2, 1, SMALL, SMALL))
    assert out.shape == (2, 4) and not out.isnan().any()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_parameter(name):
    model = _model(name, num_classes=42).train()
    out = model(torch.randn(2, 1, SMALL, SMALL))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert out.shape == (2, 42) and not missing


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_cfg_pooling_and_classifier_reset(name):
    model = _model(name).eval()
    cfg, state = model.pretrained_cfg, model.state_dict()
    assert model.default_cfg is cfg
    assert f"{cfg['classifier']}.weight" in state and f"{cfg['first_conv']}.weight" in state
    x = torch.randn(1, 1, 299, 299)
    with torch.no_grad():
        assert model.forward_features(x).shape[-2:] == tuple(cfg["pool_size"])
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
        model.reset_classifier(0, "")
        assert model(x).shape[-2:] == tuple(cfg["pool_size"])


def test_attention_model_declares_its_real_input():
    model = timm.create_model("inception_v4_attention")
    assert model.in_chans == 1 and model.num_classes == 4
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (1, 299, 299) and config["mean"] == (0.5,) and config["std"] == (0.5,)
    assert config["interpolation"] == "bicubic" and config["crop_pct"] == 1.0 and config["crop_mode"] == "squash"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torchscript(name):
    model = _model(name).eval()
    x = torch.randn(1, 1, SMALL, SMALL)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_features_only_follows_feature_info(name):
    extractor = timm.create_model(name, pretrained=False, features_only=True, in_chans=1).eval()
    channels = extractor.feature_info.channels()
    outputs = extractor(torch.randn(1, 1, 96, 96))
    assert len(channels) >= 4 and [o.shape[1] for o in outputs] == channels
    if name == "inception_v4_attention":  # the taps come after the attention modules
        assert extractor.feature_info.module_name() == [
            "features.2",
            "features.3",
            "attention.9",
            "attention.17",
            "features.21",
        ]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("train", [False, True])
def test_fx_graph_matches_eager(name, train):
    model = _model(name).train(train)
    nodes = get_graph_node_names(model)[1 if not train else 0]
    graph = create_feature_extractor(model, return_nodes=[nodes[-1]])
    x = torch.randn(2, 1, SMALL, SMALL)
    torch.manual_seed(1)
    eager = model(x)
    torch.manual_seed(1)
    traced = next(iter(graph(x).values()))
    torch.testing.assert_close(traced, eager, rtol=1e-4, atol=1e-5)
    if train:
        traced.mean().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 1, SMALL, SMALL)
    grads = []
    for enable in (False, True):
        model = _model("inception_v4_attention", attention_init="he").train()
        model.set_grad_checkpointing(enable)
        model(x).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_imagenet_backbone_through_timm_keeps_the_new_layers(tmp_path):
    from safetensors.torch import save_file

    imagenet = timm.create_model("inception_v4", pretrained=False)  # the checkpoint's layout: RGB, 1000 classes
    save_file(imagenet.state_dict(), tmp_path / "in1k.safetensors")
    model = timm.create_model(
        "inception_v4_attention.tf_in1k",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(tmp_path / "in1k.safetensors")},
        num_classes=4,
        in_chans=1,
    )
    torch.testing.assert_close(model.features[10].branch0.conv.weight, imagenet.features[10].branch0.conv.weight)
    torch.testing.assert_close(model.features[0].conv.weight, imagenet.features[0].conv.weight.sum(1, keepdim=True))
    assert model.attention["9"].mask_head[-1].bias[0].item() == -4.0  # still the near-identity start
