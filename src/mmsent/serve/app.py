"""The FastAPI application: a run's seed ensemble behind ``/predict``, ``/predict/batch``, ``/health`` and ``/``.

Build it with :func:`create_app` (tests pass a ready :class:`~mmsent.inference.RunPredictor`); ``mmsent serve``
runs it with uvicorn. The model and encoders are loaded once, when the app is created.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mmsent import __version__
from mmsent.data.images import ImageLoadError, ImageTooLargeError
from mmsent.inference import RunPredictor
from mmsent.serve import schemas
from mmsent.serve.uploads import (
    decode_base64_image,
    media_type,
    parse_json,
    parse_multipart,
    read_body,
    upload_bytes,
)

log = logging.getLogger("mmsent.serve")

# Room for the text and the multipart/JSON framing on top of the image itself.
_FRAMING_BYTES = 64 * 1024


@dataclass
class ServeSettings:
    """Limits of the service (all configurable from ``mmsent serve``).

    Attributes:
        max_upload_bytes: largest image file accepted.
        max_image_pixels: largest decoded image (width x height), a decompression-bomb guard.
        max_text_chars: longest tweet text accepted.
        max_batch: most rows in one ``/predict/batch`` request.
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_text_chars: int = 5_000
    max_batch: int = 32

    def single_body_limit(self) -> int:
        # base64 inflates by 4/3; multipart carries the raw bytes, so this bound covers both encodings.
        return self.max_upload_bytes * 4 // 3 + self.max_text_chars * 4 + _FRAMING_BYTES

    def batch_body_limit(self) -> int:
        return self.max_batch * self.single_body_limit()


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed body (bad JSON, multipart or base64)."},
    413: {"description": "Body, image file or image pixel count over the configured limits."},
    415: {"description": "Content type other than multipart/form-data or application/json."},
    422: {"description": "Missing or invalid field: no image, not an image, empty or too long text, ..."},
}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image", "text"],
                "properties": {"image": {"type": "string", "format": "binary"}, "text": {"type": "string"},
                               "explain": {"type": "boolean", "default": True},
                               "overlay": {"type": "boolean", "default": False}}}},
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}},
        },
    }
}


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _check_text(text: Any, limit: int, where: str = "text") -> str:
    if not isinstance(text, str):
        raise HTTPException(422, f"{where}: missing (send the tweet text)")
    if not text.strip():
        raise HTTPException(422, f"{where}: empty; send the tweet text")
    if len(text) > limit:
        raise HTTPException(422, f"{where}: {len(text):,} characters, over the limit of {limit:,}")
    return text


def _validate(model: type, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, problems) from exc


