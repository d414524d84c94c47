"""The real-scan benchmark's own logic: OCTDL's audited split and its leaks removed."""

import csv
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import benchmarks.real_scans as real_scans
import numpy as np
import pytest
from benchmarks.common import FROM_BACKBONE
from benchmarks.real_scans import headline, merged_results, octdl_clean_manifest, plan, seeds_of, summary, table

from octattn.training.config import save_config
from tests.conftest import link_weights
from tests.data.helpers import make_tree


def test_octdl_clean_manifest_drops_the_later_copy_of_every_leak(tmp_path):
    root = make_tree(
        tmp_path / "octdl",
        {
            "train": {"AMD": ["amd_1_1.jpg", "amd_2_1.jpg"], "NO": ["no_3_1.jpg"]},
            "val": {"AMD": ["amd_2_2.jpg"], "NO": ["no_4_1.jpg"]},
            "test": {"AMD": ["amd_5_1.jpg", "amd_6_1.jpg"], "NO": ["no_7_1.jpg"]},
        },
    )
    # the same file under another patient's name in test: OCTDL has 25 such
    (root / "test" / "AMD" / "amd_6_1.jpg").write_bytes((root / "train" / "AMD" / "amd_1_1.jpg").read_bytes())
    audit = octdl_clean_manifest(root, tmp_path / "clean.csv")
    with (tmp_path / "clean.csv").open() as handle:
        kept = {Path(r["path"]).name: r["split"] for r in csv.DictReader(handle)}
    assert "amd_6_1.jpg" not in kept and "amd_2_2.jpg" not in kept  # the copy; patient 2 in train and val
    assert kept["amd_1_1.jpg"] == "train" and kept["amd_2_1.jpg"] == "train" and kept["amd_5_1.jpg"] == "test"
    assert audit["dropped"] == {"patient": 1, "exact": 1, "near": 0}
    assert audit["dropped_by_split"] == {"train": 0, "val": 1, "test": 1}
    assert audit["kept_counts"]["test"] == {"AMD": 1, "NO": 1}
    assert str(root) not in str(audit)  # the data set's path never reaches the results
    # --quick keeps the first scans of each class in each split, after the leaks are gone
    capped = octdl_clean_manifest(root, tmp_path / "capped.csv", cap_per_class=1)
    with (tmp_path / "capped.csv").open() as handle:
        names = [Path(r["path"]).name for r in csv.DictReader(handle)]
    assert names == ["amd_1_1.jpg", "no_3_1.jpg", "no_4_1.jpg", "amd_5_1.jpg", "no_7_1.jpg"]
    assert capped["kept_counts"]["train"] == {"AMD": 1, "NO": 1} and capped["dropped"] == audit["dropped"]


def _fake_results() -> dict:
    def run(acc: float) -> dict:
        return {
            "n": 307,
            "accuracy": acc,
            "accuracy_ci": [acc - 0.05, acc + 0.05],
            "macro_f1": acc - 0.1,
            "macro_f1_ci": [acc - 0.15, acc - 0.05],
        }

    names = [
        "attention-scratch",
        "attention-phantom",
        "plain-scratch",
        "plain-phantom",
        "nomask-scratch",
        "nomask-phantom",
        "attention-phantom_standard",
    ]
    comparison = {"difference_points": 2.0, "p_value": 0.5}
    zero = {"n": 307, "accuracy": 0.4, "macro_f1": 0.3, "accuracy_ci": [0.35, 0.45]}
    stats = {"speckle_contrast": 0.2, "noise_floor": 20.0, "wedge_rate": 0.5, "distance_to_real": {"quantiles": 3.0}}
    return {
        "quick": False,
        "size": 147,
        "epochs": 6,
        "seeds": [0, 1],
        "oct2017_cv": {
            "scans": 307,
            "groups": 222,
            "folds": 5,
            "runs": {n: run(0.5 + 0.01 * i) for i, n in enumerate(names)},
            "comparisons": {
                "attention-phantom vs attention-scratch": comparison,
                "plain-phantom vs plain-scratch": comparison,
                "attention-scratch vs plain-scratch": comparison,
            },
        },
        "octdl": {
            "size": 128,
            "epochs": 8,
            "audit": {
                "cross_split_patients": 1,
                "exact_duplicate_groups": 25,
                "near_duplicate_pairs": 43,
                "dropped_by_split": {"train": 0, "val": 18, "test": 49},
                "kept_counts": {"test": {"AMD": 300, "NO": 80}},
            },
            "runs": {
                "attention-s0": {"accuracy": 0.6, "macro_f1": 0.5},
                "attention-s1": {"accuracy": 0.6, "macro_f1": 0.3},
                "plain-s0": {"accuracy": 0.5, "macro_f1": 0.45},
                "plain-s1": {"accuracy": 0.5, "macro_f1": 0.45},
            },
            "comparisons": {"attention vs plain, seed 0": comparison},
        },
        "across": {
            k: {"n": 100, "accuracy": 0.5, "macro_f1": 0.4, "recall": {"recall DME": 0.5}}
            for k in ("oct2017_model_on_octdl", "octdl_model_on_oct2017")
        },
        "zero_shot": {f"{g}_{s}": zero for g in ("standard", "realistic") for s in ("all", "not_in_style")},
        "phantom_statistics": {
            "real": {"scans": 207, "speckle_contrast": 0.13, "noise_floor": 27.0, "wedge_rate": 0.7},
            "standard": stats,
            "realistic": stats,
        },
    }


def test_headline_names_the_best_model_of_each_part_and_the_tables_show_every_run():
    results = _fake_results()
    top = headline(results)
    assert top["oct2017_cv"]["best"] == "attention-phantom_standard" and top["oct2017_cv"]["accuracy"] == 0.56
    # OCTDL: the best mean macro-F1 over seeds (plain 0.45 beats attention's 0.5 and 0.3)
    assert top["octdl"] == {"best": "plain", "seeds": 2, "accuracy": 0.5, "macro_f1": 0.45}
    assert set(top["zero_shot"]) == {"standard_all", "realistic_all"}
    assert top["phantom_pretraining_gain_points"] == {
        "attention-phantom vs attention-scratch": 2.0,
        "plain-phantom vs plain-scratch": 2.0,
    }
    assert top["lesion_pretraining_gain_points"] == {}  # no lesion-sized start in these results
    results["oct2017_cv"]["comparisons"]["plain-lesion_gentle_e20-s1 vs plain-scratch-s1"] = {
        "difference_points": 9.0,
        "p_value": 0.01,
    }
    assert headline(results)["lesion_pretraining_gain_points"] == {
        "plain-lesion_gentle_e20-s1 vs plain-scratch-s1": 9.0
    }
    assert "plain-lesion_gentle_e20-s1 vs plain-scratch-s1" not in headline(results)["phantom_pretraining_gain_points"]
    text = table(results)
    for name in results["oct2017_cv"]["runs"]:
        assert f"| {name} |" in text
    assert "| plain-s1 | 50.0% | 45.0% |" in text
    assert "accuracy 50.0%; recall DME 50.0%." in text  # no prediction counts kept: none shown
    results["across"]["oct2017_model_on_octdl"]["predicted"] = {"CNV": 60, "DME": 40, "NORMAL": 0}
    assert "recall DME 50.0%; predicted as CNV 60, DME 40." in table(results)
    assert "67 later copies dropped (val 18, test 49), 380 test scans left" in text
    # the sentence ends where it is written, not on a line of its own (a stray ":" line broke the docs)
    assert "class-balanced sampling:\n" in text and "\n:" not in text
    assert "QUICK RUN" not in text


def test_the_readme_summary_puts_each_best_run_beside_its_target_and_its_machine():
    from benchmarks import docs_tables

    results = {
        **_fake_results(),
        "machine": _machine("Intel Xeon", "2026-12-04"),
        "machines": {"octdl": _machine("AMD EPYC", "2026-12-05")},
    }
    text = summary(results, elsewhere=None)
    assert (
        "| OCT2017, 307 scans, 5-fold CV, from scratch or phantoms (a) | attention-phantom_standard (1) | 56.0% "
        in text
    )
    assert (
        "| OCTDL, its clean test split (b) | plain (2) | 50.0% | 45.0% | macro-F1 0.70 | AMD EPYC 2026-12-05 |" in text
    )
    assert "| phantoms only, on the 307 real scans (d) | standard phantoms (1) | 40.0% | 30.0% | accuracy 50% " in text
    # what pretraining adds: one row per start and seed, a column per model ("-": not run)
    full_rate = "realistic phantoms' backbone, every layer at the full rate"
    assert f"| OCT2017 | {full_rate} | 0 | +2.0 (p 0.5) | +2.0 (p 0.5) | - |" in text
    # the paper's question: one row per setting and seed, with the CPU that seed ran on
    assert "| OCT2017 | scratch | 0 | +2.0 (p 0.5) | - | Intel Xeon |" in text
    assert "| OCTDL | scratch | 0 | +2.0 (p 0.5) | - | AMD EPYC |" in text
    assert "phantoms' backbone (part d's)" not in text  # elsewhere=None: no probe's file is read
    assert "| attention-scratch |" not in text  # the full tables stay on the docs page
    # a README block names the view: the same JSON through summary() instead of table()
    assert docs_tables.BLOCK.match("<!-- results: real_scans.summary -->\n| old |\n<!-- /results -->")["name"] == (
        "real_scans.summary"
    )


XEON = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "cpu_flags": "amx_bf16", "date": "2026-12-06", "torch": "2"}
DOWN = {"difference_points": -2.9, "interval_points": [-7.4, 1.3], "p_value": 0.21}
UP = {"difference_points": 9.8, "interval_points": [5.0, 14.3], "p_value": 0.0001}


def _write_oct2017_probe(folder: Path) -> None:
    """A ``oct2017_from_backbone.json`` of one seed: attention - plain DOWN, - no masks UP."""
    oct2017 = {
        "machine": XEON,
        "backbone": "lesion-sized",
        "epochs": 20,
        "seeds": {"0": {"machine": XEON, "comparisons": {"attention vs plain": DOWN, "attention vs nomask": UP}}},
    }
    (folder / "oct2017_from_backbone.json").write_text(json.dumps(oct2017))


def test_the_paper_question_table_adds_the_backbone_probes_answers_from_their_files(tmp_path):
    _write_oct2017_probe(tmp_path)
    oct2017 = json.loads((tmp_path / "oct2017_from_backbone.json").read_text())
    oct2017["from_backbone:diverse-long-s18"] = {
        "backbone": "diverse-long-s18",
        "weights": "runs/s18/backbone.safetensors",
        "epochs": 20,
        "seeds": {"0": {"machine": XEON, "comparisons": {"attention vs plain": UP}}},
    }
    (tmp_path / "oct2017_from_backbone.json").write_text(json.dumps(oct2017))
    octdl = {
        "from_backbone:lesion-sized": {
            "generator": "lesion-sized",
            "variant": "24 epochs",
            "machine": XEON,
            # seed 1 fine-tuned plain alone: no model comparison, so no row
            "runs": {"0": {"paper_question": {"attention vs plain": UP}}, "1": {}},
        },
        # a backbone file's answer is not part d's: the table names it as a phantom probe's
        "from_backbone:diverse-long-s17": {
            "generator": "diverse-long-s17",
            "weights": "b.safetensors",
            "variant": "24 epochs",
            "machine": XEON,
            "runs": {"0": {"paper_question": {"attention vs plain": DOWN}}},
        },
    }
    (tmp_path / "octdl_recipe.json").write_text(json.dumps(octdl))
    text = summary({**_fake_results(), "machine": _machine("AMD EPYC", "2026-12-05")}, elsewhere=tmp_path)
    rows = [line for line in text.splitlines() if "(part d's)" in line]
    assert rows == [
        "| OCT2017 | lesion-sized phantoms' backbone (part d's) at a tenth, 20 epochs | 0 "
        "| -2.9 (-7.4 to +1.3; p 0.21) | +9.8 (+5.0 to +14.3; p 0.0001) | Intel Xeon |",
        "| OCTDL | lesion-sized phantoms' backbone (part d's) at a tenth, 24 epochs | 0 "
        "| +9.8 (+5.0 to +14.3; p 0.0001) | - | Intel Xeon |",
    ]
    assert [line for line in text.splitlines() if "(a phantom probe's)" in line] == [
        "| OCT2017 | diverse-long-s18 backbone (a phantom probe's) at a tenth, 20 epochs | 0 "
        "| +9.8 (+5.0 to +14.3; p 0.0001) | - | Intel Xeon |",
        "| OCTDL | diverse-long-s17 backbone (a phantom probe's) at a tenth, 24 epochs | 0 "
        "| -2.9 (-7.4 to +1.3; p 0.21) | - | Intel Xeon |",
    ]
    # the probes' rows come after part a's and b's own, in the docs' table as in the README's
    assert text.index("| OCT2017 | scratch | 0 |") < text.index(rows[0])
    assert rows[0] in table({**_fake_results(), "machine": _machine("AMD EPYC", "2026-12-05")}, elsewhere=tmp_path)
    assert real_scans.probe_answers(tmp_path / "absent") == []


def test_a_quick_runs_table_shows_no_committed_probe_answers(tmp_path):
    results = {**_fake_results(), "headline": {}}
    real_scans.write_real_scan_results(results, tmp_path)
    assert "| OCT2017 | scratch | 0 |" in (tmp_path / "real_scans.md").read_text()
    assert "(part d's)" not in (tmp_path / "real_scans.md").read_text()  # the committed probes' rows
    _write_oct2017_probe(tmp_path)
    real_scans.write_real_scan_results(results, tmp_path)
    assert "(part d's)" in (tmp_path / "real_scans.md").read_text()


