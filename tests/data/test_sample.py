"""The bundled sample dataset loads cleanly, has the documented counts, and stays within its size budget."""

from __future__ import annotations

from collections import Counter

from PIL import Image

from mmsent.data.lab_format import load_lab_dataset
from mmsent.data.sample import load_sample_dataset, sample_dataset_path
from mmsent.labels import LABELS


def test_sample_loads_cleanly_with_expected_counts() -> None:
    root = sample_dataset_path()
    ds = load_lab_dataset(root, on_error="raise")
    assert ds.report.issues == [] and ds.report.skipped == {}
    assert (len(ds.train), len(ds.test)) == (360, 61)
    assert Counter(ex.label for ex in ds.train) == {"positive": 215, "negative": 107, "neutral": 38}
    assert {ex.label for ex in ds.train} == set(LABELS)
    assert all(ex.label is None for ex in ds.test)
    assert ds.report.encodings == {"utf-8": 324, "gbk": 95, "cp1252": 2}
    cp1252 = {ex.guid for ex in ds.train + ds.test if ex.text_encoding == "cp1252"}
    assert cp1252 == {"824", "5084"}


def test_sample_size_budget_and_image_sizes() -> None:
    root = sample_dataset_path()
    files = [p for p in root.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 1024 * 1024
    images = sorted((root / "data").glob("*.jpg"))
    assert len(images) == 421
    for path in images[::20]:
        with Image.open(path) as im:
            assert max(im.size) <= 320 and im.format == "JPEG" and "exif" not in im.info


def test_load_sample_dataset_passes_options() -> None:
    ds = load_sample_dataset(check_images=False)
    assert ds.root == sample_dataset_path() and len(ds.train) == 360


def test_load_sample_dataset_passes_its_options_on() -> None:
    ds = load_sample_dataset(max_image_pixels=100, on_error="skip")  # every sample image is larger
    assert ds.train == [] and ds.test == [] and ds.report.skipped == {"image_too_large": 421}


def test_a_missing_sample_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    import re

    import pytest

    from mmsent.data import sample

    monkeypatch.setattr(sample.resources, "files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"the bundled sample dataset is missing at {tmp_path / 'sample_data' / 'lab'}; reinstall mmsent with its "
            "package data (pip install mmsent, or pip install -e . from a checkout)")):
        sample_dataset_path()
