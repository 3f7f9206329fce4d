"""Reading requests: bodies within a size limit, entirely in memory (no upload ever touches the disk), parsed and
checked into what the routes predict on; every problem is an HTTP error naming the field."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import HTTPException, Request
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from mmsent.data.text import text_problem
from mmsent.serve import schemas
from mmsent.serve.limits import BODY_COPIES, DECODED_BYTES_PER_PIXEL, Hold, memory_hold, reserve
from mmsent.serve.settings import ServeSettings

log = logging.getLogger("mmsent.serve")

# The fields of a /predict form (the OpenAPI schema documents them; any other field is refused as a likely typo).
FORM_FIELDS = {"image": {"type": "string", "format": "binary"},
               "text": {"type": "string", "pattern": schemas.TEXT_PATTERN},
               "explain": {"type": "boolean", "default": True}, "overlay": {"type": "boolean", "default": False}}


@dataclass
class Posts:
    """What a request asks: its (encoded image, name) and text pairs and whether to explain and overlay."""

    images: list[tuple[bytes, str]]
    texts: list[str]
    explain: bool
    overlay: bool


async def read_predict_request(request: Request, settings: ServeSettings) -> Posts:
    """``POST /predict``: ``multipart/form-data`` (``image`` file, ``text``, optional ``explain``/``overlay``) or
    JSON (:class:`~mmsent.serve.schemas.PredictJSON`, image as base64)."""
    kind = media_type(request)
    if kind == "application/x-www-form-urlencoded":
        # What a client sends for a form without a file: most likely the image was forgotten.
        raise HTTPException(422, "image: missing; send multipart/form-data with the image file in 'image'")
    if kind not in ("multipart/form-data", "application/json"):
        raise HTTPException(415, f"content type {kind or '(none)'!r} not supported; send multipart/form-data "
                            "(fields image, text) or application/json (fields image_base64, text)")
    body = await read_body(request, settings.single_body_limit(), settings.body_timeout)
    if kind == "multipart/form-data":
        form, image = await parse_multipart(request, body, settings.max_upload_bytes)
        text = check_text(field(form, "text"), settings.max_text_chars)
        return Posts([image], [text], flag(form, "explain", True), flag(form, "overlay", False))
    data = parse_json(body)
    if isinstance(data, dict):  # the likely mistakes first, with a hint; the schema checks the rest
        if not data.get("image_base64"):
            raise HTTPException(422, "image_base64: missing; send the image as base64")
        check_text(data.get("text"), settings.max_text_chars)
    req = validate(schemas.PredictJSON, data)
    image = (decode_base64_image(req.image_base64, settings.max_upload_bytes), "<image_base64>")
    return Posts([image], [req.text], req.explain, req.overlay)


async def read_batch_request(request: Request, settings: ServeSettings) -> Posts:
    """``POST /predict/batch``: JSON rows, images as base64; every row is checked first, a bad one named ``items[i]``."""
    kind = media_type(request)
    if kind != "application/json":
        raise HTTPException(415, f"content type {kind or '(none)'!r} not supported; send application/json")
    body = await read_body(request, settings.batch_body_limit(), settings.body_timeout)
    req = validate(schemas.BatchRequest, parse_json(body))
    if not req.items:
        raise HTTPException(422, "items: empty; send at least one row")
    if len(req.items) > settings.max_batch:
        raise HTTPException(413, f"items: {len(req.items)} rows, over the limit of {settings.max_batch}")
    images, texts = [], []
    for i, item in enumerate(req.items):
        texts.append(check_text(item.text, settings.max_text_chars, f"items[{i}].text"))
        images.append((decode_base64_image(item.image_base64, settings.max_upload_bytes, f"items[{i}].image_base64"),
                       f"items[{i}]"))
    return Posts(images, texts, req.explain, req.overlay)


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
    except ClientDisconnect:  # nobody is left to answer: one log line (the 499 of nginx), not an ASGI traceback
        log.info("client hung up after %d of %s body bytes", len(body), declared or "(chunked)")
        raise HTTPException(499, "client closed the connection before its body arrived") from None
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
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:  # most likely a misspelt field, whose value would otherwise be silently ignored
        raise HTTPException(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                            f"{', '.join(FORM_FIELDS)}")
    image = field(form, "image")
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


def flag(form: FormData, name: str, default: bool) -> bool:
    value = field(form, name)
    if value is None:
        return default
    word = str(value).strip().lower()
    if word not in _TRUE + _FALSE:
        raise HTTPException(422, f"{name}: {str(value)[:40]!r} is not a boolean; send true or false")
    return word in _TRUE


def field(form: FormData, name: str) -> Any:
    """A form field that must appear at most once (a repeated field would silently lose all but one value)."""
    values = form.getlist(name)
    if len(values) > 1:
        raise HTTPException(422, f"{name}: sent {len(values)} times; send it once")
    return values[0] if values else None


def check_text(text: Any, limit: int, where: str = "text") -> str:
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


def validate(model: type, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, problems) from exc

