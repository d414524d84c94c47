import numpy as np
import pytest
import torch

import octattn
from octattn.cli import main
from octattn.data.synth import write_phantom_tree
from octattn.explain.gradcam import grad_cam
from octattn.explain.localisation import score_map, summarise
from octattn.explain.render import overlay
from tests.data.helpers import write_scan


@pytest.mark.parametrize("name", ["inception_v4_attention", "inception_v4", "inception_v3"])
def test_grad_cam_for_every_model(name):
    torch.manual_seed(0)
    model = octattn.create_model(name)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 107, 107))  # moderate BatchNorm statistics
    cam, chosen = grad_cam(model.eval(), torch.randn(1, 107, 107))
    assert cam.shape == (107, 107) and 0 <= chosen < 4
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind


def test_localisation_scores_by_hand():
    lesion = np.zeros((20, 20), dtype=bool)
    lesion[5:10, 5:10] = True
    exact = score_map(lesion.astype(float), lesion)
    assert exact.hit and exact.energy_inside == pytest.approx(1.0) and exact.lesion_share == pytest.approx(0.0625)
    far = np.zeros((20, 20))
    far[19, 19] = 1.0
    assert not score_map(far, lesion, tolerance=14).hit  # the corner is 14.1 px from (9, 9)
    assert score_map(far, lesion, tolerance=15).hit
    uniform = score_map(np.random.default_rng(0).random((20, 20)), lesion, tolerance=0)
    assert abs(uniform.energy_inside - 0.0625) < 0.03  # a map that knows nothing scores chance
    summary = summarise([exact, uniform])
    assert summary["n"] == 2 and summary["chance"] == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="no lesion"):
        score_map(far, np.zeros((20, 20), dtype=bool))


def test_overlay_shape_and_errors():
    rgb = overlay(np.zeros((8, 9), dtype=np.uint8), np.ones((8, 9)))
    assert rgb.shape == (8, 9, 3) and rgb.dtype == np.uint8 and rgb[..., 0].max() > 0
    with pytest.raises(ValueError):
        overlay(np.zeros((8, 9), dtype=np.uint8), np.ones((9, 8)))


def test_explain_cli_writes_attention_and_gradcam_pngs(bundle, plain_bundle, tmp_path, capsys):
    scan = write_scan(tmp_path / "scan.jpeg", size=(128, 124))
    assert main(["explain", str(bundle), str(scan), "--out", str(tmp_path / "a")]) == 0
    names = sorted(p.name.split("_", 2)[2] for p in (tmp_path / "a").iterdir())
    assert names == [
        "attention_after_13.png",
        "attention_after_13_weighted.png",
        "attention_after_17.png",
        "attention_after_17_weighted.png",
        "attention_after_9.png",
        "attention_after_9_weighted.png",
        "gradcam.png",
    ]
    assert main(["explain", str(plain_bundle), str(scan), "--out", str(tmp_path / "p")]) == 0
    assert [p.name.split("_", 2)[2] for p in (tmp_path / "p").iterdir()] == ["gradcam.png"]


def test_explain_eval_scores_every_map_on_lesion_phantoms(bundle, tmp_path, capsys):
    write_phantom_tree(tmp_path / "ph", {"test": 2}, seed=3, size=(128, 124))
    assert main(["explain-eval", str(bundle), str(tmp_path / "ph"), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "6 lesion phantoms" in out
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    modules = ("attention_after_9", "attention_after_13", "attention_after_17")
    assert set(result["maps"]) == {*modules, *(f"{m}_weighted" for m in modules), "gradcam"}
    assert all(0 <= m["pointing_hit_rate"] <= 1 and m["n"] == 6 for m in result["maps"].values())
    assert set(result["per_class"]["gradcam"]) == {"CNV", "DME", "DRUSEN"}


def test_weighted_mask_summary_sees_channels_that_cancel_in_the_mean():
    from octattn.explain.attention import _summarise

    mask = torch.zeros(1, 2, 1, 2)
    mask[0, 0, 0] = torch.tensor([1.0, 0.0])  # channel 0 enhances the left position
    mask[0, 1, 0] = torch.tensor([0.0, 1.0])  # channel 1 the right one: the mean is flat
    trunk = torch.zeros(1, 2, 1, 2)
    trunk[0, 0] = 3.0  # channel 0 fires everywhere, channel 1 only weakly
    trunk[0, 1] = 1.0
    assert torch.equal(_summarise(mask, trunk, "mean")[0, 0, 0], torch.tensor([0.5, 0.5]))
    # left: (3 * 1 + 1 * 0) / 4; right: (3 * 0 + 1 * 1) / 4
    assert torch.allclose(_summarise(mask, trunk, "weighted")[0, 0, 0], torch.tensor([0.75, 0.25]))


class _PoolingModel(torch.nn.Module):
    """features[18] sees the image itself; logits = w * mean(image): Grad-CAM = relu(w * image)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(*[torch.nn.Identity() for _ in range(19)])
        self.head = torch.nn.Linear(1, 4)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0], [0.5], [0.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_grad_cam_peaks_on_the_evidence_in_the_right_place():
    image = torch.zeros(1, 30, 40)
    image[0, 20:24, 5:9] = 1.0  # a bright blob low on the left
    cam, chosen = grad_cam(_PoolingModel(), image)
    assert chosen == 0
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert 20 <= row < 24 and 5 <= col < 9
    assert cam[0, 39] == 0.0
    negative, _ = grad_cam(_PoolingModel(), image, class_index=1)  # evidence against class 1
    assert negative.max() == 0.0
