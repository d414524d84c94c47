import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from octattn.training.config import TrainConfig
from octattn.training.distributed import DistInfo, EpochShardSampler
from octattn.training.steps import TrainingDiverged, lr_factor, train_one_epoch


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("constant", 50, 1.0),
        ("cosine", 10, 1.0),
        ("cosine", 55, 0.5),
        ("cosine", 100, 0.0),
        ("step", 45, 0.1),
        ("step", 99, 0.01),
    ],
)
def test_lr_schedule(schedule, step, expected):
    assert lr_factor(step, 100, schedule, warmup_steps=10) == pytest.approx(expected, abs=1e-9)


def test_warmup_is_linear():
    assert [lr_factor(s, 100, "cosine", 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_onecycle_follows_torch_one_cycle_lr():
    """Our LambdaLR factor traces torch's OneCycleLR (cosine annealing, its defaults) step by step."""
    total = 57
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=total)
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"] / 0.2)
        optimizer.step()
        reference.step()
    ours = [lr_factor(s, total, "onecycle", warmup_steps=10) for s in range(total)]
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("weights", [None, torch.tensor([1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])])
def test_shards_of_two_ranks_are_the_single_order(weights):
    single = EpochShardSampler(10, DistInfo(0, 1), seed=3, weights=weights)
    ranks = [EpochShardSampler(10, DistInfo(r, 2), seed=3, weights=weights) for r in (0, 1)]
    for sampler in (single, *ranks):
        sampler.set_epoch(2)
    order = list(single)
    assert list(ranks[0]) == order[0::2] and list(ranks[1]) == order[1::2]
    single.set_epoch(3)
    assert list(single) != order


def test_padding_gives_every_rank_the_same_length():
    ranks = [EpochShardSampler(7, DistInfo(r, 2), seed=0) for r in (0, 1)]
    assert [len(list(s)) for s in ranks] == [4, 4] and len(ranks[0]) == 4


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1)[:, :4] * self.w * float("nan")


def test_non_finite_loss_stops_with_a_clear_message():
    data = TensorDataset(torch.randn(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), torch.arange(4))
    model = NaNModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    config = TrainConfig(channels_last=False, epochs=1)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1.*last good checkpoint"):
        train_one_epoch(model, DataLoader(data, batch_size=2), optimizer, scheduler, config, DistInfo(), 0, False)
    assert model.w.item() == 1.0


def test_training_loader_never_yields_a_lone_image():
    """9 images in batches of 4 would end with a batch of 1, which BatchNorm cannot train on."""
    from octattn.training.run_data import epoch_loader

    dataset = TensorDataset(torch.zeros(9, 1), torch.zeros(9), torch.arange(9))
    sampler = EpochShardSampler(9, DistInfo(), seed=0)
    config = TrainConfig(num_workers=0)
    sizes = [len(batch[0]) for batch in epoch_loader(dataset, sampler, 4, config, 0, DistInfo())]
    assert sizes == [4, 4]
    small = EpochShardSampler(3, DistInfo(), seed=0)
    assert [len(b[0]) for b in epoch_loader(dataset, small, 4, config, 0, DistInfo())] == [3]


def test_batchnorm_recalibration_sample_mixes_classes(tmp_path):
    """Files are sorted by class: an unshuffled prefix was all CNV and ruined the statistics."""
    from octattn.data.synth import write_phantom_tree
    from octattn.training.run_data import build_run_data

    write_phantom_tree(tmp_path / "d", {"train": 6}, seed=0, size=(64, 62))
    config = TrainConfig(data=str(tmp_path / "d"), image_size=75, val_fraction=0.25, num_workers=0)
    data = build_run_data(config, tmp_path / "run", DistInfo())
    assert len({s.label for s in data.recal_dataset.samples[:8]}) >= 3
    assert {s.path for s in data.recal_dataset.samples} == {s.path for s in data.train}  # triple's copies too