def _machine(cpu: str, date: str) -> dict:
    return {"cpu": cpu, "cores": 2, "cpu_flags": "avx2", "date": date}


def test_update_replaces_only_the_parts_run_and_each_part_names_its_machine(tmp_path):
    old = {"machine": _machine("Intel Xeon", "2026-12-01"), **_fake_results()}
    committed = tmp_path / "real_scans.json"
    committed.write_text(json.dumps(old))
    fresh_octdl = {**old["octdl"], "runs": {"plain-s0": {"accuracy": 0.7, "macro_f1": 0.6}}}
    now = _machine("AMD EPYC", "2026-12-02")
    merged = merged_results(committed, {"octdl": fresh_octdl}, {"b"}, now)
    assert merged["octdl"]["runs"] == {"plain-s0": {"accuracy": 0.7, "macro_f1": 0.6}}
    assert merged["machines"]["octdl"] == now
    assert merged["oct2017_cv"]["runs"] == old["oct2017_cv"]["runs"]  # part a kept as it was
    assert merged["machines"]["oct2017_cv"]["cpu"] == "Intel Xeon"
    assert merged["machines"]["zero_shot"]["cpu"] == "Intel Xeon"
    # the table (its file's machine is the one it is written on) names the other CPU where it was used
    text = table({**merged, "machine": now})
    assert "(measured 2026-12-01 on Intel Xeon" in text.split("**b. OCTDL**")[0]
    assert "on AMD EPYC" not in text
    assert headline(merged)["octdl"]["best"] == "plain"


def test_update_refuses_a_part_that_gave_nothing_and_a_missing_file(tmp_path):
    committed = tmp_path / "real_scans.json"
    with pytest.raises(SystemExit, match="no results to update"):
        merged_results(committed, {}, {"b"}, _machine("x", "2026-12-02"))
    committed.write_text(json.dumps({"machine": _machine("Intel Xeon", "2026-12-01"), **_fake_results()}))
    with pytest.raises(SystemExit, match="part b gave no octdl"):
        merged_results(committed, {}, {"b"}, _machine("x", "2026-12-02"))


def test_results_go_to_the_folder_asked_for(tmp_path):
    """A --quick run passes its work folder, so that it never writes over the committed results."""
    from benchmarks.common import write_results

    write_results("real_scans", {"x": 1}, lambda r: f"x = {r['x']}", tmp_path / "quick")
    assert json.loads((tmp_path / "quick" / "real_scans.json").read_text())["x"] == 1
    assert (tmp_path / "quick" / "real_scans.md").read_text().startswith("x = 1")


def _with_transfer(results: dict) -> dict:
    """Part e beside the others: the OCTDL backbone's runs and the scratch runs they pair with."""

    def run(acc: float) -> dict:
        return {"n": 307, "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.05], "macro_f1": acc - 0.1}

    runs = {"attention-scratch": 0.3, "plain-scratch": 0.31, "attention-octdl": 0.62, "plain-octdl": 0.58}
    return {
        **results,
        "oct2017_transfer": {
            "scans": 307,
            "groups": 222,
            "folds": 5,
            "runs": {name: {**run(acc), "macro_f1_ci": [0.1, 0.2]} for name, acc in runs.items()},
            "comparisons": {
                "attention-octdl vs attention-scratch": {"difference_points": 32.0, "p_value": 1e-6},
                "plain-octdl vs plain-scratch": {"difference_points": 27.0, "p_value": 1e-5},
                "attention-octdl vs plain-octdl": {"difference_points": 4.0, "p_value": 0.3},
            },
        },
    }


def test_part_e_has_its_own_headline_gain_and_table():
    results = _with_transfer(_fake_results())
    top = headline(results)
    assert top["oct2017_transfer"] == {"best": "attention-octdl", "seeds": 1, "accuracy": 0.62, "macro_f1": 0.52}
    # only "M-octdl vs M-scratch" is a pretraining gain; the model comparison is not
    assert top["octdl_pretraining_gain_points"] == {
        "attention-octdl vs attention-scratch": 32.0,
        "plain-octdl vs plain-scratch": 27.0,
    }
    assert top["oct2017_cv"]["best"] == "attention-phantom_standard"  # part a's headline untouched
    e = table(results).split("**e. Real OCT pretraining**")[1]
    assert "| attention-octdl | 62.0% (57.0%-67.0%) |" in e and "| attention-octdl vs plain-octdl | +4.0 (p 0.3) |" in e
    assert "**e." not in table(_fake_results()) and "octdl_pretraining_gain_points" not in headline(_fake_results())
    # the paper's question from the OCTDL backbone is asked at the gentle start (the paper's
    # transfer shape) only; the full-rate start's model comparison is not part of it
    assert "oct2017_transfer" not in top["paper_question"]["attention vs plain"]
    gentle = {"difference_points": -3.0, "p_value": 0.4}
    results["oct2017_transfer"]["comparisons"]["attention-octdl_gentle vs plain-octdl_gentle"] = gentle
    results["oct2017_transfer"]["comparisons"]["plain-octdl_gentle vs plain-scratch"] = gentle
    again = headline(results)
    assert again["paper_question"]["attention vs plain"]["oct2017_transfer"] == {"seed 0": gentle}
    assert again["octdl_pretraining_gain_points"]["plain-octdl_gentle vs plain-scratch"] == -3.0
    # a later seed's gain is one too (its runs carry the seed's mark), a cross-seed pair is not
    results["oct2017_transfer"]["comparisons"]["plain-octdl_gentle-s1 vs plain-scratch-s1"] = gentle
    results["oct2017_transfer"]["comparisons"]["plain-octdl_gentle-s1 vs plain-scratch"] = gentle
    gains = headline(results)["octdl_pretraining_gain_points"]
    assert "plain-octdl_gentle-s1 vs plain-scratch-s1" in gains
    assert "plain-octdl_gentle-s1 vs plain-scratch" not in gains
    text = summary({**results, "machine": _machine("AMD EPYC", "2026-12-05")}, elsewhere=None)
    assert "| OCT2017 | the OCTDL model's backbone at a tenth of the rate | 1 | - | -3.0 (p 0.4) | - |" in text
    assert "| OCT2017 | the OCTDL model's backbone at a tenth of the rate | 0 | -3.0 (p 0.4) | - | - |" in table(
        results, elsewhere=None
    )
    # part a's gentle phantom start asks the same question from another backbone, under its own
    # name; its pretraining gain is a phantom one, and the full-rate phantom pair is neither
    results["oct2017_cv"]["comparisons"]["attention-phantom_gentle-s1 vs plain-phantom_gentle-s1"] = gentle
    results["oct2017_cv"]["comparisons"]["attention-phantom vs plain-phantom"] = gentle
    asked = headline(results)["paper_question"]["attention vs plain"]
    assert asked["oct2017_cv_phantom_gentle"] == {"seed 1": gentle}
    assert set(asked) == {"oct2017_cv", "octdl", "oct2017_transfer", "oct2017_cv_phantom_gentle"}
    assert asked["oct2017_cv"] == {"seed 0": {"difference_points": 2.0, "p_value": 0.5}}  # scratch's alone
    assert "| OCT2017 | realistic phantoms' backbone at a tenth of the rate | 1 | -3.0 (p 0.4) | - | - |" in table(
        results, elsewhere=None
    )


def test_update_with_part_e_keeps_part_a(tmp_path):
    old = {"machine": _machine("Intel Xeon", "2026-12-01"), **_fake_results()}
    committed = tmp_path / "real_scans.json"
    committed.write_text(json.dumps(old))
    now = _machine("AMD EPYC", "2026-12-02")
    fresh = _with_transfer({})["oct2017_transfer"]
    merged = merged_results(committed, {"oct2017_transfer": fresh}, {"e"}, now)
    assert merged["oct2017_transfer"] == fresh and merged["machines"]["oct2017_transfer"] == now
    assert merged["oct2017_cv"] == old["oct2017_cv"] and merged["machines"]["oct2017_cv"]["cpu"] == "Intel Xeon"
    assert merged["epochs"] == old["epochs"]  # part a's epochs stay with part a
    again = merged_results(committed, {"oct2017_cv": old["oct2017_cv"], "epochs": 12}, {"a"}, now)
    assert again["epochs"] == 12
    with pytest.raises(SystemExit, match="part e gave no oct2017_transfer"):
        merged_results(committed, {}, {"e"}, now)


def test_a_backbone_file_leaves_the_classifier_behind(tmp_path):
    """A 7-class OCTDL bundle's backbone loads into a 4-class OCT2017 model with a fresh head."""
    import torch
    from benchmarks.common import save_backbone
    from safetensors.torch import load_file, save_file

    bundle = tmp_path / "model"
    bundle.mkdir()
    state = {"features.0.conv.weight": torch.ones(2, 1, 3, 3), "last_linear.weight": torch.ones(7, 4)}
    save_file({**state, "last_linear.bias": torch.ones(7)}, str(bundle / "model.safetensors"))
    out = save_backbone(bundle, tmp_path / "backbone.safetensors")
    loaded = load_file(str(out))
    assert set(loaded) == {"features.0.conv.weight"} and torch.equal(
        loaded["features.0.conv.weight"], state["features.0.conv.weight"]
    )
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".partial"] == []


def test_a_finished_run_is_reused_only_under_the_same_settings(tmp_path):
    """Changing a part's recipe in the code must not report the old runs' numbers under it."""
    from benchmarks.real_scans import run_once

    from octattn.demo import config_path
    from octattn.training.config import load_config, save_config

    data = tmp_path / "fold0.csv"
    data.write_text("path,label,patient,split\n")
    run = tmp_path / "runs" / "oct2017-attention-scratch-fold0"
    run.mkdir(parents=True)
    before = [f"data={data}", "epochs=4", "schedule=cosine"]
    save_config(load_config(config_path("demo"), before), run / "config.yaml")
    (run / "result.json").write_text(json.dumps({"accuracy": 0.3}))
    assert run_once(run.name, tmp_path, data, before[1:]) == {"accuracy": 0.3}
    # which checkpoints a run wrote on the way is not its recipe (runs from before checkpoint_every)
    assert run_once(run.name, tmp_path, data, [*before[1:], "checkpoint_every=0"]) == {"accuracy": 0.3}
    with pytest.raises(SystemExit, match=r"other settings \(schedule 'cosine' there, 'onecycle' now; epochs 4"):
        run_once(run.name, tmp_path, data, ["schedule=onecycle", "epochs=12"])
    assert json.loads((run / "result.json").read_text()) == {"accuracy": 0.3}  # left as it was


def test_a_phantom_backbone_is_reused_only_under_the_same_recipe(tmp_path):
    """Part d's pretraining recipe changed (cosine -> one-cycle) while an old backbone file
    stayed in the work folder: it must not pass for the new recipe's."""
    from benchmarks.attention_study import Setup, _pretrain

    from octattn.demo import config_path
    from octattn.training.config import load_config, save_config

    phantoms = tmp_path / "phantoms"
    setup = Setup(75, 3, 5, 0, 0, 1, 32)
    backbone = tmp_path / "backbone.safetensors"
    backbone.write_bytes(b"old weights")
    (tmp_path / "pretrain").mkdir()
    old = [f"data={phantoms}", "model=inception_v4", "image_size=75", "epochs=5", "batch_size=32"]
    save_config(
        load_config(config_path("demo"), [*old, "bn_recalibrate=12", "amp=auto"]), tmp_path / "pretrain" / "config.yaml"
    )
    assert _pretrain(tmp_path, phantoms, setup) == backbone  # the same recipe: reused
    with pytest.raises(
        SystemExit, match=r"pretrain: finished with other settings \(schedule 'cosine' there, 'onecycle' now"
    ):
        _pretrain(tmp_path, phantoms, setup, ["schedule=onecycle"])
    assert backbone.read_bytes() == b"old weights"  # left as it was


def _cv_run(acc: float) -> dict:
    return {"n": 307, "accuracy": acc, "accuracy_ci": [0.1, 0.9], "macro_f1": acc, "macro_f1_ci": [0.1, 0.9]}


