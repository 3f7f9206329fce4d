"""HTTP service for a finished run: ``POST /predict``, ``POST /predict/batch``, ``GET /health`` and a demo page.

:func:`create_app` loads the run's seed ensemble once and builds the FastAPI app; ``mmsent serve`` runs it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mmsent import __version__
from mmsent.data.images import ImageLoadError, ImageTooLargeError
from mmsent.data.text import MAX_TEXT_CHARS, text_problem
from mmsent.inference import RunPredictor
from mmsent.serve import schemas
from mmsent.serve.batching import MicroBatcher
from mmsent.serve.limits import BODY_COPIES, DECODED_BYTES_PER_PIXEL, Hold, limit_memory, memory_hold, reserve


@dataclass
class ServeSettings:
    """Limits of the service."""

    max_upload_bytes: int = 10 * 1024 * 1024  # largest image file accepted
    max_image_pixels: int = 40_000_000  # largest decoded image (w x h; ~7300 x 5500), a decompression-bomb guard
    max_request_pixels: int = 100_000_000  # all images of one request together (a batch of large images)
    max_text_chars: int = MAX_TEXT_CHARS  # longest text accepted: the streamed manifests' limit too
    max_batch: int = 32  # most rows in one /predict/batch request
    max_micro_batch: int = 8  # most rows in one forward pass (concurrent /predict requests, a batch's rows)
    max_batch_bytes: int = 32 * 1024 * 1024  # largest /predict/batch body, all rows together
    # Bodies (counted BODY_COPIES times: read, parsed, decoded) and decoded images (RGB, from their headers) of all
    # requests in flight together; past it a request gets 503 + Retry-After. The model and its forward passes come on
    # top: with 512 MiB the shipped model's server peaked at 1.48 GiB under attack (benchmarks/RESULTS.md).
    memory_budget_bytes: int = 512 * 1024 * 1024
    header_timeout: float = 10.0  # seconds for a request's line and headers (slowloris); the connection is closed
    body_timeout: float = 60.0  # seconds for a whole body (1 byte every few seconds holds memory); 408 past it

    def single_body_limit(self) -> int:
        # base64 inflates by 4/3 (multipart carries the raw bytes), then room for the text and the framing.
        return self.max_upload_bytes * 4 // 3 + self.max_text_chars * 4 + 64 * 1024

    def batch_body_limit(self) -> int:
        return min(self.max_batch * self.single_body_limit(), self.max_batch_bytes)


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
_FORM_FIELDS = {"image": {"type": "string", "format": "binary"},
                "text": {"type": "string", "pattern": schemas.TEXT_PATTERN},
                "explain": {"type": "boolean", "default": True}, "overlay": {"type": "boolean", "default": False}}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image", "text"], "properties": _FORM_FIELDS,
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


# -- reading requests: bodies within a size limit, entirely in memory (no upload ever touches the disk) ---------
async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (or announces more), with 408 unless it
    all arrives within ``timeout`` seconds, and with 503 past the server's memory budget (see :mod:`.limits`)."""
    too_large = HTTPException(413, f"request body over the limit of {limit:,} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    hold = memory_hold(request)
    if declared.isdigit():  # reserved before a byte is read: a refused client has not sent its body for nothing
        reserve(hold, BODY_COPIES * int(declared), "the request body")
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large
                if not declared.isdigit():  # chunked: counted as it arrives
                    reserve(hold, len(chunk), "the request body")
    except TimeoutError as exc:  # the connection is closed: a client this slow holds memory and a connection
        raise HTTPException(408, f"request body not received within {timeout:g} s",
                            headers={"Connection": "close"}) from exc
    if not declared.isdigit():  # its parsed and decoded copies, before parsing
        reserve(hold, (BODY_COPIES - 1) * len(body), "the request body")
    return bytes(body)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def parse_multipart(request: Request, body: bytes, limit: int) -> tuple[FormData, tuple[bytes, str]]:
    """The form of an already size-checked multipart body (file parts stay in memory), and its image and file name."""

    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=2, max_fields=10, max_part_size=len(body) + 1)
    # Starlette spools file parts to a temporary file past spool_max_size; the body is already bounded, so a spool
    # at least that large keeps every part in memory.
    parser.spool_max_size = len(body) + 1
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart body: {exc.message}") from exc
    unknown = sorted(set(form.keys()) - set(_FORM_FIELDS))
    if unknown:  # most likely a misspelt field, whose value would otherwise be silently ignored
        raise HTTPException(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                            f"{', '.join(_FORM_FIELDS)}")
    image = _field(form, "image")
    if image is None:
        raise HTTPException(422, "image: missing; send the image file in the 'image' field")
    if not isinstance(image, UploadFile):
        raise HTTPException(422, "field 'image' must be a file upload (multipart/form-data with a filename)")
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"image over the limit of {limit:,} bytes")
    if not data:
        raise HTTPException(422, "image: empty file (0 bytes)")
    return form, (data, image.filename or "<upload>")


