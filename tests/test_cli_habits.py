"""The CLI explains itself: config show, resume with the run's own config, one evaluation
precision, model names in comparisons, progress bars only on a terminal, docs that match the
code and the results."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from octattn import progress as progress_module
from octattn.cli import build_parser, main
from octattn.errors import ConfigError
from octattn.evaluation.compare import display_names, model_display_name
from octattn.precision import EVALUATION_PRECISION
from octattn.training.config import config_for_resume, keys, load_config, save_config
from tests.conftest import REPO_ROOT


def test_config_show_prints_every_key_with_value_default_and_help(capsys):
    assert main(["config", "show", "epochs=3", "lr_new=0.01"]) == 0
    out = capsys.readouterr().out
    for key in keys():
        assert f"\n{key} " in "\n" + out, key
    assert re.search(r"^epochs +3  \(default 20\)$", out, re.M)  # a changed value says its default
    assert "passes over the (balanced) training set" in out  # and every key its help
    assert out.count("\n") == 2 * len(keys())


def test_an_unknown_key_names_the_closest_ones(capsys, tmp_path):
    assert main(["config", "show", "lr_neww=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'lr_neww'; closest: lr_new" in err and "octattn config show" in err
    (tmp_path / "c.yaml").write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'epoch'; closest: epochs"):
        load_config(tmp_path / "c.yaml")


def test_resume_reads_the_runs_own_config_and_refuses_another(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    own = load_config(None, ["epochs=3", "lr_new=0.01", f"data={tmp_path}"])
    save_config(own, run / "config.yaml")
    assert config_for_resume(run, None) == own  # no --config: the run's recipe, not the built-in one
    other = tmp_path / "other.yaml"
    other.write_text(f"epochs: 5\ndata: {tmp_path}\n")
    with pytest.raises(ConfigError) as caught:
        config_for_resume(run, other)
    message = str(caught.value)
    assert "epochs: 3 in the run, 5 given" in message and "lr_new: 0.01 in the run, 0.001 given" in message
    assert "--force" in message
    with pytest.raises(ConfigError, match="epochs: 3 in the run, 4 given"):
        config_for_resume(run, None, ["epochs=4"])
    assert config_for_resume(run, other, force=True).epochs == 5
    assert config_for_resume(tmp_path / "new", None, ["epochs=2"]).epochs == 2  # nothing ran yet
    # which checkpoints a run keeps is not its recipe: a resume may change it, and it takes effect
    kept = config_for_resume(run, None, ["checkpoint_every=0", "keep_checkpoint=false"])
    assert (kept.checkpoint_every, kept.keep_checkpoint, kept.epochs) == (0, False, 3)


def test_train_resume_with_another_config_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config(None, ["epochs=3"]), run / "config.yaml")
    assert main(["train", "--out", str(run), "--resume", "epochs=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "epochs: 3 in the run, 9 given" in err


def test_every_command_that_evaluates_defaults_to_one_precision():
    parser = build_parser()
    for command in (["evaluate", "M"], ["compare", "A", "B"]):
        assert parser.parse_args(command).precision == EVALUATION_PRECISION == "fp32"
    assert parser.parse_args(["predict", "M", "x.png"]).precision == "auto"  # prediction: speed


def test_comparisons_name_the_models():
    assert model_display_name("runs/attention/model") == "attention"
    assert model_display_name("local-dir:runs/plain") == "plain"
    assert display_names("runs/attention", "runs/plain") == ("attention", "plain")
    assert display_names("a/run", "b/run") == ("A: run", "B: run")  # same folder names stay apart


def test_compare_and_evaluate_record_their_arithmetic(bundle, real_data, capsys):
    assert main(["--quiet", "compare", str(bundle), str(bundle), "--data", str(real_data), "--batch", "36"]) == 0
    out = capsys.readouterr().out
    name = bundle.parent.name  # a bundle is named by its run's folder
    assert "arithmetic fp32" in out and f"McNemar exact test: A: {name} right where B: {name} is wrong" in out


def test_progress_bars_only_on_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress_module.progress(range(3), desc="x")) == [0, 1, 2]
    assert stream.getvalue() == ""  # not a terminal: silent

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    list(progress_module.progress(range(3), desc="counting"))
    assert "counting" in terminal.getvalue()
    progress_module.set_quiet(True)
    try:
        quiet = Terminal()
        monkeypatch.setattr(sys, "stderr", quiet)
        list(progress_module.progress(range(3), desc="counting"))
        assert quiet.getvalue() == ""  # --quiet silences a terminal too
    finally:
        progress_module.set_quiet(False)


def test_docs_reference_and_tables_match_the_code_and_results():
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docs" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_table_that_drifts_from_its_json_is_found(tmp_path):
    from benchmarks import docs_tables

    page = tmp_path / "page.md"
    page.write_text("<!-- results: memory -->\n| stale |\n<!-- /results -->\n")
    assert docs_tables.stale_pages([page]) == [page]
    page.write_text(docs_tables.refreshed(page.read_text()))
    assert "peak resident memory" in page.read_text() and docs_tables.stale_pages([page]) == []