def test_a_second_seed_joins_the_committed_runs_of_the_same_recipe(tmp_path):
    old = {"machine": _machine("AMD EPYC", "2026-12-01"), **_fake_results()}
    committed = tmp_path / "real_scans.json"
    committed.write_text(json.dumps(old))
    now = _machine("AMD EPYC", "2026-12-03")
    fresh = {
        "scans": 307,
        "folds": 5,
        "size": 147,  # the committed part a kept no size of its own: the file's (147) is its
        "epochs": 6,
        "runs": {"attention-scratch-s1": _cv_run(0.7), "plain-scratch-s1": _cv_run(0.6)},
        "comparisons": {"attention-scratch-s1 vs plain-scratch-s1": {"difference_points": 10.0, "p_value": 0.01}},
    }
    merged = merged_results(committed, {"oct2017_cv": fresh}, {"a"}, now, join_runs=True)
    cv = merged["oct2017_cv"]
    assert set(cv["runs"]) == {*old["oct2017_cv"]["runs"], "attention-scratch-s1", "plain-scratch-s1"}
    assert cv["comparisons"]["attention-scratch vs plain-scratch"] == {"difference_points": 2.0, "p_value": 0.5}
    assert cv["seeds"] == [0, 1] and seeds_of(cv) == [0, 1] and merged["seeds"] == [0, 1]
    assert cv["seed_machines"] == {"1": now} and merged["machines"]["oct2017_cv"]["date"] == "2026-12-01"
    top = headline(merged)
    # attention-scratch: accuracy 0.50 and 0.70 (macro-F1 0.40 and 0.70); the best mean now
    assert top["oct2017_cv"] == {
        "best": "attention-scratch",
        "seeds": 2,
        "accuracy": pytest.approx(0.6),
        "macro_f1": pytest.approx(0.55),
    }
    assert top["paper_question"]["attention vs plain"]["oct2017_cv"] == {
        "seed 0": {"difference_points": 2.0, "p_value": 0.5},
        "seed 1": {"difference_points": 10.0, "p_value": 0.01},
    }
    assert top["paper_question"]["attention vs plain"]["octdl"] == {
        "seed 0": {"difference_points": 2.0, "p_value": 0.5}
    }
    assert top["paper_question"]["attention vs nomask"] == {}
    text = table({**merged, "machine": now}, elsewhere=None)
    # the seed joined later names its day: machines of one name differ about 2x
    assert "seeds 0, 1 (" in text and "(seed 1 measured 2026-12-03 on AMD EPYC" in text.split("**b.")[0]
    # each seed its row in the paper's question, with its own CPU; no masks not run: dashes
    assert "| OCT2017 | scratch | 0 | +2.0 (p 0.5) | - |" in text
    assert "| OCT2017 | scratch | 1 | +10.0 (p 0.01) | - | AMD EPYC |" in text
    assert "| OCTDL | scratch | 0 | +2.0 (p 0.5) | - |" in text
    # another recipe never joins: its runs would be read as the same experiment's
    with pytest.raises(SystemExit, match="another recipe \\(epochs 6 committed, 12 now\\)"):
        merged_results(committed, {"oct2017_cv": {**fresh, "epochs": 12}}, {"a"}, now, join_runs=True)


def test_seeds_that_remake_every_committed_seed_replace_the_part_with_its_new_machine(tmp_path):
    """``--parts e --seeds 0 --update`` on a part of seed 0 only: nothing of the old part is
    left, so it is a replacement measured now, not a join under the old machine."""
    old = {"machine": _machine("AMD EPYC", "2026-12-01"), **_fake_results()}
    old["oct2017_transfer"] = {
        "scans": 307,
        "folds": 5,
        "size": 147,
        "epochs": 12,
        "runs": {"plain-octdl": _cv_run(0.6)},
    }
    committed = tmp_path / "real_scans.json"
    committed.write_text(json.dumps(old))
    now = _machine("Intel Xeon", "2026-12-05")
    fresh = {**old["oct2017_transfer"], "runs": {"plain-octdl": _cv_run(0.7)}, "comparisons": {}}
    merged = merged_results(committed, {"oct2017_transfer": fresh}, {"e"}, now, join_runs=True)
    assert merged["oct2017_transfer"] == fresh and merged["machines"]["oct2017_transfer"] == now
    # a seed that adds to the committed ones still joins, under the committed part's machine
    both = {**fresh, "runs": {"plain-octdl-s1": _cv_run(0.7)}}
    joined = merged_results(committed, {"oct2017_transfer": both}, {"e"}, now, join_runs=True)
    assert set(joined["oct2017_transfer"]["runs"]) == {"plain-octdl", "plain-octdl-s1"}
    assert joined["machines"]["oct2017_transfer"]["date"] == "2026-12-01"


def test_cross_validation_runs_each_model_from_scratch_once_per_seed(tmp_path, monkeypatch):
    """Seed 0 keeps the names runs had before seeds were kept; a backbone's runs stay at seed 0;
    every seed sees the same folds (the paired tests need the same scans)."""
    rows = [
        {"path": f"s{i}.png", "label": ["CNV", "DME", "DRUSEN", "NORMAL"][i % 4], "group": str(i)} for i in range(20)
    ]
    monkeypatch.setattr(real_scans, "oct2017_scans", lambda: rows)
    trained: dict[str, list[str]] = {}
    tests: dict[str, set[str]] = {}

    def fake_run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        with data.open() as handle:
            tests[name] = {r["path"] for r in csv.DictReader(handle) if r["split"] == "test"}
        paths = sorted(tests[name])
        return {"paths": paths, "groups": paths, "labels": [0] * len(paths), "probs": [[1, 0, 0, 0]] * len(paths)}

    monkeypatch.setattr(real_scans, "run_once", fake_run_once)
    monkeypatch.setattr(real_scans, "pooled", lambda results: {"n": sum(len(r["paths"]) for r in results)})
    monkeypatch.setattr(real_scans, "paired", lambda a, b: {"difference_points": 0.0, "p_value": 1.0})
    p = plan(True, 75)  # two folds
    weights = {"phantom": tmp_path / "backbone.safetensors", "octdl_gentle": tmp_path / "octdl.safetensors"}
    configs = [("attention", "scratch"), ("plain", "scratch"), ("attention", "phantom"), ("plain", "octdl_gentle")]
    pairs = (("plain-scratch", "attention-scratch"), ("attention-scratch", "attention-phantom"))
    out = real_scans.cross_validated(tmp_path, p, configs, weights, pairs, seeds=(0, 1))
    assert set(out["runs"]) == {
        "attention-scratch",
        "plain-scratch",
        "attention-phantom",
        "plain-octdl_gentle",
        "attention-scratch-s1",
        "plain-scratch-s1",
    }
    assert set(out["comparisons"]) == {
        "attention-scratch vs plain-scratch",
        "attention-phantom vs attention-scratch",
        "attention-scratch-s1 vs plain-scratch-s1",
    }
    assert "seed=1" in trained["oct2017-plain-scratch-s1-fold0"] and "seed=0" in trained["oct2017-plain-scratch-fold0"]
    assert not any("weights=" in o for o in trained["oct2017-plain-scratch-s1-fold1"])
    assert f"weights={weights['phantom']}" in trained["oct2017-attention-phantom-fold1"]
    # a start with a recipe of its own: its backbone and its lower rate, the rest as every run's
    gentle = trained["oct2017-plain-octdl_gentle-fold0"]
    assert f"weights={weights['octdl_gentle']}" in gentle and "lr_backbone=0.0002" in gentle
    assert not any(o.startswith("lr_backbone=") for o in trained["oct2017-attention-phantom-fold1"])
    assert tests["oct2017-attention-scratch-fold0"] == tests["oct2017-attention-scratch-s1-fold0"]
    assert tests["oct2017-attention-scratch-fold0"].isdisjoint(tests["oct2017-attention-scratch-fold1"])
    assert out["seeds"] == [0, 1] and out["runs"]["attention-scratch-s1"]["n"] == 20
    # a later seed alone needs no backbone: the runs from one are seed 0's
    later = real_scans.cross_validated(tmp_path, p, configs, {}, pairs, seeds=(1,))
    assert set(later["runs"]) == {"attention-scratch-s1", "plain-scratch-s1"} and later["seeds"] == [1]
    # a start named to run on every seed does (part e's gentle start: the paper's question on it)
    every = real_scans.cross_validated(
        tmp_path, p, configs, weights, pairs, (1,), frozenset({"scratch", "octdl_gentle"})
    )
    assert set(every["runs"]) == {"attention-scratch-s1", "plain-scratch-s1", "plain-octdl_gentle-s1"}
    assert "seed=1" in trained["oct2017-plain-octdl_gentle-s1-fold0"]


