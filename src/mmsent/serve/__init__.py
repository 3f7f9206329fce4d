"""HTTP service for a finished run: ``POST /predict``, ``POST /predict/batch``, ``GET /health`` and a demo page.

:func:`create_app` loads the run's seed ensemble once and builds the FastAPI app; ``mmsent serve`` runs it. Reading
and checking requests is :mod:`mmsent.serve.requests`'s, the limits are :class:`ServeSettings`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mmsent import __version__
from mmsent.data.images import ImageLoadError, ImageTooLargeError
from mmsent.inference import RunPredictor
from mmsent.serve import schemas
from mmsent.serve.batching import MicroBatcher
from mmsent.serve.limits import Hold, limit_memory, memory_hold
from mmsent.serve.requests import FORM_FIELDS, Posts, read_batch_request, read_predict_request, reserve_pixels
from mmsent.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed body (bad JSON, multipart or base64)."},
    408: {"description": "The body did not arrive within the server's body timeout."},
    413: {"description": "Body, image file or image pixel count over the configured limits, or a request needing more "
                         "memory than the server's whole budget."},
    415: {"description": "Content type other than multipart/form-data or application/json."},
    422: {"description": "Missing or invalid field: no image, not an image, empty or too long text, ..."},
    503: {"description": "Busy: requests in flight hold the server's memory budget; retry after Retry-After seconds.",
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}},
}

# The endpoint reads its body itself (to bound its size), so the OpenAPI schema of the body is spelled out here.
_IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image", "text"], "properties": FORM_FIELDS,
                                       "additionalProperties": False},
                            "encoding": {"image": {"contentType": _IMAGE_TYPES}}},
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}},
}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}}}}


def document_limits(openapi: dict[str, Any], settings: ServeSettings) -> dict[str, Any]:
    """Adds the request bodies' models and this server's limits (text length, rows per batch) to its OpenAPI
    schema, so that what the schema allows is what the server accepts."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in (schemas.PredictJSON, schemas.BatchRequest):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    for name in ("PredictItem", "PredictJSON"):
        components[name]["properties"]["text"]["maxLength"] = settings.max_text_chars
    components["BatchRequest"]["properties"]["items"]["maxItems"] = settings.max_batch
    form = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form["properties"]["text"]["maxLength"] = settings.max_text_chars
    for path, limit in (("/predict", settings.single_body_limit()), ("/predict/batch", settings.batch_body_limit())):
        # JSON Schema cannot bound a body's size: said in words and as an extension (answered 413 past it)
        body = openapi["paths"][path]["post"]["requestBody"]
        body["description"] = f"At most {limit:,} bytes in all (larger bodies are refused with 413)."
        body["x-max-body-bytes"] = limit
    return openapi


