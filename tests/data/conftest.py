"""Shared fixtures for the data-layer tests: small synthetic lab-format datasets built in tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

try:
    import mmsent  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`: test the sources next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from data_helpers import DEFAULT_TEST, DEFAULT_TRAIN, Rows, write_image, write_labels


@pytest.fixture
def make_lab(tmp_path: Path) -> Callable[..., Path]:
    """Returns a factory writing a clean lab dataset; tests then break one thing in it.

    Every guid gets ``data/{guid}.jpg`` and ``data/{guid}.txt`` (a short utf-8 tweet).
    """

    def factory(train: Rows = DEFAULT_TRAIN, test: Rows | None = DEFAULT_TEST, header: bool = True,
                name: str = "lab") -> Path:
        root = tmp_path / name
        data = root / "data"
        data.mkdir(parents=True)
        write_labels(root / "train.txt", train, header=header)
        if test is not None:
            write_labels(root / "test_without_label.txt", test)
        for guid, _ in list(train) + list(test or []):
            if guid.strip() and "/" not in guid:
                write_image(data / f"{guid.strip()}.jpg")
                (data / f"{guid.strip()}.txt").write_text(f"Great day at the park #sunny {guid} http://t.co/x1",
                                                          encoding="utf-8")
        return root

    return factory