def reserve_pixels(images: list[tuple[bytes, str]], settings: ServeSettings, hold: Hold) -> None:
    """Refuses a request over its pixel limit (413), else reserves its decoded images' memory (503 past the budget);
    both from the images' headers, before any is decoded."""
    pixels = [header_pixels(data) for data, _ in images]
    total = sum(pixels)
    if total > settings.max_request_pixels:
        raise HTTPException(413, f"the request's images hold {total:,} pixels together, over the limit of "
                            f"{settings.max_request_pixels:,}; send fewer or smaller images")
    # an image over the per-image limit is refused from its header by the decoder, so it is never decoded
    decoded = sum(p for p in pixels if p <= settings.max_image_pixels) * DECODED_BYTES_PER_PIXEL
    reserve(hold, decoded, "decoding the images")


async def predict_rows(batcher: MicroBatcher, options: tuple[bool, bool], rows: list[tuple[Any, str]]) -> list[Any]:
    """A batch request's rows through the micro-batcher, like single requests: at most ``max_micro_batch`` rows per
    forward pass, whose working memory grows with its rows (~0.5 GB for 32 with the shipped model, 1/4 of it for 8)."""
    return list(await asyncio.gather(*(asyncio.wrap_future(batcher.submit(options, row)) for row in rows)))


