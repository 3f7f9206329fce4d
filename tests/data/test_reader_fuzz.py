"""Property-based fuzzing of the readers (Hypothesis): whatever bytes a dataset holds, reading it ends in a dataset
or in the readers' own named errors, never in a traceback from deeper down."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsent.data.images import ImageLoadError, load_image_bytes
from mmsent.data.lab_format import DataValidationError, load_lab_dataset
from mmsent.data.text import TextDecodeError, decode_text

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                derandomize=True)  # the same cases on every run: CI stays reproducible


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
GUIDS = st.sampled_from(["1", "2", "3", "10", "x", "", " 4 ", "../5", ".hidden", "a,b", "é"])
TAGS = st.sampled_from(["positive", "NEGATIVE", " neutral ", "null", "", "happy", "positive,extra"])
LINES = st.one_of(st.tuples(GUIDS, TAGS).map(lambda gt: f"{gt[0]},{gt[1]}"), st.text(max_size=20))
LABEL_FILE = st.tuples(st.booleans(), st.lists(LINES, max_size=8), st.sampled_from(["\n", "\r\n"]),
                       st.sampled_from(["utf-8", "utf-8-sig", "gbk", "latin-1"]))
CONTENT = st.one_of(st.just(PNG), st.binary(max_size=64), st.just(PNG[:30]), st.just(b""))  # valid, junk, cut


def _label_bytes(spec) -> bytes:
    header, lines, newline, encoding = spec
    text = newline.join((["guid,tag"] if header else []) + lines) + newline
    return text.encode(encoding, errors="replace")


@FUZZ
@given(train=LABEL_FILE, test=st.one_of(st.none(), LABEL_FILE),
       files=st.dictionaries(st.sampled_from(["1", "2", "3", "10", "x"]),
                             st.tuples(st.one_of(st.none(), st.binary(max_size=40), st.just("héllo 😀".encode())),
                                       st.one_of(st.none(), CONTENT))),
       on_error=st.sampled_from(["raise", "skip"]))
def test_the_lab_reader_gives_a_dataset_or_its_own_named_error(train, test, files, on_error):
    root = Path(tempfile.mkdtemp(prefix="mmsent-fuzz-"))
    try:
        (root / "data").mkdir()
        (root / "train.txt").write_bytes(_label_bytes(train))
        if test is not None:
            (root / "test_without_label.txt").write_bytes(_label_bytes(test))
        for guid, (text, image) in files.items():
            if text is not None:
                (root / "data" / f"{guid}.txt").write_bytes(text)
            if image is not None:
                (root / "data" / f"{guid}.jpg").write_bytes(image)
        try:
            dataset = load_lab_dataset(root, on_error=on_error, num_workers=1)
        except DataValidationError as exc:
            assert exc.issues and all(str(issue) for issue in exc.issues)
            # under skip only a whole label file that cannot be read stops the load (no row can be skipped then)
            assert on_error == "raise" or {i.location for i in exc.issues} <= {"train.txt", "test_without_label.txt"}
            return
        for ex in dataset.train + dataset.test:
            assert ex.image_path.is_file() and isinstance(ex.text, str)
        assert sum(dataset.report.skipped.values()) + len(dataset.train) + len(dataset.test) >= 0
    finally:
        shutil.rmtree(root)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_text_decoding_gives_text_or_a_named_error(raw):
    try:
        text, encoding = decode_text(raw, "data/1.txt")
    except TextDecodeError as exc:
        assert exc.location == "data/1.txt" and exc.reason
        return
    assert isinstance(text, str) and encoding in ("utf-8", "gbk", "cp1252")


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.binary(max_size=40).map(lambda tail: PNG[:45] + tail),
                     st.binary(max_size=40).map(lambda tail: PNG + tail)))
def test_image_decoding_gives_an_rgb_image_or_a_named_error(raw):
    try:
        image = load_image_bytes(raw, max_pixels=10_000, name="upload.jpg")
    except ImageLoadError as exc:
        assert "upload.jpg" in str(exc)
        return
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= 10_000


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries(
    {"id": st.one_of(GUIDS, st.text(max_size=6))},
    optional={"text": st.text(max_size=10), "text_path": st.sampled_from(["t.txt", "missing.txt", ""]),
              "image": st.sampled_from(["ok.png", "bad.png", "missing.png", "", "../ok.png"]),
              "label": st.one_of(TAGS, st.text(max_size=5)), "split": st.sampled_from(["train", "val", "test", "",
                                                                                     "dev", "VAL"])}),
    max_size=6), suffix=st.sampled_from([".csv", ".jsonl"]), on_error=st.sampled_from(["raise", "skip"]))
def test_the_table_reader_gives_a_dataset_or_its_own_named_error(rows, suffix, on_error):
    import csv
    import json

    from mmsent.data.table import load_table_dataset

    root = Path(tempfile.mkdtemp(prefix="mmsent-fuzz-"))
    try:
        (root / "ok.png").write_bytes(PNG)
        (root / "bad.png").write_bytes(b"not an image")
        (root / "t.txt").write_bytes("a text 😀".encode())
        table = root / f"posts{suffix}"
        if suffix == ".csv":
            with table.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
                writer = csv.DictWriter(fh, fieldnames=["id", "text", "text_path", "image", "label", "split"])
                writer.writeheader()
                writer.writerows(rows)
        else:
            table.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        try:
            dataset = load_table_dataset(table, on_error=on_error)
        except DataValidationError as exc:
            assert exc.issues and all(str(issue) for issue in exc.issues)
            return
        assert set(dataset.validation) <= {ex.guid for ex in dataset.train}
        for ex in dataset.train + dataset.test:
            assert ex.image_path.is_file() and isinstance(ex.text, str)
    finally:
        shutil.rmtree(root)