def test_training_scans_are_jittered_and_randomised_as_configured_and_nothing_else_is(tmp_path):
    from octattn.data.synth import write_phantom_tree
    from octattn.training.run_data import build_run_data

    write_phantom_tree(tmp_path / "d", {"train": 2}, seed=0, size=(64, 62))
    common = {"data": str(tmp_path / "d"), "image_size": 75, "val_fraction": 0.25, "num_workers": 0}
    for key in ("jitter", "randomise"):
        plain = build_run_data(TrainConfig(**common), tmp_path / f"plain-{key}", DistInfo())
        moved = build_run_data(TrainConfig(**common, **{key: 1.0}), tmp_path / key, DistInfo())
        torch.manual_seed(0)
        assert not torch.equal(moved.train_dataset[0][0], plain.train_dataset[0][0]), key
        # validation and BatchNorm recalibration see the scans as they are
        assert torch.equal(moved.val_dataset[0][0], plain.val_dataset[0][0])
        assert torch.equal(moved.recal_dataset[0][0], plain.recal_dataset[0][0])


def test_batchnorm_is_recalibrated_on_the_class_mix_the_loss_saw(tmp_path):
    """With the balanced sampler the statistics came from the natural mix (OCTDL: 58% AMD) while
    the weights had learnt on balanced batches: validation accuracy fell by about 20 points."""
    from collections import Counter

    from octattn.data.synth import write_phantom_tree
    from octattn.training.run_data import build_run_data
    from tests.data.helpers import write_scan

    write_phantom_tree(tmp_path / "d", {"train": 2, "val": 1}, seed=0, size=(64, 62))
    for i in range(28):  # NORMAL: 30 scans, each other class 2
        write_scan(tmp_path / "d" / "train" / "NORMAL" / f"NORMAL-{2000 + i}-1.jpeg", seed=i)
    common = {"data": str(tmp_path / "d"), "image_size": 75, "val_fraction": 0, "num_workers": 0}
    natural = Counter(
        s.class_name for s in build_run_data(TrainConfig(**common, balance="none"), tmp_path / "a", DistInfo()).train
    )
    assert natural["NORMAL"] == 30 and natural["CNV"] == 2

    sampled = build_run_data(TrainConfig(**common, balance="sampler"), tmp_path / "b", DistInfo())
    mix = Counter(s.class_name for s in sampled.recal_dataset.samples)
    assert sum(mix.values()) == len(sampled.train) and mix["NORMAL"] < 0.5 * sum(mix.values())  # natural: 83%
    again = build_run_data(TrainConfig(**common, balance="sampler"), tmp_path / "c", DistInfo())
    assert [s.path for s in again.recal_dataset.samples] == [s.path for s in sampled.recal_dataset.samples]

    tripled = build_run_data(TrainConfig(**common, balance="triple"), tmp_path / "t", DistInfo())
    copies = Counter((s.class_name, s.augment) for s in tripled.recal_dataset.samples)
    assert sum(n for (c, _), n in copies.items() if c == "DME") == 6 and len({a for c, a in copies if c == "DME"}) == 3
    image, _, _ = tripled.recal_dataset[0]
    assert tuple(image.shape[-2:]) == (75, 75)


