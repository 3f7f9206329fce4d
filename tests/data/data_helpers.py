"""Helpers for the data-layer tests (a uniquely named module, so it cannot clash with another conftest)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

Rows = Sequence[tuple[str, str]]
T = TypeVar("T")


def write_image(path: Path, size: tuple[int, int] = (48, 32), color: tuple[int, int, int] = (200, 40, 40),
                fmt: str = "JPEG") -> Path:
    """Writes a small solid-colour RGB image (half of it darker, so it is not trivially uniform)."""
    im = Image.new("RGB", size, color)
    im.paste((color[0] // 2, color[1] // 2, color[2] // 2), (0, 0, size[0] // 2, size[1]))
    im.save(path, fmt)
    return path


def write_labels(path: Path, rows: Rows, header: bool = True) -> None:
    lines = (["guid,tag"] if header else []) + [f"{guid},{tag}" for guid, tag in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


DEFAULT_TRAIN: list[tuple[str, str]] = [
    ("1", "positive"), ("2", "negative"), ("3", "neutral"), ("4", "positive"), ("5", "negative"), ("6", "positive"),
]
DEFAULT_TEST: list[tuple[str, str]] = [("101", "null"), ("102", "null")]


def call_unblocked(fn: Callable[[], T], fifos: Sequence[Path], timeout: float = 10.0) -> T:
    """``fn()``, failing the test instead of hanging if it blocks on one of ``fifos``: after ``timeout`` seconds the
    FIFOs are opened for writing and closed, which ends a blocked read with EOF."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading this one
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout)
        pytest.fail(f"blocked for {timeout:.0f}s reading a FIFO")
    if "error" in result:
        raise result["error"]
    return result["value"]
