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


@pytest.fixture(scope="module")
def client(bundle):
    return TestClient(create_app(bundle, max_upload_bytes=300_000, max_pixels=2_000_000))


def _jpeg(size=(128, 124), value=None) -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8) if value is None else np.full(size[::-1], value)
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_health_model_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    model = client.get("/v1/model").json()
    assert "@" in model["model"] and model["class_names"] == ["CNV", "DME", "DRUSEN", "NORMAL"]
    assert model["input_size"] == [75, 75] and model["auth"] is False
    page = client.get("/").text
    assert "/v1/predict" in page and model["model"] not in page  # the page is a shell: no data in it


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


TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def guarded(bundle):
    return TestClient(create_app(bundle, token=TOKEN))


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/v1/model"), ("post", "/v1/predict"), ("post", "/v1/explain?map=gradcam")]
)
@pytest.mark.parametrize(
    ("header", "status"), [(None, 401), ("Bearer wrong", 401), ("Basic " + TOKEN, 401), ("Bearer " + TOKEN, 200)]
)
def test_token_guards_every_route_but_health_and_the_page(guarded, method, path, header, status):
    headers = {"Authorization": header} if header else {}
    files = {"file": ("s.jpeg", _jpeg(), "image/jpeg")} if method == "post" else None
    response = getattr(guarded, method)(path, headers=headers, **({"files": files} if files else {}))
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"].startswith("missing or wrong bearer token")
        assert response.headers["www-authenticate"] == "Bearer"
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200


def test_token_is_compared_in_constant_time(monkeypatch, guarded):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    guarded.get("/v1/model", headers={"Authorization": "Bearer nope"})
    assert calls == [(b"nope", TOKEN.encode())]


def test_every_response_carries_the_request_id_of_its_log_line(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="octattn.serve"):
        response = client.post("/v1/predict", files={"file": ("patient-name.jpeg", _jpeg(), "image/jpeg")})
    request_id = response.headers["x-request-id"]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "octattn.serve"]
    assert line.startswith(f"request_id={request_id} POST /v1/predict 200 ")
    assert "patient-name" not in caplog.text  # neither the upload nor its name is logged


@pytest.mark.parametrize(
    ("host", "token", "allowed", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("::1", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("10.1.2.3", None, False, True),
        ("clinic-server.local", None, False, True),
        ("0.0.0.0", "t", False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_binding_beyond_loopback_needs_a_token(host, token, allowed, refused):
    from octattn.errors import OctattnError
    from octattn.serve.app import check_bind

    if refused:
        with pytest.raises(OctattnError, match=f"refusing to serve on {host} without a token"):
            check_bind(host, token, allowed)
    else:
        check_bind(host, token, allowed)


def test_serve_cli_refuses_an_open_network_bind(bundle, capsys, monkeypatch):
    from octattn.cli import main

    monkeypatch.delenv("OCTATTN_TOKEN", raising=False)
    assert main(["serve", str(bundle), "--host", "0.0.0.0"]) == 2
    assert "refusing to serve on 0.0.0.0 without a token" in capsys.readouterr().err


NO_DISK_SCRIPT = """
import json, os, sys, threading, time
import httpx, uvicorn
from octattn.serve.app import create_app

app = create_app(sys.argv[1])
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
writes = []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_TMPFILE", 0)

def hook(event, args):
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & WRITE:
            writes.append(str(path))
sys.addaudithook(hook)
small = open(sys.argv[3], "rb").read()
big = small + bytes(3 * 1024 * 1024)  # past Starlette's 1 MiB spool-to-disk threshold
with httpx.Client(timeout=120) as http:
    codes = [http.post(f"http://127.0.0.1:{sys.argv[2]}/v1/predict", files={"file": ("s.jpeg", data)}).status_code
             for data in (small, big)]
serving = list(writes)
import tempfile
tempfile.TemporaryFile().close()  # a control: the hook sees a real write
print(json.dumps({"codes": codes, "serving": serving, "control": len(writes) > len(serving)}))
server.should_exit = True
"""


def test_uploads_are_never_written_to_disk(bundle, tmp_path):
    import json
    import subprocess
    import sys

    scan = tmp_path / "scan.jpeg"
    scan.write_bytes(_jpeg())
    script = tmp_path / "serve_and_watch.py"
    script.write_text(NO_DISK_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(bundle), str(_free_port()), str(scan)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [200, 200]  # the 3 MiB upload is a JPEG with trailing bytes
    assert report["control"] is True, "the audit hook did not see a deliberate write"
    assert report["serving"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(bundle):
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


@pytest.fixture(scope="module")
def guarded_server(bundle):
    port = _free_port()
    config = uvicorn.Config(create_app(bundle, token=TOKEN), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (CI installs Debian's chromium)")
def test_page_in_a_real_browser_asks_for_the_token_once(guarded_server, real_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    scans = sorted((real_data / "test" / "CNV").iterdir())[:2]
    shot = Path(os.environ.get("OCTATTN_SCREENSHOT_DIR", tmp_path)) / "service-page.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(guarded_server)
        page.wait_for_selector("#login:not([hidden])", timeout=30_000)
        assert page.is_hidden("#drop")
        page.fill("#token", "wrong")
        page.click("#login button")
        page.wait_for_function("document.getElementById('error').textContent.includes('not accepted')")
        page.fill("#token", TOKEN)
        page.click("#login button")
        page.wait_for_selector("#drop:not([hidden])", timeout=30_000)
        assert "@" in page.inner_text("#model")
        for scan in scans:  # asked once: the second scan needs no token again
            page.set_input_files("#file", str(scan))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=60_000)
        assert page.is_hidden("#login")
        label = page.inner_text("#label")
        rows = page.locator("#probs tbody tr").count()
        assert page.is_hidden("#ood")  # a real scan: no warning
        page.screenshot(path=str(shot), full_page=True)
        white = tmp_path / "white.png"
        Image.new("L", (512, 496), 255).save(white)
        page.set_input_files("#file", str(white))
        page.wait_for_selector("#ood:not([hidden])", timeout=60_000)  # a visible warning, not a footnote
        warning = page.inner_text("#ood")
        white_label = page.inner_text("#label")
        page.screenshot(path=str(shot.with_name("service-page-ood.png")), full_page=True)
        browser.close()
    assert label in {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert rows == 4
    assert shot.stat().st_size > 20_000
    assert "unlike the scans the model learnt from" in warning and "constant image" in warning
    assert white_label == "not assessed"
