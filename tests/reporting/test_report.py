import base64
import re
import shutil
from pathlib import Path

import pytest

from octattn.cli import main
from octattn.reporting.report import write_report
from tests.conftest import link_weights

EXPECTED_PLOTS = {"loss_curves", "run_roc", "run_confusion", "run_reliability", "run_attention", "run_attention_health"}


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r"<img class='plot' alt='([^']+)' src='data:image/png;base64,([^']+)'>", page)
    return {name: base64.b64decode(data) for name, data in found}


def test_report_embeds_every_plot_as_png(demo_dir, tmp_path):
    page = write_report([demo_dir / "run"], tmp_path / "r")
    images = _images(page.read_text())
    assert set(images) >= EXPECTED_PLOTS
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    markdown = (tmp_path / "r" / "report.md").read_text()
    for name in EXPECTED_PLOTS:
        assert f"figures/{name}.png" in markdown and (tmp_path / "r" / "figures" / f"{name}.png").exists()
    text = page.read_text()
    for heading in (
        "Table I: precision",
        "Table II: recall",
        "Table III",
        "Training loss (Fig. 4)",
        "Fig. 6",
        "Channels moved",
    ):
        assert heading in text


def test_report_of_an_unevaluated_run_says_so(demo_dir, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(demo_dir / "run", run, ignore=shutil.ignore_patterns("evaluation"), copy_function=link_weights)
    text = write_report([run], tmp_path / "r").read_text()
    assert "not evaluated" in text and "run `octattn evaluate RUN --data DIR` first" in text


def test_report_cli_rejects_a_non_run(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a run folder" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (CI installs Debian's chromium)")
def test_report_renders_in_a_real_browser(demo_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    page_path = write_report([demo_dir / "run"], tmp_path / "r")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(Path(page_path).as_uri())
        loaded = page.eval_on_selector_all("img.plot", "els => els.map(e => [e.alt, e.complete && e.naturalWidth])")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        browser.close()
    assert {alt for alt, _ in loaded} >= EXPECTED_PLOTS
    assert all(width and width > 100 for _, width in loaded)
    assert (tmp_path / "report.png").stat().st_size > 10_000
