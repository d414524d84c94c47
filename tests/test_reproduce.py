"""`octattn reproduce` and `octattn compare` at a tiny size (two presets, one epoch)."""

from octattn.cli import main
from octattn.data.synth import write_phantom_tree
from tests.conftest import WRITES_RUNS

pytestmark = WRITES_RUNS

TINY = [
    "keep_checkpoint=false",  # finished runs are kept by their evaluation; their checkpoints are 0.7 GB each
    "pretrained=false",
    "epochs=1",
    "image_size=75",
    "batch_size=8",
    "num_workers=0",
    "threads=1",
    "val_fraction=0.25",
    "lr_new=0.01",
]


def test_reproduce_two_presets_then_resume(tmp_path, capsys):
    write_phantom_tree(tmp_path / "data", {"train": 4, "test": 2}, seed=5, size=(96, 93))
    args = ["reproduce", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "paper")]
    args += ["--only", "attention,inception_v4", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    for preset in ("attention", "inception_v4"):
        assert (tmp_path / "paper" / preset / "evaluation" / "metrics.json").exists()
        assert f"{preset}: test accuracy" in out
    page = (tmp_path / "paper" / "report" / "index.html").read_text()
    assert "inception_v4_attention" in page and ">inception_v4<" in page
    comparison = (tmp_path / "paper" / "comparison.txt").read_text()
    assert "McNemar exact test" in comparison and "95% CI" in comparison
    assert main(args) == 0
    assert "attention: already trained and evaluated, kept" in capsys.readouterr().out
    assert (
        main(
            [
                "compare",
                str(tmp_path / "paper" / "attention"),
                str(tmp_path / "paper" / "inception_v4"),
                "--data",
                str(tmp_path / "data"),
            ]
        )
        == 0
    )
    assert "accuracy: attention" in capsys.readouterr().out  # models named, not A and B


def test_reproduce_rejects_unknown_presets(tmp_path, capsys):
    assert main(["reproduce", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--only", "resnet"]) == 2
    assert "unknown preset" in capsys.readouterr().err