def _metrics_csv(run: Path, rows: list[tuple[float, float]]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1"])
        for epoch, (f1, loss) in enumerate(rows, start=1):
            writer.writerow([epoch, 1.0, loss, f1 + 0.1, f1])


def test_the_recipe_probe_reads_the_epoch_the_run_selected_highest_f1_then_lowest_loss(tmp_path):
    from benchmarks.octdl_recipe import best_validation

    _metrics_csv(tmp_path / "run", [(0.3, 1.0), (0.5, 0.9), (0.5, 0.8), (0.4, 0.7)])
    best = best_validation(tmp_path / "run")
    assert best == {"epoch": 3, "val_macro_f1": 0.5, "val_accuracy": 0.6, "last_val_macro_f1": 0.4}


def test_the_recipe_probe_runs_the_baseline_first_and_pairs_each_variant_with_it(tmp_path, monkeypatch):
    import benchmarks.octdl_recipe as recipe

    trained: dict[str, list[str]] = {}

    def fake_run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        _metrics_csv(work / "runs" / name, [(0.2 + 0.1 * len(trained), 1.0)])
        return {"name": name}

    def fake_pooled(results):
        ci = [0.4, 0.6]
        return {"n": 480, "accuracy": 0.5, "accuracy_ci": ci, "macro_f1": 0.5, "macro_f1_ci": ci, "_of": results}

    monkeypatch.setattr(recipe, "run_once", fake_run_once)
    monkeypatch.setattr(recipe, "pooled", fake_pooled)
    monkeypatch.setattr(recipe, "paired", lambda a, b: {"a": a["_of"][0]["name"], "b": b["_of"][0]["name"]})
    monkeypatch.setattr(recipe, "prior_corrected", lambda run, manifest, r: (0.5, {"name": r["name"] + "+prior"}))
    (tmp_path / "octdl-clean.csv").write_text("path,label,patient,split\n")
    written: list[dict] = []
    recipe.probe(tmp_path, tmp_path, [1], ["smoothing", "part b"], written.append)
    assert list(trained) == ["octdl-plain-s1", "octdl-plain-s1-smoothing"]  # the baseline once, first
    assert trained["octdl-plain-s1-smoothing"][-1] == "label_smoothing=0.1"
    assert "seed=1" in trained["octdl-plain-s1"] and "balance=sampler" in trained["octdl-plain-s1"]
    last = written[-1]["seeds"]["1"]
    assert len(written) == 2 and set(last) == {"part b", "smoothing"}  # rewritten after each run
    assert last["smoothing"]["paired"] == {"a": "octdl-plain-s1", "b": "octdl-plain-s1-smoothing"}
    assert "paired" not in last["part b"] and not any(k.startswith("_") for k in last["smoothing"])
    corrected = last["smoothing"]["corrected"]
    assert corrected["vs_uncorrected"] == {"a": "octdl-plain-s1-smoothing", "b": "octdl-plain-s1-smoothing+prior"}
    assert corrected["vs_part_b_corrected"] == {"a": "octdl-plain-s1+prior", "b": "octdl-plain-s1-smoothing+prior"}
    assert last["smoothing"]["prior_power"] == 0.5
    assert last["smoothing"]["val_macro_f1"] == pytest.approx(0.4) and written[-1]["test_scans"] == 480
    # the earlier probes' run names are kept, so their finished runs are reused
    assert recipe.run_name("jitter", 0) == "octdl-plain-s0-jitter1"


def test_the_probes_correction_after_the_fact_is_the_one_the_bundle_would_apply(bundle, tmp_path):
    import shutil

    from benchmarks.real_scans import prior_corrected

    from octattn.evaluation.calibration import fit_prior_power, prior_shift
    from octattn.evaluation.evaluate import evaluate_model
    from tests.data.helpers import write_scan

    run = tmp_path / "run"
    shutil.copytree(bundle, run / "model", copy_function=link_weights)
    (run / "config.yaml").write_text("balance: sampler\n")
    rows = [("train", "CNV")] * 6 + [("train", "NORMAL")] * 2 + [("val", "CNV"), ("val", "DME"), ("val", "NORMAL")] * 2
    rows += [("test", c) for c in ("CNV", "DME", "DRUSEN", "NORMAL")] * 2
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        for i, (split, label) in enumerate(rows):
            writer.writerow([write_scan(tmp_path / "scans" / f"{i}.png", seed=i, fmt="PNG"), label, f"p{i}", split])
    test = evaluate_model(run, manifest, "test", resamples=10)
    power, corrected = prior_corrected(run, manifest, {"probs": test.probs.tolist(), "keep": 1})
    # by hand: train has 6 CNV, 0 DME, 0 DRUSEN, 2 NORMAL; the sampler made the 2 classes present equal
    shift = prior_shift([6, 0, 0, 2], [4, 0, 0, 4])
    val = evaluate_model(run, manifest, "val", resamples=10)
    temperature = json.loads((run / "model" / "config.json").read_text())["octattn"]["calibration"]["temperature"]
    assert power == fit_prior_power(val.logits, val.labels, temperature, shift)
    expected = (test.logits / temperature + power * shift).argmax(1)
    assert (np.asarray(corrected["probs"]).argmax(1) == expected).all() and corrected["keep"] == 1
    assert np.asarray(corrected["probs"]).sum(1) == pytest.approx(np.ones(len(expected)))


def test_the_recipe_probe_table_shows_each_variant_on_validation_and_on_test():
    from benchmarks.octdl_recipe import table as recipe_table

    test = {"n": 480, "accuracy": 0.5, "accuracy_ci": [0.45, 0.55], "macro_f1": 0.4, "macro_f1_ci": [0.35, 0.45]}
    corrected = {**test, "accuracy": 0.7, "vs_uncorrected": {"difference_points": 20.0, "p_value": 1e-6}}
    base = {"overrides": [], "epoch": 5, "val_macro_f1": 0.45, "test": test, "prior_power": 0.5, "corrected": corrected}
    versus = {"difference_points": -9.8, "p_value": 3e-4}
    variant = {
        **base,
        "overrides": ["jitter=1"],
        "epoch": 9,
        "paired": versus,
        "corrected": {**corrected, "vs_part_b_corrected": versus},
    }
    text = recipe_table({"test_scans": 480, "seeds": {"0": {"part b": base, "jitter": variant}}})
    assert "| 0 | part b | - | 0.450 (5) | 50.0% (45.0%-55.0%) | 40.0% (35.0%-45.0%) | - |" in text
    assert "| 0 | jitter | `jitter=1` | 0.450 (9) |" in text and "| -9.8 (p 0.0003) |" in text
    assert "480 clean scans" in text
    assert "| 0 | part b | 0.50 | 70.0% (45.0%-55.0%) | 40.0% (35.0%-45.0%) | +20.0 (p 1e-06) | - |" in text
    assert (
        "| 0 | jitter | 0.50 | 70.0% (45.0%-55.0%) | 40.0% (35.0%-45.0%) | +20.0 (p 1e-06) | -9.8 (p 0.0003) |" in text
    )


def test_part_b_reports_each_run_corrected_and_as_trained_and_pairs_both_ways(tmp_path, monkeypatch):
    """The balanced sampler's runs are read with the class-prior correction (the headline) and
    as trained; the paper's question is asked of both, and each correction is paired with its run."""
    trained: list[str] = []

    def fake_run_once(name, work, data, overrides, split="test"):
        trained.append(name)
        return {"name": name, "accuracy": 0.3}

    def fake_pooled(results):
        (r,) = results
        acc = 0.7 if r["name"].endswith("+prior") else 0.5
        ci = [acc - 0.05, acc + 0.05]
        return {"accuracy": acc, "accuracy_ci": ci, "macro_f1": acc - 0.1, "macro_f1_ci": ci, "of": r["name"]}

    monkeypatch.setattr(real_scans, "octdl_clean_manifest", lambda octdl, manifest, cap: {"audit": 1})
    monkeypatch.setattr(real_scans, "run_once", fake_run_once)
    monkeypatch.setattr(real_scans, "pooled", fake_pooled)
    monkeypatch.setattr(real_scans, "prior_corrected", lambda run, m, r: (0.45, {"name": r["name"] + "+prior"}))

    def fake_paired(a, b):
        points = 1.0 if b["of"].endswith("+prior") else -2.0
        return {"difference_points": points, "p_value": 0.5, "b": b["of"]}

    monkeypatch.setattr(real_scans, "paired", fake_paired)
    part = real_scans.octdl_whole(tmp_path, plan(False, 147), tmp_path, seeds=(0,))
    assert trained == ["octdl-attention-s0", "octdl-plain-s0", "octdl-nomask-s0"]
    run = part["runs"]["plain-s0"]
    assert run["accuracy"] == 0.7 and run["prior_power"] == 0.45
    assert run["uncorrected"] == {
        "accuracy": 0.5,
        "accuracy_ci": [0.45, 0.55],
        "macro_f1": 0.4,
        "macro_f1_ci": [0.45, 0.55],
    }
    assert part["comparisons"]["attention vs plain, seed 0"]["b"] == "octdl-attention-s0+prior"
    assert part["comparisons_uncorrected"]["attention vs nomask, seed 0"]["b"] == "octdl-attention-s0"
    assert part["correction_gain"]["nomask-s0"]["b"] == "octdl-nomask-s0+prior"
    assert part["prior_correction"] == real_scans.PRIOR_CORRECTION
    # the headline reads the corrected numbers
    fake = _fake_results()
    results = {**fake, "octdl": {**part, "audit": fake["octdl"]["audit"]}}
    assert headline(results)["octdl"]["macro_f1"] == pytest.approx(0.6)
    text = table(results)
    assert "| plain-s0 | 70.0% (65.0%-75.0%) | 60.0% (65.0%-75.0%) | 0.45 | 50.0%, 40.0% | +1.0 (p 0.5) |" in text
    # each comparison once, corrected beside as trained
    assert "| attention vs plain, seed 0 | +1.0 (p 0.5) | -2.0 (p 0.5) |" in text
    assert "class-balanced sampling; class-prior correction" in text and "\n;" not in text
    # a second seed joins every by-run entry of the committed part
    committed = tmp_path / "real_scans.json"
    committed.write_text(json.dumps({"machine": _machine("AMD EPYC", "2026-12-01"), **results}))
    later = {**part, "runs": {"plain-s1": run}, "correction_gain": {"plain-s1": {"difference_points": 2.0}}}
    merged = merged_results(committed, {"octdl": later}, {"b"}, _machine("AMD EPYC", "2026-12-03"), join_runs=True)
    assert set(merged["octdl"]["correction_gain"]) == {"attention-s0", "plain-s0", "nomask-s0", "plain-s1"}


def test_the_phantom_zero_shot_table_shows_each_seed_and_the_mean_over_seeds():
    from benchmarks.phantom_zero_shot import PAIRED, RUNS, table

    def run(acc: float, cpu: str = "Intel(R) Xeon(R) Processor") -> dict:
        return {
            "accuracy": acc,
            "accuracy_ci": [acc - 0.05, acc + 0.05],
            "macro_f1": 0.3,
            "confusion_matrix": [[1, 0], [0, 2]],
            "machine": {"cpu": cpu},
        }

    name = next(iter(RUNS))
    paired_run = {
        **run(0.3),
        PAIRED: {"baseline": "onecycle", "difference_points": 4.2, "interval_points": [-1.0, 9.5], "p_value": 0.031},
    }
    text = table({"runs": {name: {"12": run(0.4, "AMD EPYC"), "11": paired_run}}})
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    assert [r.split("|")[2].strip() for r in rows[:2]] == ["11", "12"]  # seeds in order
    assert rows[2].split("|")[2:5] == [" 2 ", " 35.0% ", " 30.0-40.0% "]
    assert "1, 2" in rows[0]  # the diagonal: each class's scans called right
    assert "| vs onecycle: +4.2 (-1.0 to +9.5; p 0.031) | Intel Xeon |" in rows[0]
    assert rows[1].endswith("| - | AMD EPYC |")  # no pairing: a dash; each run names its own CPU


def test_a_randomised_phantom_run_is_paired_with_the_onecycle_run_on_the_same_phantoms(tmp_path, monkeypatch):
    import benchmarks.phantom_zero_shot as probe

    labels = [0, 1, 2, 3] * 5

    def reading(right: int) -> dict:  # the first `right` scans called right, the rest called class (label + 1) % 4
        probs = [
            [1.0 if c == (y if i < right else (y + 1) % 4) else 0.0 for c in range(4)] for i, y in enumerate(labels)
        ]
        return {
            "paths": [f"s{i}.png" for i in range(20)],
            "groups": [f"p{i}" for i in range(20)],
            "labels": labels,
            "probs": probs,
        }

    readings = {"lesion-sized-onecycle-s3": reading(8), "lesion-sized-randomised-s3": reading(14)}
    monkeypatch.setattr(probe, "scan_reading", lambda folder: readings[folder.name])
    assert probe.versus_baseline(tmp_path, "lesion-sized/onecycle", 3) is None  # a baseline has none
    assert probe.versus_baseline(tmp_path, "lesion-sized/randomised", 3) is None  # its baseline was not run here
    model = tmp_path / "lesion-sized-onecycle-s3" / "pretrain" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    gain = probe.versus_baseline(tmp_path, "lesion-sized/randomised", 3)
    assert gain is not None and gain["baseline"] == "onecycle"
    assert gain["difference_points"] == pytest.approx(100 * 6 / 20)  # six more of twenty right
    assert gain["p_value"] == pytest.approx(2 / 64)  # McNemar: 6 discordant pairs, all one way


def test_a_configurations_seeds_are_read_as_one_model_by_averaging_their_probabilities(tmp_path, monkeypatch):
    import benchmarks.phantom_zero_shot as probe
    from benchmarks.phantom_zero_shot import PAIRED

    labels = [0, 1, 2, 3]
    # seed 1 is sure and right on scans 0-1, unsure and wrong on 2-3; seed 2 the other way round
    sure_right, unsure_wrong = 0.9, 0.4
    one = [[sure_right, 0.1, 0, 0], [0, sure_right, 0.1, 0], [0, 0, 0.35, unsure_wrong], [unsure_wrong, 0, 0, 0.35]]
    two = [[0.35, unsure_wrong, 0, 0], [0, 0.35, unsure_wrong, 0], [0, 0, sure_right, 0.1], [0.1, 0, 0, sure_right]]
    readings = {
        f"lesion-sized-onecycle-s{seed}": {
            "paths": list("abcd"),
            "groups": list("abcd"),
            "labels": labels,
            "probs": probs,
        }
        for seed, probs in ((1, one), (2, two))
    }
    monkeypatch.setattr(probe, "scan_reading", lambda folder: readings[folder.name])
    ens = probe.seed_ensemble(tmp_path, "lesion-sized/onecycle", [1, 2])
    assert ens["accuracy"] == 1.0 and ens["seeds"] == [1, 2]  # each alone: 50%
    assert {s: g["difference_points"] for s, g in ens["vs_seeds"].items()} == {"1": 50.0, "2": 50.0}
    text = probe.table({"runs": {}, "ensembles": {"lesion-sized/onecycle": ens}})
    assert (
        "| lesion-sized/onecycle | 1, 2 | 100.0% (" in text and "s1 +50.0 (p 0.5); s2 +50.0 (p 0.5)" in text
    )  # McNemar: 2 of 2 one way
    assert PAIRED not in ens  # a baseline recipe has none
    # the randomised recipe's ensemble against onecycle's on the same seeds: here, as good as its members
    for seed in (1, 2):
        readings[f"lesion-sized-randomised-s{seed}"] = readings[f"lesion-sized-onecycle-s{seed}"]
    assert PAIRED not in probe.seed_ensemble(tmp_path, "lesion-sized/randomised", [1, 2])  # onecycle not run here
    for seed in (1, 2):
        (tmp_path / f"lesion-sized-onecycle-s{seed}" / "pretrain" / "model").mkdir(parents=True)
        (tmp_path / f"lesion-sized-onecycle-s{seed}" / "pretrain" / "model" / "config.json").write_text("{}")
    readings["lesion-sized-randomised-s1"] = {**readings["lesion-sized-randomised-s1"], "probs": two}
    gain = probe.seed_ensemble(tmp_path, "lesion-sized/randomised", [1, 2])[PAIRED]
    assert gain["baseline"] == "onecycle" and gain["difference_points"] == -50.0  # two, twice: scans 0-1 wrong
    readings["lesion-sized-onecycle-s2"] = {**readings["lesion-sized-onecycle-s2"], "paths": list("abdc")}
    with pytest.raises(ValueError, match="different scans"):
        probe.seed_ensemble(tmp_path, "lesion-sized/onecycle", [1, 2])


def test_the_recipe_probe_names_where_each_seed_ran_once_seeds_ran_on_different_machines():
    from benchmarks.octdl_recipe import seed_machines
    from benchmarks.octdl_recipe import table as recipe_table

    test = {"n": 480, "accuracy": 0.5, "accuracy_ci": [0.45, 0.55], "macro_f1": 0.4, "macro_f1_ci": [0.35, 0.45]}
    run = {
        "overrides": [],
        "epoch": 5,
        "val_macro_f1": 0.45,
        "test": test,
        "prior_power": 0.5,
        "corrected": {**test, "vs_uncorrected": {"difference_points": 20.0, "p_value": 1e-6}},
    }
    amd = {"cpu": "AMD EPYC", "cores": 2, "cpu_flags": "avx2", "date": "2026-12-02T10:00:00+00:00"}
    xeon = {**amd, "cpu": "Intel Xeon", "date": "2026-12-04T10:00:00+00:00"}
    # a file from before seed_machines: its machine is every seed's
    old = {"machine": amd, "seeds": {"0": {"part b": run}}}
    assert seed_machines(old) == {"0": amd}
    assert "Seed 0 measured" not in recipe_table({**old, "test_scans": 480})  # one machine: the footer says it
    both = {"machine": xeon, "test_scans": 480, "seeds": {"0": {"part b": run}, "1": {"part b": run}}}
    text = recipe_table({**both, "seed_machines": {"0": amd, "1": xeon}})
    assert "Seed 0 measured 2026-12-02 on AMD EPYC, 2 cores; avx2." in text
    assert "Seed 1 measured 2026-12-04 on Intel Xeon, 2 cores; avx2." in text


def test_part_a_starts_each_phantom_model_at_both_rates_from_the_realistic_backbone(tmp_path, monkeypatch):
    seen: dict = {}

    def fake_cv(work, p, configs, weights, pairs, seeds=(0,), every_seed=frozenset({"scratch"})):
        seen.update(configs=configs, weights=weights, every_seed=every_seed)
        return {}

    monkeypatch.setattr(real_scans, "cross_validated", fake_cv)
    backbones = {"realistic": tmp_path / "realistic" / "pretrain", "standard": tmp_path / "standard" / "pretrain"}
    real_scans.oct2017_cv(tmp_path, plan(True, 75), backbones, False, ("attention",))
    assert seen["configs"] == [
        ("attention", "scratch"),
        ("attention", "phantom"),
        ("attention", "phantom_gentle"),
        ("plain", "scratch"),
        ("nomask", "scratch"),
    ]
    assert (
        seen["weights"]["phantom_gentle"]
        == seen["weights"]["phantom"]
        == tmp_path / "realistic" / "backbone.safetensors"
    )
    assert real_scans.START_OVERRIDES["phantom_gentle"] == real_scans.GENTLE  # its only difference: the rate
    # the gentle phantom starts are asked on every seed, like scratch; the full-rate starts on seed 0
    assert seen["every_seed"] == {"scratch", "phantom_gentle", "phantom_gentle_e20", "lesion_gentle_e20"}


def _fake_part_a_runs(monkeypatch) -> dict[str, list[str]]:
    """Part a on 40 fake scans with nothing trained: each run's overrides recorded under its
    name (returned), pooled to its first fold's name, a pair to both names."""
    trained: dict[str, list[str]] = {}

    def fake_run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        return {"name": name}

    rows = [
        {"path": f"s{i}.png", "label": ["CNV", "DME", "DRUSEN", "NORMAL"][i % 4], "group": str(i)} for i in range(40)
    ]
    monkeypatch.setattr(real_scans, "oct2017_scans", lambda: rows)
    monkeypatch.setattr(real_scans, "run_once", fake_run_once)
    monkeypatch.setattr(real_scans, "pooled", lambda results: {"of": results[0]["name"]})
    monkeypatch.setattr(real_scans, "paired", lambda a, b: {"a": a["of"], "b": b["of"], "difference_points": 1.0})
    return trained


def test_part_a_fine_tunes_the_models_asked_for_the_papers_20_epochs_from_the_realistic_backbone(tmp_path, monkeypatch):
    trained = _fake_part_a_runs(monkeypatch)
    backbones = {"realistic": tmp_path / "realistic" / "pretrain"}
    part = real_scans.oct2017_cv(tmp_path, plan(False, 147), backbones, False, (), (0, 1), ("plain",))
    assert set(part["runs"]) == {
        *(real_scans.seeded(f"{m}-scratch", s) for m in real_scans.MODELS for s in (0, 1)),
        "plain-phantom_gentle_e20",
        "plain-phantom_gentle_e20-s1",
    }
    overrides = trained["oct2017-plain-phantom_gentle_e20-s1-fold3"]
    assert overrides[-3:] == [
        f"weights={tmp_path / 'realistic' / 'backbone.safetensors'}",
        *real_scans.GENTLE,
        "epochs=20",
    ]
    assert "epochs=12" in overrides  # the plan's, overridden by the start that comes after it
    assert (
        part["comparisons"]["plain-phantom_gentle_e20-s1 vs plain-scratch-s1"]["b"]
        == "oct2017-plain-phantom_gentle_e20-s1-fold0"
    )
    assert not [name for name in part["comparisons"] if "attention-phantom_gentle_e20" in name]
    # the paper's question at 20 epochs is read where attention ran them too, and not before
    assert "oct2017_cv_phantom_gentle_e20" not in real_scans.paper_question({"oct2017_cv": part})["attention vs plain"]
    asked = real_scans.paper_question(
        {
            "oct2017_cv": {
                "comparisons": {"attention-phantom_gentle_e20-s1 vs plain-phantom_gentle_e20-s1": {"p_value": 0.5}}
            }
        }
    )
    assert asked["attention vs plain"] == {"oct2017_cv_phantom_gentle_e20": {"seed 1": {"p_value": 0.5}}}


def test_part_a_fine_tunes_the_models_asked_for_from_the_lesion_sized_backbone(tmp_path, monkeypatch):
    trained = _fake_part_a_runs(monkeypatch)
    backbones = {"lesion-sized": tmp_path / "lesion" / "pretrain", "realistic": tmp_path / "realistic" / "pretrain"}
    part = real_scans.oct2017_cv(tmp_path, plan(False, 147), backbones, False, (), (0, 1), (), ("plain", "attention"))
    starts = {name for name in part["runs"] if "scratch" not in name}
    assert starts == {f"{m}-lesion_gentle_e20{s}" for m in ("plain", "attention") for s in ("", "-s1")}
    assert trained["oct2017-plain-lesion_gentle_e20-s1-fold2"][-3:] == [
        f"weights={tmp_path / 'lesion' / 'backbone.safetensors'}",
        *real_scans.GENTLE,
        "epochs=20",
    ]
    assert {
        "plain-lesion_gentle_e20-s1 vs plain-scratch-s1",
        "attention-lesion_gentle_e20 vs plain-lesion_gentle_e20",
    } <= set(part["comparisons"])
    top = real_scans.paper_question({"oct2017_cv": part})["attention vs plain"]
    assert set(top["oct2017_cv_lesion_gentle_e20"]) == {"seed 0", "seed 1"}
    assert real_scans.backbones_needed({"a"}, (1,), False, False, lesion=True) == {"lesion-sized"}
    assert real_scans.backbones_needed({"a"}, (1,), False, False) == set()


def test_a_later_seed_alone_still_loads_the_realistic_backbone_its_gentle_start_needs():
    # part a's gentle phantom start runs on every seed: `--parts a --seeds 1` needs the realistic
    # backbone (it used to load none without seed 0 and failed on a missing key)
    assert real_scans.backbones_needed({"a"}, (1,), phantom_models=True, standard=True) == {"realistic"}
    assert real_scans.backbones_needed({"a"}, (0, 1), phantom_models=True, standard=True) == {"realistic", "standard"}
    assert real_scans.backbones_needed({"a"}, (0,), phantom_models=False, standard=False) == set()
    assert real_scans.backbones_needed({"e"}, (0, 1), phantom_models=True, standard=True) == set()
    # part b starts its phantom models from the realistic backbone too, on every seed
    assert real_scans.backbones_needed({"b", "e"}, (1,), phantom_models=True, standard=True) == {"realistic"}
    assert real_scans.backbones_needed({"b", "e"}, (0, 1), phantom_models=False, standard=True) == set()
    assert real_scans.backbones_needed({"d"}, (1,), phantom_models=False, standard=False) == {
        "realistic",
        "standard",
        "lesion-sized",
    }


def test_a_paired_comparison_carries_its_patient_bootstrap_interval():
    paths = [f"s{i}.png" for i in range(60)]
    groups = [str(i // 2) for i in range(60)]
    a = {"_order": paths, "_correct": [i < 30 for i in range(60)], "_groups": groups}
    b = {"_order": paths[::-1], "_correct": [True] * 60, "_groups": groups[::-1]}  # B's order differs
    pair = real_scans.paired(a, b)
    assert pair["difference_points"] == pytest.approx(50.0)
    low, high = pair["interval_points"]
    assert 0 < low < 50 < high < 100  # half the patients differ: resampled, never none or all
    assert real_scans.points_p(pair).startswith(f"+50.0 ({low:+.1f} to {high:+.1f}; p ")
    assert real_scans.points_p({"difference_points": 2.0, "p_value": 0.5}) == "+2.0 (p 0.5)"  # kept before intervals


def test_part_b_starts_the_phantom_models_from_the_realistic_backbone_at_the_gentle_rate(tmp_path, monkeypatch):
    """Part b's phantom start: each chosen model and seed from the realistic backbone at a tenth
    of the head's rate, paired with the same model and seed from scratch, and the paper's
    question asked again from that start where attention and the other model both ran."""
    trained: dict[str, list[str]] = {}

    def fake_run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        return {"name": name}

    def fake_pooled(results):
        (r,) = results
        acc = 0.8 if "phantom_gentle" in r["name"] else 0.6
        return {"accuracy": acc, "accuracy_ci": [acc, acc], "macro_f1": acc, "macro_f1_ci": [acc, acc], "of": r["name"]}

    monkeypatch.setattr(real_scans, "octdl_clean_manifest", lambda octdl, manifest, cap: {"audit": 1})
    monkeypatch.setattr(real_scans, "run_once", fake_run_once)
    monkeypatch.setattr(real_scans, "pooled", fake_pooled)
    monkeypatch.setattr(real_scans, "prior_corrected", lambda run, m, r: (0.0, r))
    monkeypatch.setattr(
        real_scans, "paired", lambda a, b: {"difference_points": 100 * (b["accuracy"] - a["accuracy"]), "p_value": 0.01}
    )
    backbone = tmp_path / "phantom-realistic" / "backbone.safetensors"
    part = real_scans.octdl_whole(tmp_path, plan(False, 147), tmp_path, (0, 1), backbone, ("attention", "plain"))
    assert set(trained) == {
        *(f"octdl-{m}-s{s}" for m in ("attention", "plain", "nomask") for s in (0, 1)),
        *(f"octdl-{m}-phantom_gentle-s{s}" for m in ("attention", "plain") for s in (0, 1)),
    }
    start = trained["octdl-plain-phantom_gentle-s1"]
    assert start[: len(start) - 2] == real_scans.octdl_overrides(plan(False, 147), "plain", 1)
    assert start[-2:] == [f"weights={backbone}", *real_scans.GENTLE]
    assert not any(o.startswith("weights=") for o in trained["octdl-plain-s1"])
    comparisons = part["comparisons"]
    assert comparisons["plain-phantom_gentle vs plain, seed 1"]["difference_points"] == pytest.approx(20.0)
    assert "attention-phantom_gentle vs plain-phantom_gentle, seed 0" in comparisons
    # no masks did not start from phantoms: nothing is paired with a run that was not made
    assert not [name for name in comparisons if "nomask-phantom_gentle" in name]
    assert set(part["comparisons_uncorrected"]) == set(comparisons)
    results = {**_fake_results(), "octdl": {**part, "audit": _fake_results()["octdl"]["audit"]}}
    top = headline(results)
    assert top["octdl"]["best"] == "attention-phantom_gentle" and top["octdl"]["seeds"] == 2
    assert top["octdl_phantom_pretraining_gain_points"] == {
        f"{m}-phantom_gentle vs {m}, seed {s}": pytest.approx(20.0) for m in ("attention", "plain") for s in (0, 1)
    }
    asked = top["paper_question"]["attention vs plain"]["octdl_phantom_gentle"]
    assert set(asked) == {"seed 0", "seed 1"}
    assert "octdl_phantom_gentle" not in top["paper_question"]["attention vs nomask"]
    text = table(results)
    assert "phantom_gentle = from the realistic phantoms' backbone" in text
    assert "| plain-phantom_gentle vs plain, seed 0 | +20.0 (p 0.01) | +20.0 (p 0.01) |" in text
    results["machine"] = _machine("AMD EPYC", "2026-12-05")
    gains = summary(results, elsewhere=None).split("**What pretraining adds**")[1].split("\n\n")[1]
    row = "| OCTDL (corrected) | realistic phantoms' backbone at a tenth of the rate | 1 |"
    assert [line.split(" | ")[4] for line in gains.splitlines() if line.startswith(row)] == ["+20.0 (p 0.01)"]  # plain


def _fold_result(paths: list[str], labels: list[int], probs: list[list[float]]) -> dict:
    return {"paths": paths, "groups": [f"p{i // 2}" for i in range(len(paths))], "labels": labels, "probs": probs}


def test_a_seed_ensemble_averages_its_seeds_scan_by_scan_and_is_paired_with_each_seed_and_each_other(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(real_scans, "pooled", partial(real_scans.pooled, resamples=50))  # intervals: not tested here

    # two folds of 20 scans, two classes; seed 0 is wrong on the first 6 scans of each fold, seed 1
    # on the last 6, each time only just: averaged, the other seed's confident answer wins
    def write(name: str, fold: int, probs: list[list[float]]) -> None:
        paths = [f"f{fold}/s{i}.png" for i in range(20)]
        result = _fold_result(paths, [i % 2 for i in range(20)], probs)
        folder = tmp_path / "runs" / f"oct2017-{name}-fold{fold}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(result))

    def probs(wrong: range, confidence: float = 0.6) -> list[list[float]]:
        """Class i % 2 at 0.9, but the other class at ``confidence`` on the scans ``wrong``."""
        return [
            [confidence, 1 - confidence][:: 1 if i % 2 else -1]
            if i in wrong
            else [0.9, 0.1][:: 1 if i % 2 == 0 else -1]
            for i in range(20)
        ]

    for fold in (0, 1):
        write("plain-scratch", fold, probs(range(6)))
        write("plain-scratch-s1", fold, probs(range(14, 20)))
        write("attention-scratch", fold, probs(range(4)))  # both seeds wrong on scans 0-3: so is the ensemble
        write("attention-scratch-s1", fold, probs(range(4), confidence=0.95))
    part = {
        "folds": 2,
        "runs": {n: {} for n in ("plain-scratch", "plain-scratch-s1", "attention-scratch", "attention-scratch-s1")},
    }
    out = real_scans.seed_ensembles(tmp_path, part, (("plain-scratch", "attention-scratch"),))
    assert set(out["runs"]) == {"plain-scratch-ens", "attention-scratch-ens"}
    assert out["runs"]["plain-scratch-ens"]["accuracy"] == 1.0  # each seed 70%: the ensemble gets every scan
    assert out["runs"]["plain-scratch-ens"]["seeds"] == [0, 1]
    assert out["vs_seeds"]["plain-scratch-ens vs plain-scratch"]["difference_points"] == pytest.approx(30.0)
    assert out["vs_seeds"]["plain-scratch-ens vs plain-scratch-s1"]["difference_points"] == pytest.approx(30.0)
    assert out["runs"]["attention-scratch-ens"]["accuracy"] == pytest.approx(0.8)
    assert out["vs_seeds"]["attention-scratch-ens vs attention-scratch"]["difference_points"] == pytest.approx(0.0)
    assert out["comparisons"]["attention-scratch-ens vs plain-scratch-ens"]["difference_points"] == pytest.approx(-20.0)
    # the table shows the ensembles and their pairs; the headline and the README summary their best
    results = {**_fake_results(), "machine": _machine("AMD EPYC", "2026-12-05")}
    results["oct2017_cv"]["ensembles"] = out
    text = table(results)
    assert "| plain-scratch-ens | 100.0% (" in text and "| plain-scratch-ens vs plain-scratch-s1 | +30.0 (" in text
    top = headline(results)
    assert top["oct2017_cv_seed_ensemble"] == {
        "best": "plain-scratch-ens",
        "seeds": 2,
        "accuracy": 1.0,
        "macro_f1": 1.0,
    }
    assert "| OCT2017, the same CV, one start's seeds as one ensemble (a) |" in summary(results)
    # a member missing from this work folder (a seed joined from another machine): no answer
    (tmp_path / "runs" / "oct2017-attention-scratch-s1-fold1" / "result.json").unlink()
    assert real_scans.seed_ensembles(tmp_path, part, ()) is None


def test_a_seed_ensemble_refuses_members_evaluated_on_other_scans():
    a = _fold_result(["a.png", "b.png"], [0, 1], [[0.9, 0.1], [0.2, 0.8]])
    b = _fold_result(["b.png", "a.png"], [1, 0], [[0.2, 0.8], [0.9, 0.1]])
    with pytest.raises(ValueError, match="different scans"):
        real_scans.averaged([a, b])
    c = _fold_result(["a.png", "b.png"], [0, 1], [[0.5, 0.5], [0.6, 0.4]])
    assert np.allclose(real_scans.averaged([a, c])["probs"], [[0.7, 0.3], [0.4, 0.6]])


def test_part_c_adapts_on_one_half_of_the_patients_and_scores_the_other(plain_bundle, real_data, tmp_path):
    """AdaBN in part c, cross-fitted: each half is scored by a model adapted on the other
    half's scans, all classes (a clinic's whole output), and paired with the unadapted model."""
    from benchmarks.real_scans import adapted_across

    files = sorted((real_data / "train").rglob("*.jpeg"))  # 100: two halves above adapt's minimum
    scans = [(str(p), p.parent.name, p.name.split("-")[1] if p.name.count("-") == 2 else p.name) for p in files]
    result = adapted_across(plain_bundle, scans, {"NORMAL": "NORMAL", "DME": "DME"}, tmp_path / "c", resamples=20)
    assert result["n"] == sum(label in ("NORMAL", "DME") for _, label, _ in scans)
    assert 0 <= result["accuracy"] <= 1 and "p_value" in result["vs_unadapted"]
    adapted_on = [
        json.loads((tmp_path / "c" / f"adapted-half{k}" / "config.json").read_text())["octattn"]["provenance"]
        for k in (0, 1)
    ]
    assert sorted(p["adapted"]["scans"] for p in adapted_on) == sorted(
        sum(1 for _ in csv.DictReader((tmp_path / "c" / f"half{k}.csv").open())) for k in (0, 1)
    )
    assert sum(p["adapted"]["scans"] for p in adapted_on) == len(scans)


def test_part_c_shows_the_adapted_reading_where_it_was_measured():
    results = json.loads((Path(real_scans.RESULTS) / "real_scans.json").read_text())
    reading = {
        "n": 100,
        "accuracy": 0.5,
        "accuracy_ci": [0.4, 0.6],
        "macro_f1": 0.3,
        "vs_unadapted": {"difference_points": 12.5, "interval_points": [5.0, 20.0], "p_value": 0.001},
    }
    results["across"]["oct2017_model_on_octdl_adapted"] = reading
    text = table(results)
    assert "accuracy 50.0% (40.0%-60.0%), macro-F1 0.300; +12.5 points over unadapted" in text
    assert "adapted to OCTDL's unlabeled scans (c, AdaBN)" in summary(results)


def _reading(paths: list[str], labels: list[int], probs: list[list[float]]) -> dict:
    return {"paths": paths, "groups": [f"g{p}" for p in paths], "labels": labels, "probs": probs}


def test_the_ensemble_reading_averages_the_seeds_and_names_the_reading_validation_picks(tmp_path, monkeypatch):
    """Seed 0 is right on A, seed 1 on B; only their average is right on both, and flip TTA
    (here: every scan called B) is worse on validation, so the ensemble is the one chosen."""
    import benchmarks.octdl_recipe as recipe

    monkeypatch.setattr(recipe, "one_variant", lambda work, manifest, variant, seed: {"prior_power": 0.1 * seed})
    monkeypatch.setattr(recipe, "read_bundle_config", lambda folder: type("C", (), {"class_names": ["A", "B"]})())
    monkeypatch.setattr(recipe, "machine", lambda: {"cpu": "Test CPU", "cores": 2, "cpu_flags": "", "date": "2026"})
    seed_probs = {
        "s0": [[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.6, 0.4]],  # A, A, A, A: right on the A scans only
        "s1": [[0.4, 0.6], [0.1, 0.9], [0.4, 0.6], [0.1, 0.9]],  # B, B, B, B
    }
    paths, labels = ["1", "2", "3", "4"], [0, 1, 0, 1]

    def fake_reading(run, manifest, split, tta):
        probs = [[0.2, 0.8]] * 4 if tta else seed_probs[run.name.split("-")[2]]
        return _reading(paths, labels, probs)

    monkeypatch.setattr(recipe, "reading", fake_reading)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,patient,split\na,A,1,train\nb,A,2,train\nc,B,3,train\nd,B,4,test\n")
    found = recipe.seed_ensemble(tmp_path, manifest, "24 epochs", [0, 1], resamples=50)
    readings = found["readings"]
    assert readings["ensemble"]["accuracy"] == 1.0 and readings["seed 0"]["accuracy"] == 0.5
    assert readings["ensemble"]["class_f1"] == {"A": 1.0, "B": 1.0}
    assert readings["seed 0"]["class_f1"]["B"] == 0.0 and readings["seed 1 + flip TTA"]["val_macro_f1"] < 0.5
    assert found["chosen_on_validation"] == "ensemble"
    assert found["train_scans"] == {"A": 2, "B": 1} and found["test_scans"] == {"A": 0, "B": 1}
    assert found["prior_power"] == {"seed 0": 0.0, "seed 1": 0.1} and found["overrides"] == ["epochs=24"]
    assert found["comparisons"]["ensemble vs seed 1"]["difference_points"] == pytest.approx(50.0)
    assert found["comparisons"]["ensemble + flip TTA vs ensemble"]["difference_points"] == pytest.approx(-50.0)
    text = "\n".join(recipe.ensemble_table(found))
    assert "| ensemble (chosen on validation) | 1.000 | 100.0%" in text
    assert "| class | train scans | test scans | seed 0 | seed 1 | ensemble | ensemble + flip TTA |" in text
    assert "| A | 2 | 0 | 0.67 | 0.00 | 1.00 | 0.00 |" in text
    assert "Test CPU" in text and "| ensemble vs seed 0 | +50.0" in text
    line = recipe.summary({"ensemble": found})  # the README's row: the reading validation picked
    assert "24 epochs (2 seeds) | ensemble (chosen on validation) | 100.0% (" in line and "| Test CPU 2026 |" in line
    assert "has not read seeds as one model" in recipe.summary({"seeds": {}})
    with pytest.raises(ValueError, match="two seeds"):
        recipe.seed_ensemble(tmp_path, manifest, "24 epochs", [0])


def test_the_recipe_probe_fine_tunes_from_a_phantom_backbone_and_pairs_it_with_scratch(tmp_path, monkeypatch):
    """Each seed from the backbone (trained first) and from scratch, paired on the same scans;
    two seeds of each start read as one model; the attention model fine-tuned too, paired with
    plain (the paper's question from that start). Here the fine-tuned plain runs are right on
    all four scans, the runs from scratch and the attention model on the two A scans only."""
    import benchmarks.octdl_recipe as recipe

    paths, labels = ["1", "2", "3", "4"], [0, 1, 0, 1]
    right, only_a = [[0.8, 0.2], [0.3, 0.7]] * 2, [[0.8, 0.2], [0.6, 0.4]] * 2
    trained: dict[str, list[str]] = {}

    def fake_run_once(name, work, data, overrides, split="test"):
        trained[name] = overrides
        _metrics_csv(work / "runs" / name, [(0.5, 1.0)])
        return _reading(paths, labels, right if "plain" in name and "-from-" in name else only_a)

    def fake_reading(run, manifest, split, tta):
        return _reading(paths, labels, right if "-from-" in run.name else only_a)

    monkeypatch.setattr(recipe, "run_once", fake_run_once)
    monkeypatch.setattr(recipe, "reading", fake_reading)
    monkeypatch.setattr(recipe, "prior_corrected", lambda run, manifest, r: (0.0, r))
    monkeypatch.setattr(
        recipe, "phantom_backbone", lambda work, p, generator: work / f"phantom-{generator}" / "pretrain"
    )
    monkeypatch.setattr(recipe, "machine", lambda: {"cpu": "Test CPU", "cores": 2, "cpu_flags": "", "date": "2026"})
    models = ("plain", "attention")
    found = recipe.from_backbone(tmp_path, tmp_path / "m.csv", "24 epochs", "lesion-sized", [0, 1], 50, models)
    tuned = "octdl-plain-s0-24-epochs-from-lesion-sized"
    attention = tuned.replace("plain", "attention")
    seed1 = [name.replace("-s0-", "-s1-") for name in (tuned, "octdl-plain-s0-24-epochs", attention)]
    assert list(trained) == [tuned, "octdl-plain-s0-24-epochs", *seed1[:2], attention, seed1[2]]
    assert "model=inception_v4_attention" in trained[attention] and trained[attention][-1] == "lr_backbone=0.0002"
    weights = f"weights={tmp_path / 'phantom-lesion-sized' / 'backbone.safetensors'}"
    assert trained[tuned][-3:] == ["epochs=24", weights, "lr_backbone=0.0002"]
    assert not any(o.startswith(("weights=", "lr_backbone=")) for o in trained["octdl-plain-s0-24-epochs"])
    assert found["overrides"] == ["epochs=24", "lr_backbone=0.0002"] and found["generator"] == "lesion-sized"
    seed0 = found["runs"]["0"]
    assert seed0["backbone"]["test"]["accuracy"] == 1.0 and seed0["scratch"]["test"]["accuracy"] == 0.5
    assert seed0["paired"]["difference_points"] == pytest.approx(50.0) and "_pooled" not in seed0["backbone"]
    assert seed0["models"]["attention"]["test"]["accuracy"] == 0.5
    assert seed0["paper_question"]["attention vs plain"]["difference_points"] == pytest.approx(-50.0)
    assert "attention vs nomask" not in seed0["paper_question"]  # no masks: not run
    ensembles = found["ensembles"]
    assert ensembles["backbone"]["accuracy"] == 1.0 and ensembles["backbone"]["val_macro_f1"] == 1.0
    assert ensembles["paired"]["difference_points"] == pytest.approx(50.0)
    text = "\n".join(recipe.from_backbone_table(found))
    assert "| 0 | scratch | 0.500 (1) | 50.0% (" in text and "| 1 | backbone (plain) | 0.500 (1) | 100.0% (" in text
    assert "| 1 | backbone (attention) | 0.500 (1) | 50.0% (" in text and "| 1 | attention vs plain | -50.0 (" in text
    assert "| (0.00) 100.0%, 100.0% | +50.0 (" in text and "lesion-sized phantoms' backbone" in text
    assert "| backbone | 1.000 | 100.0% (" in text and "Test CPU" in text
    line = recipe.summary({recipe.PART_D_START: found})
    assert (
        "24 epochs from the lesion-sized phantoms' backbone | seed 1, one network; accuracy vs scratch +50.0 (" in line
    )
    assert "| 2 seeds as one model; accuracy vs scratch's +50.0 (" in line and "| Test CPU 2026 |" in line
    # one seed: no ensemble, and the README's row still says what it read
    single = recipe.from_backbone(tmp_path, tmp_path / "m.csv", "24 epochs", "lesion-sized", [0], resamples=50)
    assert "ensembles" not in single and "seed 0, one network" in recipe.summary({recipe.PART_D_START: single})
    assert "models" not in single["runs"]["0"] and "paper's question" not in "\n".join(
        recipe.from_backbone_table(single)
    )
    # a backbone file as the start: no phantoms trained, its runs and rows named after it
    monkeypatch.setattr(recipe, "phantom_backbone", lambda *args: pytest.fail("a backbone file needs no phantoms"))
    file = tmp_path / "probe" / "backbone.safetensors"
    other = recipe.from_backbone(
        tmp_path, tmp_path / "m.csv", "24 epochs", "diverse-long-s17", [0], resamples=50, weights=file
    )
    assert trained["octdl-plain-s0-24-epochs-from-diverse-long-s17"][-2:] == [f"weights={file}", "lr_backbone=0.0002"]
    assert other["weights"] == str(file) and other["runs"]["0"]["backbone"]["test"]["accuracy"] == 1.0
    both = {recipe.PART_D_START: found, recipe.start_key("diverse-long-s17"): other}
    rows = recipe.summary(both).splitlines()[2:]
    assert len(rows) == 4 and "from the diverse-long-s17 backbone | seed 0, one network" in rows[3]
    text = recipe.table({"seeds": {}, "test_scans": 4, **both})
    assert text.index("lesion-sized phantoms' backbone of the real-scan") < text.index(f"backbone `{file}` (")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variants", "24 epochs,192 px"], "fine-tunes one variant"),
        (["--models", "attention,vgg"], "--models: choose from attention, plain, nomask"),
    ],
)
def test_the_recipe_probe_fine_tunes_one_variant_of_part_bs_models(tmp_path, monkeypatch, capsys, extra, message):
    import benchmarks.octdl_recipe as recipe

    argv = ["octdl_recipe", "--octdl", str(tmp_path), "--from-backbone", "lesion-sized", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        recipe.main()
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from-backbone", "nowhere"], "--from-backbone nowhere: not a phantom generator"),
        (["--backbone-weights", "WEIGHTS"], "--backbone-weights needs --from-backbone NAME"),
        (["--from-backbone", "a/b", "--backbone-weights", "WEIGHTS"], "letters, digits"),
        (["--from-backbone", "lesion-sized", "--backbone-weights", "WEIGHTS"], "not a phantom generator's"),
        (["--from-backbone", "s17", "--backbone-weights", "missing.safetensors"], "missing.safetensors: no such file"),
    ],
)
def test_a_backbone_file_start_is_checked_before_anything_runs(tmp_path, monkeypatch, capsys, extra, message):
    import benchmarks.octdl_recipe as recipe

    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(b"")
    argv = ["octdl_recipe", "--octdl", str(tmp_path), *(str(weights) if a == "WEIGHTS" else a for a in extra)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(recipe, "from_backbone", lambda *args, **kwargs: pytest.fail("ran before the check"))
    with pytest.raises(SystemExit) as stop:
        recipe.main()
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_second_backbone_start_is_kept_beside_the_first(tmp_path, monkeypatch):
    """Each ``--from-backbone`` start has its own key: a backbone file's runs do not replace
    part d's start in the results file (one shared key used to hold only the last)."""
    import benchmarks.octdl_recipe as recipe

    first = {"generator": "lesion-sized", "runs": {}}
    (tmp_path / "octdl_recipe.json").write_text(json.dumps({"seeds": {}, recipe.PART_D_START: first}))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "octdl-clean.csv").write_text("path,label,patient,split\n")
    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(b"")
    monkeypatch.setattr(recipe, "RESULTS", tmp_path)
    monkeypatch.setattr(recipe, "from_backbone", lambda *args, **kwargs: {"generator": args[3], **kwargs})
    written: dict[str, Any] = {}
    monkeypatch.setattr(recipe, "write_results", lambda name, payload, table, folder: written.update(payload))
    start = ["--from-backbone", "diverse-long-s17", "--backbone-weights", str(weights)]
    monkeypatch.setattr(sys, "argv", ["octdl_recipe", "--octdl", str(tmp_path), "--work", str(tmp_path), *start])
    assert recipe.main() == 0
    starts = [key for key in written if key.startswith(FROM_BACKBONE)]
    assert starts == [recipe.PART_D_START, "from_backbone:diverse-long-s17"] and written[recipe.PART_D_START] == first
    assert written["from_backbone:diverse-long-s17"]["weights"] == weights


def test_a_runs_reading_is_kept_and_read_again_once_its_weights_change(bundle, tmp_path, monkeypatch):
    import shutil

    import benchmarks.octdl_recipe as recipe
    from safetensors.torch import load_file, save_file

    from octattn.inference.bundle import weights_file
    from tests.data.helpers import write_scan

    run = tmp_path / "run"
    shutil.copytree(bundle, run / "model", copy_function=link_weights)
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient", "split"])
        for i, label in enumerate(("CNV", "DME", "DRUSEN", "NORMAL")):
            writer.writerow([write_scan(tmp_path / "scans" / f"{i}.png", seed=i, fmt="PNG"), label, f"p{i}", "test"])
    calls: list[bool] = []
    real = recipe.evaluate_model

    def counted(*args, **kwargs):
        calls.append(kwargs["tta"])
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "evaluate_model", counted)
    first = recipe.reading(run, manifest, "test", tta=True)
    assert recipe.reading(run, manifest, "test", tta=True) == first and calls == [True]  # kept
    assert (run / "reading-test-tta.json").is_file() and len(first["probs"]) == 4
    weights = weights_file(run / "model")
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    save_file({**tensors, name: tensors[name] + 0.01}, str(weights))  # trained again: other weights
    recipe.reading(run, manifest, "test", tta=True)
    assert calls == [True, True]


