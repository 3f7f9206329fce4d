"""Safe image loading: any mode to RGB, EXIF orientation, decompression-bomb limit, truncation always detected."""

from __future__ import annotations

import io
import logging
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmsent.data.files import FileRefusedError, read_regular_file

log = logging.getLogger("mmsent.data")

_PIL_LIMIT_LOCK = threading.Lock()
_TRUNCATED = "truncated image data (the file ends before the image does)"


class ImageLoadError(ValueError):
    """An image file cannot be used (missing, empty, not an image, truncated, too large, undecodable).

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
    """In-memory file recording a read at the end of the data while ``watching`` (during pixel decoding).

    That catches truncation even where other code has set ``ImageFile.LOAD_TRUNCATED_IMAGES``, which makes PIL pad
    the missing part with grey instead of raising.
    """

    watching = False
    hit_eof = False

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        if self.watching and not data and size != 0:
            self.hit_eof = True
        return data


def _too_large(pixels: int, size: tuple[int, int] | None, limit: int) -> str:
    dims = f" ({size[0]}x{size[1]})" if size else ""
    return (
        f"image has {pixels:,} pixels{dims}, over the decompression-bomb limit of {limit:,}; "
        "if the file is genuine, raise data.max_image_pixels"
    )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB; transparency is composited on white, high bit depths are scaled (not clipped)."""
    if im.mode == "RGB":
        return im  # not a copy: a 49-megapixel image would cost another 150 MB
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit int or float: PIL's own convert would clip
        arr = np.asarray(im)
        full = 1.0 if im.mode == "F" else 65535.0  # mode I usually carries 16-bit data (PNG/TIFF)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))  # decoders never yield a 0-pixel image
        offset, scale = (0.0, 255.0 / full) if lo >= 0 and hi <= full else (lo, 255.0 / (hi - lo) if hi > lo else 0.0)
        out = np.empty(arr.shape, dtype=np.uint8)
        for start in range(0, arr.shape[0], 256):  # row blocks in float32: a 49-megapixel image costs ~50 MB extra
            block = (arr[start:start + 256].astype(np.float32) - offset) * scale
            out[start:start + 256] = np.clip(np.rint(np.nan_to_num(block, nan=0.0)), 0, 255)
        return Image.fromarray(out).convert("RGB")
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def check_image_size(image: Image.Image, max_pixels: int | None, name: str) -> Image.Image:
    """``image`` (an already decoded PIL image) if it has pixels and at most ``max_pixels`` of them.

    Raises:
        ImageLoadError: for an image of 0 pixels; ImageTooLargeError: for one over the limit.
    """
    width, height = image.size
    if not width or not height:
        raise ImageLoadError(name, f"empty image ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(name, _too_large(width * height, image.size, max_pixels))
    return image


def load_image(path: str | Path, *, max_pixels: int | None = None, min_side: int | None = None) -> Image.Image:
    """Loads an image fully, as RGB, whatever its mode, orientation or format (sniffed from the content, not the name).

    EXIF orientation is applied; transparency is composited on white; 16-bit images are scaled (not clipped) to 8 bits.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard); None uses PIL's limit.
        min_side: speed hint: JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8) as long as the shorter side
            stays at least this long. Never upsamples; other formats are decoded at full size.

    Raises:
        ImageLoadError: naming the path and the reason (:class:`ImageTooLargeError` for too many pixels).
    """
    path = Path(path)
    try:
        data = read_regular_file(path)  # a FIFO or device would block or never end: refused unopened
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except FileRefusedError as exc:
        raise ImageLoadError(path, exc.reason) from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    return load_image_bytes(data, max_pixels=max_pixels, min_side=min_side, name=path)


def load_image_bytes(
    data: bytes, *, max_pixels: int | None = None, min_side: int | None = None, name: str | Path = "<bytes>"
) -> Image.Image:
    """:func:`load_image` for an encoded image in memory (an upload); errors call it ``name``."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        # PIL refuses at twice its own process-wide limit before we see the size, so a raised data.max_image_pixels
        # would have no effect: raise PIL's too. Never lowered, so concurrent loads with other limits stay safe.
        with _PIL_LIMIT_LOCK:
            if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
                Image.MAX_IMAGE_PIXELS = max_pixels

    fp = _EOFWatch(data)
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as exc:  # PIL's limit is at least ours (see above): over ours too
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        raise ImageTooLargeError(name, _too_large(pixels, None, limit or Image.MAX_IMAGE_PIXELS or 0)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(name, f"not an image PIL can read (file starts with {data[:8]!r})") from None
    except Exception as exc:  # PIL plugins raise many types (SyntaxError, struct.error, ...) for broken headers
        raise ImageLoadError(name, f"broken image header: {type(exc).__name__}: {exc}") from exc

    width, height = im.size
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(name, _too_large(width * height, im.size, limit))
    if min_side is not None and im.format == "JPEG" and min(width, height) > min_side:
        # Asking for min_side x min_side makes PIL pick the largest 1/2^k scale whose shorter side is >= min_side.
        im.draft("RGB", (max(1, min_side), max(1, min_side)))

    fp.watching = True
    try:
        im.load()
    except Exception as exc:
        reason = f"cannot decode image: {type(exc).__name__}: {exc}"
        raise ImageLoadError(name, _TRUNCATED if fp.hit_eof or "truncated" in str(exc) else reason) from exc
    finally:
        fp.watching = False
    if fp.hit_eof:
        raise ImageLoadError(name, _TRUNCATED)

    try:
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 -- a corrupt EXIF block should not cost the image itself
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
    try:
        return _to_rgb(im)
    except Exception as exc:
        raise ImageLoadError(name, f"cannot convert mode {im.mode} to RGB: {exc}") from exc


def check_image(path: str | Path, *, max_pixels: int | None = None) -> str | None:
    """Returns None if :func:`load_image` succeeds (decoding at the smallest JPEG scale, for speed), else the reason."""
    try:
        load_image(path, max_pixels=max_pixels, min_side=1)
    except ImageLoadError as exc:
        return exc.reason
    return None
