import io
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from octattn.serve.app import create_app
from tests.model_fixtures import bundle  # noqa: F401


@pytest.fixture(scope="module")
def client(bundle):  # noqa: F811
    return TestClient(create_app(bundle, max_upload_bytes=300_000, max_pixels=2_000_000))


def _jpeg(size=(128, 124), value=None) -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8) if value is None else np.full(size[::-1], value)
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_health_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and "@" in health["model"]
    page = client.get("/").text
    assert health["model"] in page and "/v1/predict" in page


def test_predict_real_scan(client, real_data):
    data = next((real_data / "test" / "DME").iterdir()).read_bytes()
    body = client.post("/v1/predict", files={"file": ("scan.jpeg", data, "image/jpeg")}).json()
    assert body["class"] in {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-6
    assert body["referral"] in {"urgent", "routine", "observation"} and body["model"]


@pytest.mark.parametrize("kind", ["attention", "gradcam"])
def test_explain_returns_a_png_overlay(client, kind):
    response = client.post(f"/v1/explain?map={kind}", files={"file": ("s.jpeg", _jpeg(), "image/jpeg")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (512, 496)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"", 400, "empty file"),
        (b"GIF89a? no, just text pretending", 415, "not an image"),
        (b"\xff" * 300_001, 413, "300,000-byte limit"),
        (_jpeg(size=(2000, 1100), value=10), 413, "too large"),
    ],
)
def test_bad_uploads_are_json_4xx(client, payload, status, message):
    response = client.post("/v1/predict", files={"file": ("x.png", payload, "image/png")})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_missing_file_field(client):
    response = client.post("/v1/predict", data={"other": "x"})
    assert response.status_code == 422 and "multipart form field 'file'" in response.json()["error"]
    assert client.post("/v1/explain?map=bogus", files={"file": ("s.jpeg", _jpeg(), "image/jpeg")}).status_code == 422


def test_concurrent_requests_are_safe_and_consistent(client):
    scans = [_jpeg(value=v) for v in (20, 120)] * 8

    def call(data: bytes) -> dict:
        response = client.post("/v1/predict", files={"file": ("s.jpeg", data, "image/jpeg")})
        assert response.status_code == 200
        return response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, scans))
    first, second = results[0]["probabilities"], results[1]["probabilities"]
    for i, result in enumerate(results):
        assert result["probabilities"] == (first if i % 2 == 0 else second)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(bundle):  # noqa: F811
    port = _free_port()
    config = uvicorn.Config(create_app(bundle), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_bounded_load_over_real_http(server):
    """40 requests from 8 clients to 127.0.0.1: zero errors (the 200-request run is a benchmark)."""
    import httpx

    data = _jpeg()

    def call(_: int) -> int:
        with httpx.Client(timeout=60) as http:
            return http.post(f"{server}/v1/predict", files={"file": ("s.jpeg", data, "image/jpeg")}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(call, range(40)))
    assert codes == [200] * 40


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (CI installs Debian's chromium)")
def test_page_in_a_real_browser(server, real_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    scan = sorted((real_data / "test" / "CNV").iterdir())[0]
    shot = Path(os.environ.get("OCTATTN_SCREENSHOT_DIR", tmp_path)) / "service-page.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(server)
        page.set_input_files("#file", str(scan))
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=60_000)
        label = page.inner_text("#label")
        rows = page.locator("#probs tbody tr").count()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert label in {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert rows == 4
    assert shot.stat().st_size > 20_000