def test_the_diverse_phantom_recipe_changes_the_number_of_phantoms_not_the_compute():
    from benchmarks.phantom_zero_shot import BASELINES, RECIPES

    (diverse, diverse_overrides), (onecycle, onecycle_overrides) = RECIPES["diverse"], RECIPES["onecycle"]
    assert BASELINES["diverse"] == "onecycle" and diverse_overrides == onecycle_overrides
    assert diverse.pretrain_per_class > onecycle.pretrain_per_class
    images = [s.pretrain_per_class * s.pretrain_epochs for s in (diverse, onecycle)]
    assert images[0] == images[1]  # the same training images seen: only their variety differs
    assert (diverse.size, diverse.batch) == (onecycle.size, onecycle.batch)
    # diverse-long: diverse's phantoms (paired with it), trained for onecycle's epochs
    long, long_overrides = RECIPES["diverse-long"]
    assert BASELINES["diverse-long"] == "diverse" and long_overrides == onecycle_overrides
    assert long.pretrain_per_class == diverse.pretrain_per_class and long.pretrain_epochs == onecycle.pretrain_epochs


def test_phantom_only_accuracy_is_split_by_the_scans_stored_width(tmp_path):
    from benchmarks.phantom_zero_shot import accuracy_by_width, table
    from PIL import Image

    paths = []
    for i, width in enumerate([512, 512, 768, 768, 1536]):
        path = tmp_path / f"s{i}.png"
        Image.new("L", (width, 4)).save(path)
        paths.append(str(path))
    # right on scans 0, 2 and 4: half of the 512s, half of the 768s, the one 1536
    labels = [0, 1, 2, 3, 0]
    calls = [0, 2, 2, 0, 0]
    probs = [[1.0 if c == call else 0.0 for c in range(4)] for call in calls]
    split = accuracy_by_width({"paths": paths, "labels": labels, "probs": probs})
    assert split == {
        "512": {"n": 2, "accuracy": 0.5},
        "768": {"n": 2, "accuracy": 0.5},
        "1536": {"n": 1, "accuracy": 1.0},
    }
    other_seed = {**split, "1536": {"n": 1, "accuracy": 0.0}}
    text = table({"runs": {}, "by_width": {"lesion-sized/onecycle": {"14": split, "15": other_seed}}})
    assert "| anatomy / recipe | seeds | 512 px wide | 768 px wide | 1536 px wide |" in text
    assert "| lesion-sized/onecycle | 2 | 50.0% (2) | 50.0% (2) | 50.0% (1) |" in text  # 1536: mean of 100% and 0%