def header_pixels(data: bytes) -> int:
    """Width x height from the image header alone (0 when unreadable: decoding then reports the problem)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] * im.size[1]
    except Exception:  # noqa: BLE001 - any header problem is named by the full decode that follows
        return 0


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise HTTPException(400, "malformed JSON body: nested too deeply") from exc
    except ValueError as exc:  # bad syntax or encoding, or an integer too long to convert
        raise HTTPException(400, f"malformed JSON body: {exc}") from exc


def decode_base64_image(data: str, limit: int, where: str = "image_base64") -> bytes:
    """Decodes a (possibly ``data:`` URI) base64 string; 400 if it is not base64, 413 if over ``limit`` bytes."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise HTTPException(400, f"{where}: a data: URI must be base64-encoded")
    data = "".join(data.split())
    if len(data) * 3 // 4 > limit + 3:  # refused before decoding
        raise HTTPException(413, f"{where}: image over the limit of {limit:,} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as exc:  # binascii.Error is one
        raise HTTPException(400, f"{where}: not valid base64 ({exc})") from exc
    if len(raw) > limit:
        raise HTTPException(413, f"{where}: image over the limit of {limit:,} bytes")
    return raw


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(form: FormData, name: str, default: bool) -> bool:
    value = _field(form, name)
    if value is None:
        return default
    word = str(value).strip().lower()
    if word not in _TRUE + _FALSE:
        raise HTTPException(422, f"{name}: {str(value)[:40]!r} is not a boolean; send true or false")
    return word in _TRUE


def _field(form: FormData, name: str) -> Any:
    """A form field that must appear at most once (a repeated field would silently lose all but one value)."""
    values = form.getlist(name)
    if len(values) > 1:
        raise HTTPException(422, f"{name}: sent {len(values)} times; send it once")
    return values[0] if values else None


def _check_text(text: Any, limit: int, where: str = "text") -> str:
    """``text`` if the text rule that streamed manifests follow too (:func:`~mmsent.data.text.text_problem`) takes
    it, else 422 naming the field: empty or only invisible characters, a NUL, a lone surrogate, over ``limit``."""
    if not isinstance(text, str):
        raise HTTPException(422, f"{where}: missing (send the tweet text)")
    problem = text_problem(text, limit)
    if problem is not None:
        # a request's own wording where the rule's would not fit it (clients already read these)
        fix = {"empty": "; send the tweet text", "not_unicode": "; send UTF-8 text", "too_long": ""}.get(
            problem.kind, f"; {problem.fix}")
        raise HTTPException(422, f"{where}: {problem.reason}{fix}")
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
        settings: limits (default: :class:`ServeSettings`'s).
        model_name: serve this design instead of the run's chosen model.
    """
    settings = settings or ServeSettings()
    if predictor is None:
        if run_dir is None:
            raise ValueError("create_app needs run_dir or predictor")
        predictor = RunPredictor(run_dir, model_name=model_name)
    predictor.max_image_pixels = settings.max_image_pixels
    info = schemas.ModelInfo(**predictor.info())

    # docs_url=None: the default /docs page loads Swagger UI from a CDN and is blank offline; ours serves it locally
    app = FastAPI(title="mmsent", version=__version__, docs_url=None,
                  description=f"Multimodal tweet sentiment with the `{info.name}` ensemble of {info.run_dir}.")
    app.state.settings = settings
    limit_memory(app, settings.memory_budget_bytes)
    generated_openapi = app.openapi

    def openapi_with_limits() -> dict[str, Any]:
        if app.openapi_schema is None:
            # fills app.openapi_schema in place, once
            document_labels(document_limits(generated_openapi(), settings), list(predictor.labels))
        return app.openapi_schema

    app.openapi = openapi_with_limits  # type: ignore[method-assign]  # FastAPI's documented way to extend it

    # Decoding a large image briefly costs hundreds of MB: one decode at a time keeps concurrent uploads from
    # stacking those peaks.
    decode_slot = threading.Lock()

    def decode(images: list[tuple[bytes, str]], hold: Hold) -> list[Any]:
        reserve_pixels(images, settings, hold)
        decoded = []
        for i, (data, name) in enumerate(images):
            where = f"items[{i}]: " if len(images) > 1 else ""
            try:
                with decode_slot:
                    decoded.append(predictor.load(data, name=name))
            except ImageTooLargeError as exc:
                raise HTTPException(413, f"{where}{exc.reason}") from exc
            except ImageLoadError as exc:
                raise HTTPException(422, f"{where}image: {exc.reason}") from exc
        return decoded

    def run_batch(options: tuple[bool, bool], items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
        explain, overlay = options
        return predictor.predict([im for im, _ in items], [t for _, t in items], explain_inputs=explain,
                                 overlay=overlay)

    batcher = MicroBatcher(run_batch, max_items=settings.max_micro_batch)
    app.state.batcher = batcher

    async def predict_one(image: tuple[bytes, str], text: str, explain: bool, overlay: bool,
                          hold: Hold) -> dict[str, Any]:
        [decoded] = await run_in_threadpool(decode, [image], hold)
        return await asyncio.wrap_future(batcher.submit((explain, overlay), (decoded, text)))

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
        body = await read_body(request, settings.single_body_limit(), settings.body_timeout)
        if kind == "application/json":
            data = parse_json(body)
            if isinstance(data, dict):  # the likely mistakes first, with a hint; the schema checks the rest
                if not data.get("image_base64"):
                    raise HTTPException(422, "image_base64: missing; send the image as base64")
                _check_text(data.get("text"), settings.max_text_chars)
            req = _validate(schemas.PredictJSON, data)
            image = (decode_base64_image(req.image_base64, settings.max_upload_bytes), "<image_base64>")
            text, explain, overlay = req.text, req.explain, req.overlay
        else:
            form, image = await parse_multipart(request, body, settings.max_upload_bytes)
            text = _check_text(_field(form, "text"), settings.max_text_chars)
            explain, overlay = _flag(form, "explain", True), _flag(form, "overlay", False)
        # Off the event loop, so /health and new connections are served while the model runs.
        result = await predict_one(image, text, explain, overlay, memory_hold(request))
        return {**result, "model": info.model_dump()}

    @app.post("/predict/batch", response_model=schemas.BatchResponse, responses=_ERRORS, openapi_extra=_BATCH_BODY,
              summary="Sentiment of many image + tweet rows (JSON, images as base64)")
    async def predict_batch(request: Request) -> dict[str, Any]:
        """All rows are checked first; one bad row fails the request with 4xx naming ``items[i]``."""
        kind = media_type(request)
        if kind != "application/json":
            raise HTTPException(415, f"content type {kind or '(none)'!r} not supported; send application/json")
        body = await read_body(request, settings.batch_body_limit(), settings.body_timeout)
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
        decoded = await run_in_threadpool(decode, images, memory_hold(request))
        results = await predict_rows(batcher, (req.explain, req.overlay), list(zip(decoded, texts)))
        return {"results": results, "model": info.model_dump()}

    @app.get("/health", response_model=schemas.Health, summary="Liveness, the loaded model and the limits")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": info.model_dump(), "limits": asdict(settings)}

    static = Path(str(resources.files("mmsent.serve") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    # Same-origin only: the page needs no external asset, and images are shown from blob:/data: URLs.
    page_headers = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                    "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff"}

    @app.middleware("http")
    async def page_security(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):  # the page however it is reached
            response.headers.update(page_headers)
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

    return app
