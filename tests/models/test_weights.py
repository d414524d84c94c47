import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file

import octattn
from octattn.errors import WeightsError


@pytest.fixture(scope="module")
def imagenet_like_file(tmp_path_factory):
    """A randomly initialised ImageNet-shaped (3 channels, 1000 classes) inception_v4."""
    torch.manual_seed(1)
    source = timm.create_model("inception_v4", num_classes=1000, in_chans=3)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path))
    yield path, state
    shutil.rmtree(path.parent, ignore_errors=True)  # 0.17 GB: gone with the module, not at the session's end


@pytest.mark.parametrize("name", ["inception_v4", "inception_v4_attention"])
def test_local_weights_load_into_the_backbone(imagenet_like_file, name):
    path, state = imagenet_like_file
    model = octattn.create_model(name, in_chans=1, weights=path)
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith("last_linear"):
            assert own[key].shape[0] == 4
        elif key == "features.0.conv.weight":
            torch.testing.assert_close(own[key], value.sum(dim=1, keepdim=True))
        else:
            assert torch.equal(own[key], value), key


def test_three_channel_model_takes_rgb_weights_unchanged(imagenet_like_file):
    path, state = imagenet_like_file
    model = octattn.create_model("inception_v4", in_chans=3, weights=path)
    assert torch.equal(model.state_dict()["features.0.conv.weight"], state["features.0.conv.weight"])


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "v3.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("inception_v3").state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match=r"v3\.safetensors: does not fit this backbone: .*missing.*unexpected"):
        octattn.create_model("inception_v4", weights=path)


def test_wrong_shape_is_reported_not_dropped(imagenet_like_file, tmp_path):
    _, state = imagenet_like_file
    bad = dict(state)
    bad["features.5.conv.conv.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    with pytest.raises(WeightsError, match="wrong shape"):
        octattn.create_model("inception_v4", weights=path)


def test_pickles_and_garbage_are_refused(tmp_path):
    pickle = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, pickle)
    with pytest.raises(WeightsError, match=r"only \.safetensors"):
        octattn.create_model("inception_v4", weights=pickle)
    garbage = tmp_path / "model.safetensors"
    garbage.write_text("not weights")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        octattn.create_model("inception_v4", weights=garbage)
    with pytest.raises(WeightsError, match="not found"):
        octattn.create_model("inception_v4", weights=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["inception_v4_attention", "inception_v4", "inception_v3"])
def test_preprocessing_comes_from_timms_pretrained_config(name):
    from timm.models import get_pretrained_cfg

    from octattn.models.weights import PRETRAINED_SOURCES, preprocess_for

    cfg = get_pretrained_cfg(PRETRAINED_SOURCES[name].hub_repo.removeprefix("timm/"))
    pre = preprocess_for(name, 107, in_chans=1)
    assert pre.size == (107, 107) and pre.interpolation == cfg.interpolation
    assert pre.mean == pytest.approx(sum(cfg.mean) / 3) and pre.std == pytest.approx(sum(cfg.std) / 3)


def test_offline_pretrained_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match=r"inception_v4\.tf_in1k/resolve/main/model\.safetensors.*--weights"):
        octattn.create_model("inception_v4", pretrained=True)