def _biased_reading(n_per_class: int = 10) -> dict:
    """Each scan's own class second-highest, after class 0 (a constant bias): 25% right as read."""
    labels = [c for c in range(4) for _ in range(n_per_class)]
    logits = np.array([[3.0 + (2.0 if y == 0 else 0.0), 0, 0, 0] for y in labels])
    for i, y in enumerate(labels):
        logits[i, y] += 2.0 if y else 0.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {
        "paths": [f"/scans/s{i}.png" for i in range(len(labels))],
        "groups": [f"p{i}" for i in range(len(labels))],
        "labels": labels,
        "probs": probs.tolist(),
    }


def test_balancing_puts_back_a_constant_bias_without_labels():
    from benchmarks.phantom_zero_shot import balance_weights

    probs = np.asarray(_biased_reading()["probs"])
    prior = np.full(4, 0.25)
    weights = balance_weights(probs, prior)
    reweighted = probs * weights
    reweighted /= reweighted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reweighted.mean(axis=0), prior, atol=1e-6)
    labels = np.asarray(_biased_reading()["labels"])
    assert (probs.argmax(1) == labels).mean() == 0.25 and (reweighted.argmax(1) == labels).mean() == 1.0


def test_the_balanced_reading_is_cross_fitted_and_paired(monkeypatch):
    import benchmarks.phantom_zero_shot as probe

    reading = _biased_reading()
    rows = [{"path": p} for p in reading["paths"]]
    halves = [(np.arange(0, 40, 2), np.arange(1, 40, 2)), (np.arange(1, 40, 2), np.arange(0, 40, 2))]
    seen: list[list[int]] = []

    def folds(_rows, _k):
        seen.append([len(rest) for rest, _ in halves])
        return halves

    monkeypatch.setattr(probe, "oct2017_scans", lambda: rows)
    monkeypatch.setattr(probe, "oct2017_folds", folds)
    out = probe.balanced_cv(reading)
    assert out["accuracy"] == 1.0 and out["vs_unbalanced"]["difference_points"] == pytest.approx(75.0)
    assert seen  # the weights came from the benchmark's folds, each applied to the other half
    text = probe.table({"runs": {}, "balanced": {"lesion-sized/onecycle": {"14": out}}})
    assert "| lesion-sized/onecycle | 14 | 100.0% (" in text and "+75.0 (" in text
    with pytest.raises(ValueError, match="not of the 307 scans"):
        probe.balanced_cv({**reading, "paths": reading["paths"][::-1]})


