"""Run folders that travel: any working directory, a moved folder, images that are gone."""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from octattn.cli import main
from octattn.demo import run_demo
from octattn.run_paths import RunPaths
from tests.conftest import DEMO_TINY as TINY
from tests.conftest import WRITES_RUNS, link_weights

pytestmark = WRITES_RUNS


@pytest.fixture(scope="module")
def relative_demo(tmp_path_factory) -> Iterator[Path]:
    """A tiny demo started as a user would: `--out runs/demo-a`, relative to the folder of the day."""
    home = tmp_path_factory.mktemp("home")
    here = Path.cwd()
    os.chdir(home)
    try:
        run_demo(Path("runs/demo-a"), overrides=TINY, train_per_class=4, test_per_class=2, progress=False, log=print)
    finally:
        os.chdir(here)
    yield home / "runs" / "demo-a"
    shutil.rmtree(home, ignore_errors=True)  # gone with the module: the suite's disk stays small


def _plots(page: Path) -> set[str]:
    text = page.read_text()
    return {chunk.split("'")[0] for chunk in text.split("<img class='plot' alt='")[1:]}


def test_run_records_its_data_absolute_relative_and_as_typed(relative_demo):
    record = json.loads((relative_demo / "run" / "paths.json").read_text())["data"]
    assert record["as_given"] == "runs/demo-a/data" and record["relative_to_run"] == "../data"
    assert Path(record["absolute"]) == (relative_demo / "data").resolve()
    predictions = (relative_demo / "run" / "evaluation" / "predictions.csv").read_text().splitlines()[1:]
    assert all(Path(row.split(",")[0]).is_absolute() for row in predictions)


def test_report_evaluate_explain_from_another_folder(relative_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = relative_demo / "run"
    assert main(["report", str(run), "--out", "r"]) == 0
    assert "run_attention" in _plots(tmp_path / "r" / "index.html")
    assert main(["evaluate", str(run), "--out", "e"]) == 0  # no --data: the run's own
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n"] == 8
    scan = next((relative_demo / "data" / "test" / "DME").iterdir())
    assert main(["explain", str(run), str(scan), "--out", "x"]) == 0
    assert any((tmp_path / "x").glob("*_attention_after_9.png"))
    assert main(["compare", str(run), str(run)]) == 0
    assert "McNemar" in capsys.readouterr().out


def test_a_moved_demo_folder_keeps_working(relative_demo, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "demo-a"
    shutil.copytree(relative_demo, moved, copy_function=link_weights)
    monkeypatch.chdir(tmp_path)
    shutil.move(str(relative_demo), str(tmp_path / "original-gone"))  # the old location is gone
    try:
        assert RunPaths(moved / "run").data_root() == (moved / "data").resolve()
        assert main(["report", str(moved / "run"), "--out", "r"]) == 0
        assert "run_attention" in _plots(tmp_path / "r" / "index.html")
        assert main(["evaluate", str(moved / "run"), "--out", "e"]) == 0
    finally:
        shutil.move(str(tmp_path / "original-gone"), str(relative_demo))


def test_a_run_copied_without_its_images_still_reports(relative_demo, tmp_path, monkeypatch, capsys):
    lonely = tmp_path / "copied-run"
    shutil.copytree(relative_demo / "run", lonely, copy_function=link_weights)
    monkeypatch.chdir(tmp_path)
    shutil.move(str(relative_demo / "data"), str(tmp_path / "data-gone"))
    try:
        assert main(["report", str(lonely), "--out", "r"]) == 0
        page = (tmp_path / "r" / "index.html").read_text()
        assert {"loss_curves", "copied-run_roc", "copied-run_confusion"} <= _plots(tmp_path / "r" / "index.html")
        assert "The attention-mask figure not drawn: 4 image(s) it needs are missing (" in page
        assert "Table I: precision" in page
        assert main(["evaluate", str(lonely)]) == 2
        assert "the data it was trained on is not at" in capsys.readouterr().err
    finally:
        shutil.move(str(tmp_path / "data-gone"), str(relative_demo / "data"))


def test_runs_from_before_paths_json_find_their_data_from_the_run_folder(relative_demo, tmp_path, monkeypatch):
    (relative_demo / "run" / "paths.json").rename(tmp_path / "paths.json")
    try:
        monkeypatch.chdir(tmp_path)
        (relative_demo / "run" / "config.yaml").write_text(
            (relative_demo / "run" / "config.yaml")
            .read_text()
            .replace(str((relative_demo / "data").resolve()), "runs/demo-a/data")
        )
        assert RunPaths(relative_demo / "run").data_root() == (relative_demo / "data").resolve()
    finally:
        (tmp_path / "paths.json").rename(relative_demo / "run" / "paths.json")
