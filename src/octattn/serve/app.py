"""``octattn serve``: a FastAPI service over one model bundle, with a page for people.

* ``GET /``: a page where a person drops a scan and sees the class, the probabilities,
  the referral tier and the attention (or Grad-CAM) overlay.
* ``POST /v1/predict`` (multipart ``file``): JSON with class, calibrated probabilities,
  referral tier and model id.
* ``POST /v1/explain`` (multipart ``file``; ``?map=attention|gradcam``): a PNG overlay.
* ``GET /healthz``: liveness and the model id.

Uploads are limited in bytes and pixels and checked by content (never by name or
declared type); every error is JSON ``{"error": ...}`` with a 4xx status.

Concurrency: requests are served from FastAPI's thread pool, and the model runs one
request at a time behind a lock. PyTorch already spreads one forward pass over every
core; letting two run at once only makes both slower and doubles peak memory, so
serialising keeps latency predictable (p99 is about the queue times one pass). Dynamic
batching would raise throughput under heavy load on a GPU at the price of latency; a
clinic's scans-per-second do not call for it.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from octattn.data.decode import decode_bytes
from octattn.errors import BadImageError
from octattn.explain.attention import mask_maps, normalise_map
from octattn.explain.gradcam import grad_cam
from octattn.explain.render import overlay, png_bytes, resize_map
from octattn.inference.bundle import WEIGHTS_FILE, resolve_bundle_dir
from octattn.inference.predictor import Predictor

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 25_000_000
EXPLAIN_SHAPE = (496, 512)  # (height, width): the commonest OCT2017 scan size


class ServiceError(Exception):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def model_id(model_path: str | Path) -> str:
    """``<architecture>@<first 12 hex of the weights' SHA-256>``: names exactly one model."""
    folder = resolve_bundle_dir(model_path)
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]
    return f"{folder.parent.name if folder.name == 'model' else folder.name}@{digest}"


def create_app(
    model_path: str | Path, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS
) -> FastAPI:
    """Build the service for one bundle (loaded once, at start-up)."""
    predictor = Predictor(model_path)
    identity = model_id(model_path)
    lock = threading.Lock()
    app = FastAPI(title="octattn", description="Retinal OCT B-scan classification", version="1")
    page = (resources.files("octattn.serve") / "page.html").read_text()

    @app.exception_handler(ServiceError)
    def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        hint = " (send the scan as multipart form field 'file')" if "file" in problems else ""
        return JSONResponse({"error": problems + hint}, status_code=422)

    def read_upload(upload: UploadFile) -> tuple[np.ndarray, str]:
        name = upload.filename or "upload"
        data = upload.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ServiceError(413, f"{name}: larger than the {max_upload_bytes:,}-byte limit")
        try:
            return decode_bytes(data, name, max_pixels=max_pixels), name
        except BadImageError as exc:
            status = 413 if "too large" in exc.reason else 415 if "not an image" in exc.reason else 400
            raise ServiceError(status, str(exc)) from None

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page.replace("{{MODEL_ID}}", identity)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "model": identity}

    @app.post("/v1/predict")
    def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
        gray, name = read_upload(file)
        with lock:
            prediction = predictor.predict_arrays([gray], [name])[0]
        return {**prediction.to_dict(), "model": identity}

    @app.post("/v1/explain")
    def explain(
        file: UploadFile = File(...),  # noqa: B008
        map: str = Query("attention", pattern="^(attention|gradcam)$"),
    ) -> Response:
        gray, _ = read_upload(file)
        gray = resize_map(gray.astype(np.float32), EXPLAIN_SHAPE).clip(0, 255).astype(np.uint8)
        with lock:
            masks = mask_maps(predictor, gray) if map == "attention" else {}
            if masks:  # the first module's mask: the finest (35x35 at 299 px)
                heat = normalise_map(masks[min(masks, key=lambda k: int(k.split("_")[1]))])
            else:
                cam, _ = grad_cam(predictor.model, predictor.prepare(gray))
                heat = resize_map(cam, EXPLAIN_SHAPE)
        return Response(png_bytes(overlay(gray, heat)), media_type="image/png")

    return app