def test_each_phantom_backbone_draws_its_own_phantoms_and_part_d_shows_every_one_it_read(tmp_path, monkeypatch):
    from octattn.data.phantom import generate_phantom
    from octattn.data.phantom_anatomy import generate_lesion_sized_phantom

    drawn, trained = {}, {}

    def write(out, per_class, seed, overwrite, style, generator):
        drawn[out.parent.name] = (per_class["train"], style is not None, generator)

    def pretrain(folder, phantoms, setup, recipe):
        trained[folder.name] = (setup.pretrain_per_class, setup.pretrain_epochs, tuple(recipe))

    monkeypatch.setattr(real_scans, "write_phantom_tree", write)
    monkeypatch.setattr(real_scans, "_pretrain", pretrain)
    p = plan(False, 147)
    for generator in real_scans.PHANTOM_GENERATORS:
        assert real_scans.phantom_backbone(tmp_path, p, generator) == tmp_path / f"phantom-{generator}" / "pretrain"
    assert drawn == {
        "phantom-standard": (150, False, generate_phantom),
        "phantom-realistic": (150, True, generate_phantom),
        "phantom-lesion-sized": (500, True, generate_lesion_sized_phantom),  # the probe's diverse-long
    }
    assert (
        trained["phantom-lesion-sized"]
        == (500, 10, real_scans.PHANTOM_RECIPE)
        == (500, *trained["phantom-realistic"][1:])
    )

    results = _fake_results()
    old_text = table(results)  # results from before the lesion-sized backbone: no row for it
    assert "| lesion-sized |" not in old_text and "| realistic |" in old_text
    best = {"n": 307, "accuracy": 0.52, "macro_f1": 0.5, "accuracy_ci": [0.46, 0.58]}
    results["zero_shot"] |= {"lesion-sized_all": best, "lesion-sized_not_in_style": best}
    results["phantom_statistics"]["lesion-sized"] = results["phantom_statistics"]["realistic"]
    text = table(results)
    assert "| lesion-sized | 52.0% (46.0%-58.0%) (n=307) |" in text and "| lesion-sized phantoms |" in text
    assert headline(results)["zero_shot"]["lesion-sized_all"]["accuracy"] == 0.52


def test_a_phantom_only_backbone_is_fine_tuned_with_part_as_recipe_and_paired_with_its_baselines(tmp_path, monkeypatch):
    import benchmarks.phantom_zero_shot as probe

    calls = []

    def cross_validated(folder, p, configs, weights, pairs, seeds, every_seed=frozenset({"scratch"})):
        calls.append((folder.name, configs, weights, seeds, every_seed))
        right = {"scratch": 5, "lesion-sized-diverse-s14": 8}.get(folder.name, 14)
        correct = np.arange(20) < right
        return {
            "runs": {
                f"{configs[0][0]}-{configs[0][1]}": {
                    "n": 20,
                    "accuracy": right / 20,
                    "accuracy_ci": [0.1, 0.9],
                    "macro_f1": right / 20,
                    "_order": [f"s{i}.png" for i in range(20)],
                    "_correct": correct.tolist(),
                    "_groups": [f"p{i}" for i in range(20)],
                }
            }
        }

    monkeypatch.setattr(probe, "cross_validated", cross_validated)
    alone = probe.fine_tuned_result(tmp_path, "lesion-sized/diverse-long", 14)
    folder, configs, weights, seeds, every_seed = calls[0]
    assert every_seed == frozenset({"phantom_gentle_e20"})  # seed 0 is fine-tuned, whatever the backbone's seed
    assert folder == "lesion-sized-diverse-long-s14" and configs == [("plain", "phantom_gentle_e20")]
    assert weights == {"phantom_gentle_e20": tmp_path / folder / "backbone.safetensors"} and seeds == (0,)
    assert real_scans.START_OVERRIDES[probe.FINE_TUNE_START] == [*real_scans.GENTLE, "epochs=20"]  # gentle, 20 epochs
    assert probe.PAIRED not in alone and not any(k.startswith("_") for k in alone)  # diverse not fine-tuned here
    assert alone["machine"]["cores"] >= 1
    assert calls[1][:4] == ("scratch", [("plain", "scratch")], {}, (0,))  # scratch once, for every pairing
    assert alone[probe.VS_SCRATCH]["difference_points"] == pytest.approx(45.0)  # 14 of 20 right against 5
    model = tmp_path / "lesion-sized-diverse-s14" / "pretrain" / "model"  # the baseline's backbone, not fine-tuned
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    assert probe.PAIRED not in probe.fine_tuned_result(tmp_path, "lesion-sized/diverse-long", 14)
    assert len(calls) == 4  # and the baseline was not fine-tuned to pair with it
    for k in range(5):  # the baseline's folds finished: the reading pairs with it, training nothing
        result = tmp_path / "lesion-sized-diverse-s14" / "runs" / f"oct2017-plain-phantom_gentle_e20-fold{k}"
        result.mkdir(parents=True)
        (result / "result.json").write_text("{}")
    paired = probe.fine_tuned_result(tmp_path, "lesion-sized/diverse-long", 14)[probe.PAIRED]
    assert paired["baseline"] == "diverse" and paired["difference_points"] == pytest.approx(30.0)
    text = probe.table({"runs": {}, probe.FINE_TUNED: {"lesion-sized/diverse-long": {"14": alone}}})
    assert "| lesion-sized/diverse-long | 14 | - | 70.0% (10.0%-90.0%) | 0.700 | +45.0 (" in text


