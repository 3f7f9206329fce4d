"""Helpers for the data-layer tests (a uniquely named module, so it cannot clash with another conftest)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmsent_testkit import call_unblocked  # noqa: F401 -- the data tests import it from here
from PIL import Image

Rows = Sequence[tuple[str, str]]


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
