"""benchmarks/epoch.py: its variants take turns, and its tables read its numbers."""

import torch
from benchmarks.epoch import RECALIBRATION, VARIANTS, _checkpoint_write, _interleaved, table


def test_the_variants_take_turns_and_the_warm_up_is_not_timed():
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    medians = _interleaved(steps, rounds=3, warmup=1)
    assert calls == ["a", "b"] * 4 and set(medians) == {"a", "b"}
    assert all(seconds >= 0 for seconds in medians.values())


def test_the_tables_give_each_variant_its_ratio_to_octattns_way():
    model = {
        "precision": "bf16",
        "parameters": 60_000_000,
        "train_img_s": {"fused": 15.0, "foreach": 9.0, "loop": 10.0},
        "update_s": {"fused": 0.09, "foreach": 0.2, "loop": 0.18},
        "recalibration_s": {RECALIBRATION[0]: 10.0, RECALIBRATION[1]: 4.0},
        "checkpoint_s": 2.0,
        "checkpoint_bytes": 720_000_000,
    }
    results = {"size": 147, "batch": 16, "rounds": 15, "recalibrate": 256, "models": {"inception_v4_attention": model}}
    text = table(results)
    rows = [line for line in text.splitlines() if line.startswith("| inception_v4_attention (60 M")]
    assert [r.split("|")[3].strip() for r in rows] == list(VARIANTS)
    assert [r.split("|")[5].strip() for r in rows] == ["1.50x", "0.90x", "1.00x"]
    assert "| 0.090 |" in rows[0] and "medians of 15 training steps" in text.lower()
    assert "| inception_v4_attention (bf16) | 10.0 | 4.0 | 2.50x |" in text
    assert "256 images at 147 px" in text
    # 220 scans at 15 images/s train in 14.7 s; the 2 s write is 12% of 16.7 s
    assert "| inception_v4_attention | 0.72 | 2.0 | 12% |" in text


def test_a_table_of_results_from_before_the_checkpoint_was_measured_still_renders():
    model = {
        "precision": "bf16",
        "parameters": 41_000_000,
        "train_img_s": {v: 10.0 for v in VARIANTS},
        "update_s": {v: 0.1 for v in VARIANTS},
        "recalibration_s": {RECALIBRATION[0]: 6.0, RECALIBRATION[1]: 3.0},
    }
    text = table({"size": 147, "batch": 16, "rounds": 15, "recalibrate": 256, "models": {"inception_v4": model}})
    assert "| inception_v4 (bf16) | 6.0 | 3.0 | 2.00x |" in text and "checkpoint" not in text


def test_the_checkpoint_write_is_timed_with_the_optimizers_state_and_leaves_nothing(tmp_path, monkeypatch):
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    optimizer.step()  # AdamW's two moments: the file holds three copies of the weights
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    seconds, size = _checkpoint_write(model, optimizer, rounds=2)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert seconds > 0 and 3 * weights < size < 3 * weights + 20_000
    assert list(tmp_path.iterdir()) == []
