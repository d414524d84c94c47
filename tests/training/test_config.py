import pytest

from octattn.demo import config_path
from octattn.errors import ConfigError
from octattn.training.config import TrainConfig, load_config


def test_defaults_are_the_paper_presets_recipe():
    config = load_config(None)
    assert config == TrainConfig()
    assert (config.policy, config.lr_backbone, config.lr_new, config.weight_decay, config.epochs) == (
        "paper",
        1e-5,
        1e-3,
        1e-4,
        20,
    )
    assert (config.optimizer, config.image_size, config.preprocess, config.balance) == (
        "adamw",
        299,
        "resize",
        "triple",
    )
    assert config.lr_new / config.lr_backbone == pytest.approx(100)  # the paper's ratio


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nmodel: inception_v4\n")
    config = load_config(path, ["epochs=5", "lr_new=1", "pretrained=false", "placement=[{after: 9, order: 2}]"])
    assert config.epochs == 5 and config.model == "inception_v4" and config.lr_new == 1.0
    assert config.pretrained is False and config.placement == [{"after": 9, "order": 2}]


def test_amp_off_survives_yaml_reading_off_as_false(tmp_path):
    # YAML 1.1 reads a bare ``off`` as false: both spellings must mean "off"
    path = tmp_path / "c.yaml"
    path.write_text("amp: off\n")
    assert load_config(path).amp == "off"
    assert load_config(None, ["amp=off"]).amp == "off"
    assert load_config(None, ["amp=bf16"]).amp == "bf16"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epoch=3"], "unknown key"),
        (["model=resnet"], "model='resnet' is not one of"),
        (["pretrained=maybe"], "must be true or false"),
        (["epochs=2.5"], "whole number"),
        (["batch_size=abc"], "must be a int"),
        (["epochs"], "key=value"),
        (["image_size=64"], "at least 75"),
        (["jitter=1.5"], "jitter must be in \\[0, 1\\], got 1.5"),
        (["randomise=-0.5"], "randomise must be in \\[0, 1\\], got -0.5"),
    ],
)
def test_bad_settings_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_yaml_file(tmp_path):
    (tmp_path / "c.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "paper/attention",
        "paper/inception_v4",
        "paper/inception_v3",
        "paper/attention-original",
        "paper/inception_v4-original",
        "paper/attention-last1",
        "paper/attention-nomask",
    ],
)
def test_bundled_presets_load(name):
    config = load_config(config_path(name))
    if name.startswith("paper/"):
        assert config.epochs == 20 and config.weight_decay == 1e-4 and config.optimizer == "adamw"
        assert config.lr_new / config.lr_backbone == pytest.approx(100)
        assert config.image_size == 299
        assert config.attention_mask is (name != "paper/attention-nomask")


def test_lr_mask_factor_must_be_positive():
    assert load_config(None, ["lr_mask_factor=10"]).lr_mask_factor == 10.0
    with pytest.raises(ConfigError, match="lr_mask_factor must be positive"):
        load_config(None, ["lr_mask_factor=0"])


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_val_every_must_be_a_whole_number_of_epochs(value):
    with pytest.raises(ConfigError, match="val_every"):
        TrainConfig(val_every=value).validate()


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_checkpoint_every_must_be_a_whole_number_of_epochs_or_zero(value):
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=value).validate()
    TrainConfig(checkpoint_every=0).validate()  # never: a run redone whole