def test_loader_workers_default_to_what_the_machine_has(monkeypatch):
    """With a fixed 4, a 2-core machine made PyTorch warn once per preset of `reproduce`."""
    import os

    from octattn.training.distributed import loader_workers

    cores = len(os.sched_getaffinity(0))
    assert loader_workers(-1, DistInfo()) == min(8, cores)
    assert loader_workers(3, DistInfo()) == 3 and loader_workers(0, DistInfo()) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loader_workers(-1, DistInfo(rank=1, world_size=2)) == min(8, cores // 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert loader_workers(-1, DistInfo()) == 8
    with pytest.raises(Exception, match="num_workers must be -1"):
        TrainConfig(num_workers=-2).validate()


def test_grad_checkpointing_setting_reaches_the_model_and_is_refused_for_baselines():
    from octattn.errors import ConfigError
    from octattn.training.config import load_config
    from octattn.training.loop import build_model

    config = load_config(None, ["grad_checkpointing=true", "pretrained=false", "policy=all"])
    model, _ = build_model(config, DistInfo())
    assert model.grad_checkpointing is True
    plain, _ = build_model(load_config(None, ["pretrained=false", "policy=all"]), DistInfo())
    assert plain.grad_checkpointing is False
    with pytest.raises(ConfigError, match="grad_checkpointing needs model=inception_v4_attention"):
        load_config(None, ["grad_checkpointing=true", "model=inception_v4"])


def test_best_epoch_breaks_macro_f1_ties_by_validation_loss():
    from octattn.training.loop import better_epoch

    best = {"epoch": 5, "val_macro_f1": 0.9749, "val_loss": 0.2516}
    assert better_epoch({"val_macro_f1": 0.9749, "val_loss": 0.0918}, best)  # the 12-epoch demo's epochs 5 and 6
    assert not better_epoch({"val_macro_f1": 0.9749, "val_loss": 0.30}, best)
    assert not better_epoch({"val_macro_f1": 0.95, "val_loss": 0.01}, best)
    assert better_epoch({"val_macro_f1": 0.98, "val_loss": 0.9}, best)
    assert better_epoch({"val_macro_f1": 0.5, "val_loss": 1.0}, {"epoch": -1, "val_macro_f1": -1.0})


@pytest.mark.parametrize(
    ("amp", "native", "expected"),
    [("off", True, "fp32"), ("bf16", False, "bf16"), ("auto", True, "bf16"), ("auto", False, "fp32")],
)
def test_training_amp_follows_the_inference_precision_rule(monkeypatch, amp, native, expected):
    from octattn import precision
    from octattn.training.steps import training_precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert training_precision(TrainConfig(amp=amp), torch.device("cpu")) == expected


def test_split_seed_gives_seeds_one_validation_split(tmp_path):
    """Seeds of one ensemble must hold out the same patients (``split_seed``); without it each
    seed splits its own way (what made an ensemble's operating points optimistic)."""
    from octattn.data.synth import write_phantom_tree
    from octattn.training.run_data import build_run_data

    write_phantom_tree(tmp_path / "d", {"train": 10}, seed=0, size=(64, 62))
    common = {"data": str(tmp_path / "d"), "image_size": 75, "val_fraction": 0.25, "num_workers": 0}

    def held_out(name: str, **keys) -> set[str]:
        data = build_run_data(TrainConfig(**common, **keys), tmp_path / name, DistInfo())
        return {str(s.path) for s in data.val}

    assert held_out("a", seed=0, split_seed=0) == held_out("b", seed=1, split_seed=0)
    assert held_out("c", seed=0) != held_out("d", seed=1)
    assert json.loads((tmp_path / "b" / "split.json").read_text())["seed"] == 0


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_optimizer_is_fused_on_the_cpu_and_updates_as_the_unfused_one(name):
    """The fused kernel halves AdamW's update of the attention model's 60 M parameters on a CPU;
    it must keep each group's rate and weight decay and make the same update."""
    from octattn.training.loop import make_optimizer

    def step(fused: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
        groups = [
            {"params": list(model[0].parameters()), "lr": 0.01, "weight_decay": 1e-4},
            {"params": list(model[1].parameters()), "lr": 0.1, "weight_decay": 0.0},
        ]
        config = TrainConfig(optimizer=name)
        device = torch.device("cpu" if fused else "meta")  # no fused kernel on meta: the unfused path
        optimizer = make_optimizer(config, groups, device)
        assert bool(optimizer.defaults.get("fused")) is fused
        assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(5, 4)).pow(2).mean().backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    for fused, unfused in zip(step(True), step(False), strict=True):
        torch.testing.assert_close(fused, unfused)


@pytest.mark.parametrize(("epochs", "every", "validated"), [(7, 3, [3, 6, 7]), (6, 3, [3, 6]), (4, 1, [1, 2, 3, 4])])
def test_a_cadence_validates_every_nth_epoch_and_the_last(epochs, every, validated):
    from octattn.training.loop import validation_epoch

    config = TrainConfig(epochs=epochs, val_every=every)
    assert [e + 1 for e in range(epochs) if validation_epoch(e, config)] == validated


@pytest.mark.parametrize(
    ("every", "keep", "written"),
    [(1, True, [1, 2, 3, 4, 5]), (1, False, [1, 2, 3, 4]), (2, True, [2, 4, 5]), (2, False, [2, 4]), (0, False, [])],
)
def test_checkpoints_follow_their_cadence_and_keep_checkpoint_decides_the_last(every, keep, written):
    from octattn.training.loop import checkpoint_epoch

    config = TrainConfig(epochs=5, checkpoint_every=every, keep_checkpoint=keep)
    assert [e + 1 for e in range(5) if checkpoint_epoch(e, config)] == written