def create_app(run_dir: str | Path | None = None, *, predictor: RunPredictor | None = None,
               settings: ServeSettings | None = None, model_name: str | None = None) -> FastAPI:
    """Builds the app around one run's ensemble.

    Args:
        run_dir: the run directory to serve (ignored when ``predictor`` is given).
        predictor: a loaded predictor (tests build one with tiny encoders).
        settings: limits; defaults as in :class:`ServeSettings`.
        model_name: serve this design instead of the run's chosen model.
    """
    settings = settings or ServeSettings()
    if predictor is None:
        if run_dir is None:
            raise ValueError("create_app needs run_dir or predictor")
        predictor = RunPredictor(run_dir, model_name=model_name, max_image_pixels=settings.max_image_pixels)
    else:
        predictor.max_image_pixels = settings.max_image_pixels
    info = schemas.ModelInfo(**predictor.info())

    app = FastAPI(title="mmsent", version=__version__,
                  description=f"Multimodal tweet sentiment with the `{info.name}` ensemble of {info.run_dir}.")
    app.state.predictor = predictor
    app.state.settings = settings

    async def run_predict(images: list[tuple[bytes, str]], texts: list[str], explain: bool,
                          overlay: bool) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            decoded = []
            for i, (data, name) in enumerate(images):
                where = f"items[{i}]: " if len(images) > 1 else ""
                try:
                    decoded.append(predictor.load(data, name=name))
                except ImageTooLargeError as exc:
                    raise HTTPException(413, f"{where}{exc.reason}") from exc
                except ImageLoadError as exc:
                    raise HTTPException(422, f"{where}image: {exc.reason}") from exc
            return predictor.predict(decoded, texts, explain_inputs=explain, overlay=overlay)

        # Off the event loop, so /health and new connections are served while the model runs.
        return await run_in_threadpool(work)

    @app.post("/predict", response_model=schemas.PredictResponse, responses=_ERRORS, openapi_extra=_PREDICT_BODY,
              summary="Sentiment of one image + tweet, with per-modality evidence")
    async def predict(request: Request) -> dict[str, Any]:
        """Send ``multipart/form-data`` (``image`` file, ``text``, optional ``explain``/``overlay``) or JSON
        (:class:`PredictJSON`, image as base64)."""
        kind = media_type(request)
        if kind == "application/x-www-form-urlencoded":
            # What a client sends for a form without a file: most likely the image was forgotten.
            raise HTTPException(422, "image: missing; send multipart/form-data with the image file in 'image'")
        if kind not in ("multipart/form-data", "application/json"):
            raise HTTPException(415, f"content type {kind or '(none)'!r} not supported; send multipart/form-data "
                                "(fields image, text) or application/json (fields image_base64, text)")
        body = await read_body(request, settings.single_body_limit())
        if kind == "application/json":
            data = parse_json(body)
            if isinstance(data, dict) and not data.get("image_base64"):
                raise HTTPException(422, "image_base64: missing; send the image as base64")
            if isinstance(data, dict):
                _check_text(data.get("text"), settings.max_text_chars)
            req = _validate(schemas.PredictJSON, data)
            image = (decode_base64_image(req.image_base64, settings.max_upload_bytes), "<image_base64>")
            text, explain, overlay = req.text, req.explain, req.overlay
        else:
            form = await parse_multipart(request, body)
            if form.get("image") is None:
                raise HTTPException(422, "image: missing; send the image file in the 'image' field")
            image = await upload_bytes(form.get("image"), settings.max_upload_bytes)
            if not image[0]:
                raise HTTPException(422, "image: empty file (0 bytes)")
            text = form.get("text")
            explain, overlay = _flag(form.get("explain"), True), _flag(form.get("overlay"), False)
        text = _check_text(text, settings.max_text_chars)
        [result] = await run_predict([image], [text], explain, overlay)
        return {**result, "model": info.model_dump()}

    @app.post("/predict/batch", response_model=schemas.BatchResponse, responses=_ERRORS,
              summary="Sentiment of many image + tweet rows (JSON, images as base64)")
    async def predict_batch(request: Request) -> dict[str, Any]:
        """All rows are checked first; one bad row fails the request with 4xx naming ``items[i]``."""
        kind = media_type(request)
        if kind != "application/json":
            raise HTTPException(415, f"content type {kind or '(none)'!r} not supported; send application/json")
        body = await read_body(request, settings.batch_body_limit())
        req = _validate(schemas.BatchRequest, parse_json(body))
        if not req.items:
            raise HTTPException(422, "items: empty; send at least one row")
        if len(req.items) > settings.max_batch:
            raise HTTPException(413, f"items: {len(req.items)} rows, over the limit of {settings.max_batch}")
        images, texts = [], []
        for i, item in enumerate(req.items):
            texts.append(_check_text(item.text, settings.max_text_chars, f"items[{i}].text"))
            images.append((decode_base64_image(item.image_base64, settings.max_upload_bytes,
                                               f"items[{i}].image_base64"), f"items[{i}]"))
        results = await run_predict(images, texts, req.explain, req.overlay)
        return {"results": results, "model": info.model_dump()}

    @app.get("/health", response_model=schemas.Health, summary="Liveness, the loaded model and the limits")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": info.model_dump(), "limits": asdict(settings)}

    static = Path(str(resources.files("mmsent.serve") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        # Same-origin only: the page needs no external asset, and images are shown from blob:/data: URLs.
        csp = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return FileResponse(static / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"})

    return app