def test_a_second_set_of_seeds_is_read_as_its_own_ensemble_beside_the_first(tmp_path, monkeypatch):
    # an out-of-sample check runs new seeds of a recipe chosen on the first ones: its ensemble must
    # not replace the first set's (it once did: the ensembles were keyed by configuration alone)
    import benchmarks.phantom_zero_shot as probe

    name = "lesion-sized/diverse-long"
    first = {"seeds": [14, 15, 16], "accuracy": 0.56, "accuracy_ci": [0.5, 0.6], "macro_f1": 0.5, "vs_seeds": {}}
    (tmp_path / "phantom_zero_shot.json").write_text(json.dumps({"runs": {}, "ensembles": {name: first}}))
    written: list[dict] = []
    monkeypatch.setattr(probe, "RESULTS", tmp_path)
    monkeypatch.setattr(probe, "REAL_DATA", tmp_path)
    monkeypatch.setattr(probe, "one_run", lambda work, n, seed: {"accuracy": 0.5, "seed": seed})
    monkeypatch.setattr(probe, "versus_baseline", lambda work, n, seed: None)
    monkeypatch.setattr(probe, "scan_reading", lambda folder: {})
    monkeypatch.setattr(probe, "accuracy_by_width", lambda reading: {})
    monkeypatch.setattr(probe, "balanced_cv", lambda reading: {})
    monkeypatch.setattr(probe, "seed_ensemble", lambda work, n, seeds: {**first, "seeds": seeds, "accuracy": 0.4})
    monkeypatch.setattr(probe, "write_results", lambda stem, results, table: written.append(results))
    monkeypatch.setattr(
        "sys.argv", ["phantom_zero_shot", "--runs", name, "--seeds", "17,18,19", "--work", str(tmp_path)]
    )
    assert probe.main() == 0
    ensembles = written[-1]["ensembles"]
    assert {k: e["seeds"] for k, e in ensembles.items()} == {
        probe.ensemble_key(name, [14, 15, 16]): [14, 15, 16],
        probe.ensemble_key(name, [17, 18, 19]): [17, 18, 19],
    }
    rows = [
        line
        for line in probe.table({"runs": {}, "ensembles": ensembles}).splitlines()
        if line.startswith(f"| {name} |")
    ]
    assert [r.split("|")[2].strip() for r in rows] == ["14, 15, 16", "17, 18, 19"]


def test_the_summary_adds_the_phantom_probes_seeds_run_after_its_recipe_was_chosen_once_all_have_run(tmp_path):
    from benchmarks.real_scans import ZERO_SHOT_HELD_OUT

    name, seeds = ZERO_SHOT_HELD_OUT
    runs = {
        seed: {"accuracy": acc, "macro_f1": acc - 0.1, "machine": XEON}
        for seed, acc in zip(seeds, (0.5, 0.6, 0.7), strict=True)
    }
    results = {**_fake_results(), "machine": _machine("AMD EPYC", "2026-12-05")}
    found = tmp_path / "phantom_zero_shot.json"
    found.write_text(json.dumps({"runs": {name: {**runs, "14": {"accuracy": 0.99}}}}))
    row = next(line for line in summary(results, elsewhere=tmp_path).splitlines() if "after the choice" in line)
    # the held-out seeds averaged (seed 14, read before the choice, left out), against the target
    assert row.split("|")[2:6] == [f" {name} (3) ", " 60.0% ", " 50.0% ", " accuracy 50% "]
    assert XEON["cpu"] in row
    found.write_text(json.dumps({"runs": {name: {seed: runs[seed] for seed in seeds[:-1]}}}))
    assert "after the choice" not in summary(results, elsewhere=tmp_path)  # not before every seed has run


def test_the_summary_adds_the_lesion_backbone_folds_best_model_averaged_over_every_seed(tmp_path):
    def reading(acc: float) -> dict:
        return {"n": 307, "accuracy": acc, "macro_f1": acc - 0.01}

    seeds = {
        "0": {"machine": XEON, "runs": {"plain": reading(0.85), "attention": reading(0.82), "nomask": reading(0.99)}},
        "1": {"machine": XEON, "runs": {"plain": reading(0.78), "attention": reading(0.83)}},
    }
    for seed in seeds.values():
        seed["comparisons"] = {"attention vs plain": DOWN}
    start = {"backbone": "lesion-sized", "start": "lesion_gentle_e20", "epochs": 20, "seeds": seeds}
    results = {**_fake_results(), "machine": _machine("AMD EPYC", "2026-12-05")}
    assert "part d's) at a tenth" not in summary(results, elsewhere=tmp_path)  # not before the probe has run
    (tmp_path / "oct2017_from_backbone.json").write_text(json.dumps(start))
    lines = summary(results, elsewhere=tmp_path).splitlines()
    row = next(line for line in lines if "part d's) at a tenth" in line)
    # no masks ran on one seed only: left out; attention's mean (82.5%) beats plain's (81.5%)
    assert row.split("|")[2:6] == [" attention-lesion_gentle_e20 (2) ", " 82.5% ", " 81.5% ", " accuracy 80% "]
    assert XEON["cpu"] in row
    # beside part a's rows, before the other yardsticks'
    assert lines.index(row) == 1 + max(i for i, line in enumerate(lines) if line.endswith("|") and "(a) |" in line)


def test_quick_reads_the_first_oct2017_scans_of_each_class_and_the_full_plan_reads_all(monkeypatch):
    from benchmarks import real_scans

    rows = [{"path": f"{label}-{i}", "label": label, "group": f"{label}{i}"} for i in range(20) for label in "AB"]
    monkeypatch.setattr(real_scans, "oct2017_scans", lambda: rows)
    quick = real_scans.oct2017_rows(real_scans.plan(True, 147))
    assert [r["path"] for r in quick] == [f"{label}-{i}" for i in range(16) for label in "AB"]
    assert real_scans.oct2017_rows(real_scans.plan(False, 147)) == rows


def test_a_part_offers_every_run_before_it_waits_for_the_first(tmp_path, monkeypatch):
    """What lets --jobs share a part's runs: part a submits all its fold runs, and part b all
    its runs, before settling any; the results still reach the right run names."""
    rows = [
        {"path": f"s{i}.png", "label": ["CNV", "DME", "DRUSEN", "NORMAL"][i % 4], "group": str(i)} for i in range(20)
    ]
    monkeypatch.setattr(real_scans, "oct2017_scans", lambda: rows)
    offered: list[str] = []
    awaited: list[list[str]] = []

    def settle(jobs):
        awaited.append([job.name for job in jobs])
        return [{"paths": [job.name], "groups": [job.name], "labels": [0], "probs": [[1, 0, 0, 0]]} for job in jobs]

    monkeypatch.setattr(real_scans.run_pool, "submit", lambda job: offered.append(job.name) or job)
    monkeypatch.setattr(real_scans.run_pool, "settle", settle)
    monkeypatch.setattr(real_scans, "pooled", lambda results: {"order": [r["paths"][0] for r in results]})
    monkeypatch.setattr(real_scans, "paired", lambda a, b: {})
    configs = [("attention", "scratch"), ("plain", "scratch")]
    out = real_scans.cross_validated(tmp_path, plan(True, 75), configs, {}, (), seeds=(0,))
    folds = ["fold0", "fold1"]
    assert offered == [f"oct2017-{m}-scratch-{f}" for m in ("attention", "plain") for f in folds]
    assert len(awaited) == 2 and all(len(a) == 2 for a in awaited), (
        "settled after all were offered, a run set at a time"
    )
    assert out["runs"]["plain-scratch"] == {"order": [f"oct2017-plain-scratch-{f}" for f in folds]}


def test_jobs_must_be_a_process_or_more(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["real_scans", "--jobs", "0"])
    with pytest.raises(SystemExit) as stop:
        real_scans.main()
    assert stop.value.code == 2 and "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_a_run_offered_to_the_pool_names_absolute_paths(tmp_path, monkeypatch):
    """A worker may start in another folder: the work folder and data travel absolute."""
    monkeypatch.chdir(tmp_path)
    job = real_scans.submit_run("r", Path("work"), Path("data.csv"), ["epochs=1"])
    assert job.work == str(tmp_path / "work") and job.data == str(tmp_path / "data.csv")
    assert job.runner == "benchmarks.real_scans:run_once" and job.overrides == ("epochs=1",)


def test_val_every_must_be_an_epoch_or_more(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["real_scans", "--val-every", "0"])
    with pytest.raises(SystemExit) as stop:
        real_scans.main()
    assert stop.value.code == 2 and "--val-every must be at least 1, got 0" in capsys.readouterr().err


def test_the_plans_cadence_reaches_every_real_scan_run():
    """``--val-every`` reaches part a's folds and part b's runs; the plan's default stays the
    committed runs' (every epoch), so a finished run is still reused."""
    for every in (1, 3):
        p = plan(False, 147, every)
        for overrides in (real_scans.fold_overrides(p, "plain", 0, []), real_scans.octdl_overrides(p, "plain", 0)):
            config = real_scans.load_config(real_scans.config_path("demo"), ["data=x", *overrides])
            assert config.val_every == every
    assert plan(False, 147).val_every == 1


def _a_run(run: Path, epochs_asked: int, epochs_done: int) -> Path:
    """A run folder as training leaves it: its settings, its best bundle, its epochs so far."""
    (run / "model").mkdir(parents=True)
    config = real_scans.load_config(real_scans.config_path("demo"), ["data=x", f"epochs={epochs_asked}"])
    save_config(config, run / real_scans.RUN_CONFIG)
    rows = "".join(f"{e},0.5\n" for e in range(1, epochs_done + 1))
    (run / "metrics.csv").write_text("epoch,train_loss\n" + rows)
    return run


def test_a_run_with_a_bundle_but_epochs_to_go_has_not_finished(tmp_path):
    """Part c's runs were reused once their bundle existed, which training writes at its first
    best epoch: a run cut short passed for finished."""
    assert not real_scans.trained_through(_a_run(tmp_path / "cut", 12, 4))
    assert real_scans.trained_through(_a_run(tmp_path / "done", 12, 12))
    assert not real_scans.trained_through(tmp_path / "never")


def test_part_c_trains_a_run_cut_short_again(tmp_path, monkeypatch):
    trained: list[Path] = []
    monkeypatch.setattr(real_scans, "train", lambda config, run, **kw: trained.append(run))
    config = real_scans.load_config(real_scans.config_path("demo"), ["data=x", "epochs=12"])
    cut = _a_run(tmp_path / "cut", 12, 4)
    assert real_scans.reused_or_trained(cut, config) is False and trained == [cut]


def test_a_stage_clock_counts_the_runs_and_backbones_a_stage_made(tmp_path):
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "result.json").write_text("{}")
    clock = real_scans.StageClock(tmp_path)
    with clock("a"):
        for name in ("r1", "r2"):
            (tmp_path / "runs" / name).mkdir()
            (tmp_path / "runs" / name / "result.json").write_text("{}")
        _a_run(tmp_path / "runs" / "c-trained", 3, 3)  # part c's: trained, never scored into a result.json
        _a_run(tmp_path / "runs" / "still-training", 3, 1)
    with pytest.raises(KeyboardInterrupt), clock("backbones"):
        (tmp_path / "phantom-realistic").mkdir()
        (tmp_path / "phantom-realistic" / "backbone.safetensors").write_bytes(b"")
        raise KeyboardInterrupt
    assert clock.new_runs == {"a": 3, "backbones": 1}, "the stage cut short still counts what it finished"
    assert set(clock.seconds) == {"a", "backbones"} and all(s >= 0 for s in clock.seconds.values())


def test_a_call_cut_short_still_records_its_stages(tmp_path, monkeypatch):
    """Ctrl-C during part d: the call's line in timings.jsonl says so, keeps the line before it,
    and the interruption still stops the call."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / real_scans.TIMINGS).write_text('{"stages": {}}\n')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(real_scans, "phantom_backbone", lambda work, p, generator: work / generator)
    monkeypatch.setattr(real_scans, "zero_shot", interrupted)
    monkeypatch.setattr(sys, "argv", ["real_scans", "--parts", "d", "--work", str(tmp_path), "--val-every", "3"])
    with pytest.raises(KeyboardInterrupt):
        real_scans.main()
    lines = (tmp_path / "full" / real_scans.TIMINGS).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"stages": {}}
    record = json.loads(lines[1])
    assert record["cut_short"] is True and list(record["stages"]) == ["backbones", "d"]
    assert record["val_every"] == 3 and record["command"][:2] == ["--parts", "d"]
    assert record["machine"]["cores"] >= 1


def test_a_call_stopped_by_a_term_signal_records_its_stages_and_hands_the_signal_back(tmp_path, monkeypatch):
    """A call started in the background ignores Ctrl-C; ``kill`` (TERM) must cut it short just
    as cleanly, and the handler must not outlive the call."""
    import os
    import signal

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(real_scans, "phantom_backbone", lambda work, p, generator: work / generator)
    monkeypatch.setattr(real_scans, "zero_shot", killed)
    monkeypatch.setattr(sys, "argv", ["real_scans", "--parts", "d", "--work", str(tmp_path)])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        real_scans.main()
    assert stop.value.code == 128 + signal.SIGTERM
    record = json.loads((tmp_path / "full" / real_scans.TIMINGS).read_text())
    assert record["cut_short"] is True and list(record["stages"]) == ["backbones", "d"]
    assert signal.getsignal(signal.SIGTERM) == before