def document_labels(openapi: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Writes the served run's classes into the response schema: ``label`` is one of them and ``probabilities`` holds
    one number for each, so a client generated from ``/openapi.json`` knows the classes."""
    prediction = openapi["components"]["schemas"]["Prediction"]["properties"]
    prediction["label"]["enum"] = labels
    prediction["probabilities"].update(properties={name: {"type": "number"} for name in labels}, required=labels,
                                       additionalProperties=False)
    return openapi


async def predict_rows(batcher: MicroBatcher, options: tuple[bool, bool], rows: list[tuple[Any, str]]) -> list[Any]:
    """A batch request's rows through the micro-batcher, like single requests: at most ``max_micro_batch`` rows per
    forward pass, whose working memory grows with its rows (~0.5 GB for 32 with the shipped model, 1/4 of it for 8)."""
    return list(await asyncio.gather(*(asyncio.wrap_future(batcher.submit(options, row)) for row in rows)))


class _Predictions:
    """The served predictor behind the routes: images decoded one at a time (a large one briefly costs hundreds of
    MB, so concurrent uploads must not stack those peaks), then rows micro-batched into forward passes."""

    def __init__(self, predictor: RunPredictor, settings: ServeSettings) -> None:
        self.predictor, self.settings = predictor, settings
        self.decode_slot = threading.Lock()
        self.batcher = MicroBatcher(self._run_batch, max_items=settings.max_micro_batch)

    def _run_batch(self, options: tuple[bool, bool], items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
        explain, overlay = options
        return self.predictor.predict([im for im, _ in items], [t for _, t in items], explain_inputs=explain,
                                      overlay=overlay)

    def decode(self, images: list[tuple[bytes, str]], hold: Hold) -> list[Any]:
        """Decoded images, their memory reserved first; 413 / 422 naming ``items[i]`` for one that cannot be used."""
        reserve_pixels(images, self.settings, hold)
        decoded = []
        for i, (data, name) in enumerate(images):
            where = f"items[{i}]: " if len(images) > 1 else ""
            try:
                with self.decode_slot:
                    decoded.append(self.predictor.load(data, name=name))
            except ImageTooLargeError as exc:
                raise HTTPException(413, f"{where}{exc.reason}") from exc
            except ImageLoadError as exc:
                raise HTTPException(422, f"{where}image: {exc.reason}") from exc
        return decoded

    async def answer(self, posts: Posts, hold: Hold) -> list[dict[str, Any]]:
        """Each post's prediction, off the event loop, so /health and new connections are served while models run."""
        decoded = await run_in_threadpool(self.decode, posts.images, hold)
        return await predict_rows(self.batcher, (posts.explain, posts.overlay), list(zip(decoded, posts.texts)))


def create_app(run_dir: str | Path | None = None, *, predictor: RunPredictor | None = None,
               settings: ServeSettings | None = None, model_name: str | None = None) -> FastAPI:
    """Builds the app around one run's ensemble.

    Args:
        run_dir: the run directory to serve (ignored when ``predictor`` is given).
        predictor: a loaded predictor (tests build one with tiny encoders).
        settings: limits (default: :class:`ServeSettings`'s).
        model_name: serve this design instead of the run's chosen model.
    """
    settings = settings or ServeSettings()
    if predictor is None:
        if run_dir is None:
            raise ValueError("create_app needs run_dir or predictor")
        predictor = RunPredictor(run_dir, model_name=model_name)
    predictor.max_image_pixels = settings.max_image_pixels
    predictor.max_text_chars = settings.max_text_chars
    info = schemas.ModelInfo(**predictor.info())

    # docs_url=None: the default /docs page loads Swagger UI from a CDN and is blank offline; ours serves it locally
    app = FastAPI(title="mmsent", version=__version__, docs_url=None,
                  description=f"Multimodal tweet sentiment: `{info.name}` ({info.description}) from {info.run_dir}.")
    app.state.settings = settings
    limit_memory(app, settings.memory_budget_bytes)
    _document(app, settings, list(predictor.labels))
    predictions = _Predictions(predictor, settings)
    app.state.batcher = predictions.batcher

    @app.post("/predict", response_model=schemas.PredictResponse, responses=_ERRORS, openapi_extra=_PREDICT_BODY,
              summary="Sentiment of one image + tweet, with per-modality evidence")
    async def predict(request: Request) -> dict[str, Any]:
        """Send ``multipart/form-data`` (``image`` file, ``text``, optional ``explain``/``overlay``) or JSON
        (:class:`PredictJSON`, image as base64)."""
        [result] = await predictions.answer(await read_predict_request(request, settings), memory_hold(request))
        return {**result, "model": info.model_dump()}

    @app.post("/predict/batch", response_model=schemas.BatchResponse, responses=_ERRORS, openapi_extra=_BATCH_BODY,
              summary="Sentiment of many image + tweet rows (JSON, images as base64)")
    async def predict_batch(request: Request) -> dict[str, Any]:
        """All rows are checked first; one bad row fails the request with 4xx naming ``items[i]``."""
        results = await predictions.answer(await read_batch_request(request, settings), memory_hold(request))
        return {"results": results, "model": info.model_dump()}

    @app.get("/health", response_model=schemas.Health, summary="Liveness, the loaded model and the limits")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": info.model_dump(), "limits": asdict(settings)}

    _add_page(app)
    return app


def _document(app: FastAPI, settings: ServeSettings, labels: list[str]) -> None:
    """Extends the app's generated OpenAPI schema with the request bodies, the limits and the run's classes."""
    generated_openapi = app.openapi

    def openapi_with_limits() -> dict[str, Any]:
        if app.openapi_schema is None:
            # fills app.openapi_schema in place, once
            document_labels(document_limits(generated_openapi(), settings), labels)
        return app.openapi_schema

    app.openapi = openapi_with_limits  # type: ignore[method-assign]  # FastAPI's documented way to extend it


# Same-origin only: the page needs no external asset, and images are shown from blob:/data: URLs.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                 "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                 "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff"}


def _add_page(app: FastAPI) -> None:
    """The demo page at ``/``, its static files, and the API docs served locally (``/docs``)."""
    static = Path(str(resources.files("mmsent.serve") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.middleware("http")
    async def page_security(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):  # the page however it is reached
            response.headers.update(_PAGE_HEADERS)
        return response

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="mmsent API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="data:,")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")
