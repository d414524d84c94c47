"""``octattn serve``: a FastAPI service over one model bundle, with a page for people.

* ``GET /``: a page where a person drops a scan and sees the class, the probabilities,
  the referral tier and the attention (or Grad-CAM) overlay.
* ``POST /v1/predict`` (multipart ``file``): JSON with class, calibrated probabilities,
  referral tier and model id.
* ``POST /v1/explain`` (multipart ``file``; ``?map=attention|gradcam``): a PNG overlay.
* ``GET /v1/model``: the model id, class names and input size.
* ``GET /healthz``: liveness only.

Access: with a token (:func:`create_app`'s ``token``), every route but ``/healthz`` and
the page itself (a static file that holds no data, and asks a person for the token once)
needs ``Authorization: Bearer <token>``, compared in constant time; anything else is
401. Every response carries an ``X-Request-ID``, and the service's one log line per
request carries the same id, the route, the status and the time, never the upload, its
name or its content. Uploads stay in memory: they are never written to disk.

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

import hmac
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.formparsers import MultiPartParser

from octattn.data.decode import decode_bytes
from octattn.errors import BadImageError, OctattnError
from octattn.explain.attention import display_map, mask_maps
from octattn.explain.gradcam import grad_cam
from octattn.explain.render import overlay, png_bytes, resize_map
from octattn.inference.bundle import HUB_PREFIX, resolve_bundle_dir, weights_digest
from octattn.inference.checks import cheap_finding
from octattn.inference.onnx_export import make_predictor
from octattn.inference.predictor import Predictor

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 25_000_000
EXPLAIN_SHAPE = (496, 512)  # (height, width): the commonest OCT2017 scan size
OPEN_PATHS = frozenset({"/", "/healthz"})
"""Routes that need no token: liveness, and the page's static shell (it holds no data)."""

log = logging.getLogger("octattn.serve")


class ServiceError(Exception):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def model_id(model_path: str | Path) -> str:
    """``<name>@<first 12 hex of the weights' SHA-256>``: names exactly one model. The name is
    the run's (a run's bundle is ``RUN/model``), the folder's, or the Hub repository's."""
    folder = resolve_bundle_dir(model_path)
    digest = weights_digest(folder)[:12]
    text = str(model_path)
    if text.startswith(HUB_PREFIX):
        return f"{text.removeprefix(HUB_PREFIX)}@{digest}"
    return f"{folder.parent.name if folder.name == 'model' else folder.name}@{digest}"


TOKEN_ENV = "OCTATTN_TOKEN"


def check_bind(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to listen beyond this machine without a token, unless told a proxy authenticates.

    Raises:
        OctattnError: a non-loopback ``host``, no ``token`` and no ``allow_unauthenticated``.
    """
    import ipaddress

    if token is not None or allow_unauthenticated:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        loopback = False
    if not loopback:
        raise OctattnError(
            f"refusing to serve on {host} without a token: anyone who can reach the port could send scans; "
            f"set {TOKEN_ENV} (or --token), or pass --allow-unauthenticated if a proxy in front authenticates"
        )


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison: the time taken does not reveal how much of a guess was right."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def create_app(
    model_path: str | Path,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    token: str | None = None,
    precision: str = "fp32",
    backend: str = "torch",
    onnx_path: str | Path | None = None,
    allow_ood: bool = False,
) -> FastAPI:
    """Build the service for one bundle (loaded once, at start-up).

    Args:
        model_path: a bundle or run folder, ``local-dir:`` or ``hf-hub:`` name.
        max_upload_bytes, max_pixels: upload limits.
        token: the bearer token every route but :data:`OPEN_PATHS` requires (``None``: open).
        precision: ``fp32``, ``bf16`` or ``auto`` for the torch backend.
        backend: ``torch``, or ``onnxruntime`` with ``onnx_path`` (fp32 or int8). The
            explanations always run in PyTorch (they need the network's inner tensors),
            loaded on the first ``/v1/explain``.
    """
    predictor = make_predictor(model_path, backend, onnx_path, precision, allow_ood=allow_ood)
    explainer: list[Predictor] = [predictor] if backend == "torch" else []
    identity = model_id(model_path)
    lock = threading.Lock()
    app = FastAPI(title="octattn", description="Retinal OCT B-scan classification", version="1")
    app.state.engine = (
        f"onnxruntime, {Path(str(onnx_path)).name}" if backend == "onnxruntime" else f"torch, {predictor.precision}"
    )
    page = (resources.files("octattn.serve") / "page.html").read_text()
    # Starlette spools an upload part to a temporary file on disk past 1 MiB; patients'
    # scans must stay in memory, so the spool is made larger than any accepted upload.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_upload_bytes + 1024 * 1024)

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = uuid.uuid4().hex[:16]
        start = time.perf_counter()
        response: Response
        if token is not None and request.url.path not in OPEN_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        log.info(
            "request_id=%s %s %s %d %.0fms",
            request_id,
            request.method,
            request.url.path,
            response.status_code,
            1000 * (time.perf_counter() - start),
        )
        return response

    @app.exception_handler(ServiceError)
    def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        hint = " (send the scan as multipart form field 'file')" if "file" in problems else ""
        return JSONResponse({"error": problems + hint}, status_code=422)

    def read_upload(upload: UploadFile) -> tuple[np.ndarray, str, bytes]:
        name = upload.filename or "upload"
        data = upload.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ServiceError(413, f"{name}: larger than the {max_upload_bytes:,}-byte limit")
        try:
            return decode_bytes(data, name, max_pixels=max_pixels), name, data
        except BadImageError as exc:
            status = 413 if "too large" in exc.reason else 415 if "not an image" in exc.reason else 400
            raise ServiceError(status, str(exc)) from None

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        height, width = predictor.config.preprocess.size
        return {
            "model": identity,
            "class_names": predictor.class_names,
            "input_size": [height, width],
            "engine": app.state.engine,
            "ood_detector": predictor.ood is not None,
            "ensemble_members": len(predictor.config.ensemble),
            "auth": token is not None,
        }

    @app.post("/v1/predict")
    def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
        gray, name, data = read_upload(file)
        finding = cheap_finding(gray, data)  # in memory: the upload is never written to disk
        with lock:
            prediction = predictor.predict_arrays([gray], [name], [finding])[0]
        return {**prediction.to_dict(), "model": identity}

    @app.post("/v1/explain")
    def explain(
        file: UploadFile = File(...),  # noqa: B008
        map: str = Query("attention", pattern="^(attention|gradcam)$"),
    ) -> Response:
        gray, _, _ = read_upload(file)
        gray = resize_map(gray.astype(np.float32), EXPLAIN_SHAPE).clip(0, 255).astype(np.uint8)
        with lock:
            if not explainer:
                explainer.append(Predictor(model_path, precision=precision))
            torch_model = explainer[0]
            masks = mask_maps(torch_model, gray) if map == "attention" else {}
            if masks:  # the first module's mask: the finest (35x35 at 299 px)
                heat = display_map(masks[min(masks, key=lambda k: int(k.split("_")[1]))])
            else:
                with torch_model.autocast():
                    cam, _ = grad_cam(torch_model.model, torch_model.prepare(gray))
                heat = resize_map(cam, EXPLAIN_SHAPE)
        return Response(png_bytes(overlay(gray, heat)), media_type="image/png")

    return app
