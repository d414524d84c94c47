"""benchmarks/epoch.py: its variants take turns, and its tables read its numbers."""

from benchmarks.epoch import RECALIBRATION, VARIANTS, _interleaved, table


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
    }
    results = {"size": 147, "batch": 16, "rounds": 15, "recalibrate": 256, "models": {"inception_v4_attention": model}}
    text = table(results)
    rows = [line for line in text.splitlines() if line.startswith("| inception_v4_attention (60 M")]
    assert [r.split("|")[3].strip() for r in rows] == list(VARIANTS)
    assert [r.split("|")[5].strip() for r in rows] == ["1.50x", "0.90x", "1.00x"]
    assert "| 0.090 |" in rows[0] and "medians of 15 training steps" in text.lower()
    assert "| inception_v4_attention (bf16) | 10.0 | 4.0 | 2.50x |" in text
    assert "256 images at 147 px" in text
