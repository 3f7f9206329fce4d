"""scripts/make_sample.py on a synthetic source: stratified, forced guids kept, images shrunk, texts copied."""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from data_helpers import write_image
from PIL import Image

from mmsent.data.lab_format import load_lab_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_sample.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quotas_keep_proportions(script: ModuleType) -> None:
    assert script.quotas(Counter(positive=2388, negative=1193, neutral=419), 360) == {
        "positive": 215, "negative": 107, "neutral": 38
    }


def test_make_sample(script: ModuleType, make_lab: Callable[..., Path], tmp_path: Path) -> None:
    train = [(str(i), "positive") for i in range(1, 19)] + [(str(i), "negative") for i in range(19, 28)]
    train += [("28", "neutral"), ("29", "neutral"), ("5084", "neutral")]
    test = [(str(i), "null") for i in range(100, 110)] + [("824", "null")]
    source = make_lab(train=train, test=test, name="full")
    write_image(source / "data" / "5084.jpg", size=(400, 100))
    (source / "data" / "5084.txt").write_bytes("180€ – nice".encode("cp1252"))
    dest = tmp_path / "sample"

    stats = script.make_sample(source, dest, n_train=10, n_test=3, seed=0, max_side=32)

    ds = load_lab_dataset(dest)
    assert Counter(ex.label for ex in ds.train) == {"positive": 6, "negative": 3, "neutral": 1}
    assert "5084" in {ex.guid for ex in ds.train} and ds.train[-1].guid == "5084"  # forced, file order kept
    assert [ex.guid for ex in ds.test] == ["100", "101", "102", "824"]
    assert stats["train"] == 10 and stats["test"] == 4
    for ex in ds.train + ds.test:
        assert ex.text_path.read_bytes() == (source / "data" / f"{ex.guid}.txt").read_bytes()
        with Image.open(ex.image_path) as im:
            assert max(im.size) <= 32
    with Image.open(dest / "data" / "5084.jpg") as im:
        assert im.size == (32, 8)  # aspect kept
    assert script.make_sample(source, tmp_path / "again", n_train=10, n_test=3, seed=0, max_side=32) == stats
    assert (tmp_path / "again" / "train.txt").read_text() == (dest / "train.txt").read_text()
