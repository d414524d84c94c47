"""benchmarks/validation_cadence.py: its table reads its numbers, its fold times come from the
run folders, and a bad --every stops in one line before anything trains."""

import sys

import pytest
from benchmarks.validation_cadence import main, table, training_steps_seconds, with_model


def _cadence(seconds, accuracy, **extra):
    return {
        "n": 307,
        "accuracy": accuracy,
        "accuracy_ci": [accuracy - 0.05, accuracy + 0.05],
        "macro_f1": accuracy - 0.01,
        "macro_f1_ci": [0.0, 1.0],
        "fold_seconds": seconds,
        "fold_training_steps_seconds": [100.0] * len(seconds),
        **extra,
    }


def test_the_table_gives_each_cadence_its_time_ratio_and_its_paired_difference_on_each_seed():
    versus = {"difference_points": -1.3, "interval_points": [-4.0, 1.5], "p_value": 0.42}
    plain = {
        **PLAN,
        "seeds": {
            "0": {
                "1": _cadence([220.0, 230.0, 225.0, 240.0, 235.0], 0.583),
                "3": _cadence([170.0, 175.0, 180.0, 172.0, 178.0], 0.570, vs_first=versus),
            },
            "1": {
                "1": _cadence([200.0] * 5, 0.5),
                "3": _cadence([250.0] * 5, 0.5, vs_first=versus),
            },
        },
        "machine": _machine("2026-12-07T17:04:18+00:00"),
    }
    attention = {
        **PLAN,
        "seeds": {"0": {"1": _cadence([300.0] * 5, 0.6), "3": _cadence([240.0] * 5, 0.6, vs_first=versus)}},
        "machine": _machine("2026-12-07T20:10:00+00:00"),
    }
    results = {"models": {"plain": plain, "attention": attention}}

    def rows(text):
        return {
            tuple(c.strip() for c in line.split("|")[1:4]): line for line in text.splitlines() if "val_every" in line
        }

    text = table(results)
    found = rows(text)
    assert found[("val_every 1", "plain", "0")].split("|")[4:8] == [" 230 ", " 1150 ", " 500 ", " 1.00x "]
    assert found[("val_every 3", "plain", "0")].split("|")[4:8] == [" 175 ", " 875 ", " 500 ", " 1.31x "]
    assert found[("val_every 3", "plain", "1")].split("|")[7] == " 0.80x "  # each seed against its own first
    assert found[("val_every 3", "attention", "0")].split("|")[4:8] == [" 240 ", " 1200 ", " 500 ", " 1.25x "]
    row = found[("val_every 1", "plain", "0")]
    assert "58.3% (53.3%-63.3%)" in row and row.rstrip().endswith("| - |")
    assert "-1.3 (-4.0 to +1.5; p 0.42)" in found[("val_every 3", "plain", "0")]
    assert "Measured: plain 2026-12-07 17:04 UTC; attention 2026-12-07 20:10 UTC." in text
    # a fold trained before its time was kept: no total and no ratio, never a wrong one
    plain["seeds"]["0"]["1"]["fold_seconds"][0] = None
    found = rows(table(results))
    assert found[("val_every 1", "plain", "0")].split("|")[5:8] == [" - ", " 500 ", " - "]


PLAN = {"size": 147, "epochs": 12, "folds": 5, "scans": 307}


def _machine(date, cpu="Intel(R) Xeon(R) Processor"):
    return {"cpu": cpu, "cpu_flags": "avx2", "cores": 2, "torch": "2.14.1", "date": date}


def test_a_second_model_is_kept_beside_the_first_and_the_old_layout_is_read_as_its_model():
    old = {"machine": _machine("2026-12-07T17:04:18+00:00"), "model": "plain", **PLAN, "seeds": {"0": {}}}
    attention = {**PLAN, "seeds": {"1": {}}, "machine": _machine("2026-12-07T20:10:00+00:00")}
    merged = with_model(old, "attention", attention)
    assert list(merged["models"]) == ["plain", "attention"]
    assert merged["models"]["plain"] == {k: v for k, v in old.items() if k != "model"}  # its own machine kept
    again = {**PLAN, "seeds": {"0": {"1": {}}}, "machine": _machine("2026-12-08T09:00:00+00:00")}
    remeasured = with_model(merged, "plain", again)
    assert remeasured["models"] == {"plain": again, "attention": attention}  # replaced in its place
    assert with_model(None, "plain", again) == {"models": {"plain": again}}


def test_models_measured_on_other_cpus_name_theirs():
    seeds = {"0": {"1": _cadence([1.0] * 5, 0.5)}}
    results = {
        "models": {
            "plain": {**PLAN, "seeds": seeds, "machine": _machine("2026-12-07T17:04:00", cpu="AMD EPYC")},
            "attention": {**PLAN, "seeds": seeds, "machine": _machine("2026-12-08T17:04:00")},
        }
    }
    assert "plain 2026-12-07 17:04 UTC on AMD EPYC; attention 2026-12-08 17:04 UTC on Intel" in table(results)


def test_training_steps_are_the_epochs_seconds_of_the_run(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,train_loss,epoch_seconds\n1,1.2,10.5\n2,1.0,11.0\n")
    assert training_steps_seconds(tmp_path) == pytest.approx(21.5)


@pytest.mark.parametrize("every", ["3", "1,x", "0,3", "2,2"])
def test_a_bad_cadence_list_stops_in_one_line(every, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["validation_cadence", "--every", every])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "--every" in capsys.readouterr().err.strip().splitlines()[-1]
