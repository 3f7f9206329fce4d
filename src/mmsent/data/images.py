"""Safe image loading: any mode to RGB, EXIF orientation, decompression-bomb limit, truncation always detected."""

from __future__ import annotations

import io
import logging
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger("mmsent.data")

_LIMIT_KEY = "data.max_image_pixels"
_PIL_LIMIT_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An image file cannot be used: missing, empty, not an image, truncated, too large or undecodable.

    Attributes:
        path: the offending file.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class ImageTooLargeError(ImageLoadError):
    """An image is over the decompression-bomb pixel limit (``data.max_image_pixels``)."""


class _EOFWatch(io.BytesIO):
    """In-memory file that records a read hitting the end of the data while watched.

    While PIL decodes pixel data, a read that returns nothing means the file ended before the image did. Watching
    for that ourselves catches truncation even where some other code has set ``ImageFile.LOAD_TRUNCATED_IMAGES``,
    which makes PIL pad the missing part with grey instead of raising.
    """

    watching = False
    hit_eof = False

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        if self.watching and not data and size != 0:
            self.hit_eof = True
        return data


def _allow_pil_limit(max_pixels: int) -> None:
    """Raises PIL's own process-wide bomb limit so that it does not refuse what ``max_pixels`` allows.

    PIL raises at twice its limit before we see the size, so a user-raised ``data.max_image_pixels`` would otherwise
    have no effect. Only ever raised, never lowered, so concurrent loads with different limits stay safe.
    """
    with _PIL_LIMIT_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and max_pixels > current:
            Image.MAX_IMAGE_PIXELS = max_pixels


def _too_large(pixels: int, size: tuple[int, int] | None, limit: int) -> str:
    dims = f" ({size[0]}x{size[1]})" if size else ""
    return (
        f"image has {pixels:,} pixels{dims}, over the decompression-bomb limit of {limit:,}; "
        f"if the file is genuine, raise {_LIMIT_KEY}"
    )


def _scale_to_uint8(arr: np.ndarray, full_range: float | None) -> Image.Image:
    """Maps integer/float pixel values to 0..255 by scaling (not clipping), as PIL's own convert would clip."""
    arr = arr.astype(np.float64)
    if full_range is None:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    else:
        arr = arr * (255.0 / full_range)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB; transparency is composited on white, high bit depths are scaled down."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16"):
        return _scale_to_uint8(np.asarray(im), 65535.0).convert("RGB")
    if mode == "I":
        arr = np.asarray(im)
        # Mode "I" usually carries 16-bit data (PNG/TIFF); anything outside that range is stretched to fit.
        in_16bit = arr.size and arr.min() >= 0 and arr.max() <= 65535
        return _scale_to_uint8(arr, 65535.0 if in_16bit else None).convert("RGB")
    if mode == "F":
        arr = np.asarray(im)
        in_unit = arr.size and arr.min() >= 0.0 and arr.max() <= 1.0
        return _scale_to_uint8(arr, 1.0 if in_unit else None).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(
    path: str | Path, *, max_pixels: int | None = None, min_side: int | None = None
) -> Image.Image:
    """Loads an image as RGB, whatever its format, mode or orientation.

    The format is sniffed from the content, not the extension. EXIF orientation is applied. Transparent images are
    composited on white; 16-bit images are scaled (not clipped) to 8 bits.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard); None uses PIL's limit.
        min_side: speed hint: JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8) as long as the shorter side
            stays at least this long. Never upsamples; other formats are decoded at full size.

    Returns:
        A fully loaded RGB image, detached from the file.

    Raises:
        ImageLoadError: naming the path and the reason.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    return load_image_bytes(data, max_pixels=max_pixels, min_side=min_side, name=path)


def load_image_bytes(
    data: bytes, *, max_pixels: int | None = None, min_side: int | None = None, name: str | Path = "<bytes>"
) -> Image.Image:
    """:func:`load_image` for an image already in memory (an upload); the same checks, nothing written to disk.

    Args:
        data: the encoded image (JPEG, PNG, ...).
        max_pixels: as for :func:`load_image`.
        min_side: as for :func:`load_image`.
        name: what error messages call the image (e.g. the upload's file name).

    Raises:
        ImageLoadError: naming ``name`` and the reason (:class:`ImageTooLargeError` for too many pixels).
    """
    path = name
    if not data:
        raise ImageLoadError(path, "empty file (0 bytes)")
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        _allow_pil_limit(max_pixels)

    fp = _EOFWatch(data)
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as exc:
        # PIL refuses at twice its own limit, which is at least ours (see _allow_pil_limit): over our limit too.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        raise ImageTooLargeError(path, _too_large(pixels, None, limit or Image.MAX_IMAGE_PIXELS or 0)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, f"not an image PIL can read (file starts with {data[:8]!r})") from None
    except Exception as exc:  # PIL plugins raise many types (SyntaxError, struct.error, ...) for broken headers
        raise ImageLoadError(path, f"broken image header: {type(exc).__name__}: {exc}") from exc

    width, height = im.size
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(path, _too_large(width * height, im.size, limit))
    if min_side is not None and im.format == "JPEG" and min(width, height) > min_side:
        # Asking for min_side x min_side makes PIL pick the largest 1/2^k scale whose shorter side is >= min_side.
        im.draft("RGB", (max(1, min_side), max(1, min_side)))

    fp.hit_eof = False
    fp.watching = True
    try:
        im.load()
    except Exception as exc:
        if fp.hit_eof or "truncated" in str(exc):
            raise ImageLoadError(path, "truncated image data (the file ends before the image does)") from exc
        raise ImageLoadError(path, f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    finally:
        fp.watching = False
    if fp.hit_eof:
        raise ImageLoadError(path, "truncated image data (the file ends before the image does)")

    try:
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 -- a corrupt EXIF block should not cost the image itself
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
    try:
        return _to_rgb(im)
    except Exception as exc:
        raise ImageLoadError(path, f"cannot convert mode {im.mode} to RGB: {exc}") from exc


def check_image(path: str | Path, *, max_pixels: int | None = None) -> str | None:
    """Checks that an image loads, decoding all of its data but at the smallest JPEG scale for speed.

    Args:
        path: the image file.
        max_pixels: as for :func:`load_image`.

    Returns:
        None if :func:`load_image` would succeed, else the reason it would fail.
    """
    try:
        load_image(path, max_pixels=max_pixels, min_side=1)
    except ImageLoadError as exc:
        return exc.reason
    return None
