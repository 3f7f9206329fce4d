"""Reading request bodies within a size limit, entirely in memory (no upload ever touches the disk)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit:,} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (or announces more)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def parse_multipart(request: Request, body: bytes) -> FormData:
    """Parses an already size-checked multipart body; file parts stay in memory."""

    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=2, max_fields=10, max_part_size=len(body) + 1)
    # Starlette spools file parts to a temporary file past spool_max_size; the body is already bounded, so a spool
    # at least that large keeps every part in memory.
    parser.spool_max_size = len(body) + 1
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart body: {exc.message}") from exc


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"malformed JSON body: {exc}") from exc


def decode_base64_image(data: str, limit: int, where: str = "image_base64") -> bytes:
    """Decodes a (possibly ``data:`` URI) base64 string; 400 if it is not base64, 413 if over ``limit`` bytes."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise HTTPException(400, f"{where}: a data: URI must be base64-encoded")
    data = "".join(data.split())
    if len(data) * 3 // 4 > limit + 3:
        raise HTTPException(413, f"{where}: image over the limit of {limit:,} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"{where}: not valid base64 ({exc})") from exc
    if len(raw) > limit:
        raise HTTPException(413, f"{where}: image over the limit of {limit:,} bytes")
    return raw


async def upload_bytes(value: Any, limit: int) -> tuple[bytes, str]:
    """The bytes and file name of a multipart ``image`` field; 422 when it is not a file."""
    if not isinstance(value, UploadFile):
        raise HTTPException(422, "field 'image' must be a file upload (multipart/form-data with a filename)")
    data = await value.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"image over the limit of {limit:,} bytes")
    return data, value.filename or "<upload>"
