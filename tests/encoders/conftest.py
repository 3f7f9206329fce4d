"""Tiny randomly initialised models and synthetic images: encoder tests never download anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmsent_testkit import build_tiny_bert
from PIL import Image


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Random-noise JPEGs (plus a PNG with alpha and a greyscale one) of the given sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if i % 3 == 1:
            p = folder / f"{i}.png"
            alpha = rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8)
            Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA").save(p)
        elif i % 3 == 2:
            p = folder / f"{i}.jpg"
            Image.fromarray(arr[..., 0], "L").save(p, quality=90)
        else:
            p = folder / f"{i}.jpg"
            Image.fromarray(arr, "RGB").save(p, quality=90)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_bert_other(tmp_path_factory) -> Path:
    """Same architecture and vocab, different random weights."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_other"), seed=1)


@pytest.fixture(scope="session")
def tiny_bert_cased(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_cased"), do_lower_case=False, cased_words=True)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("images"), [(64, 48), (40, 90), (100, 100), (300, 200)])


@pytest.fixture(scope="session")
def lite0_random():
    """A randomly initialised EfficientNet-Lite0 (224 px, 7x7 final map), full-map tokens."""
    import torch

    from mmsent.encoders import create_image_encoder

    torch.manual_seed(0)
    return create_image_encoder("efficientnet-lite0", grid=0, pretrained=False, device="cpu")
