"""Lab-format reader: clean loads, tolerated formatting, and every broken input under raise and under skip."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_helpers import DEFAULT_TEST, DEFAULT_TRAIN, call_unblocked, write_image, write_labels
from PIL import Image

from mmsent.data.lab_format import DataValidationError, load_lab_dataset
from mmsent.labels import LABELS

MakeLab = Callable[..., Path]


def test_clean_load(make_lab: MakeLab) -> None:
    ds = load_lab_dataset(make_lab())
    assert [ex.guid for ex in ds.train] == [g for g, _ in DEFAULT_TRAIN]
    assert [ex.label for ex in ds.train] == [t for _, t in DEFAULT_TRAIN]
    assert [ex.guid for ex in ds.test] == ["101", "102"] and all(ex.label is None for ex in ds.test)
    first = ds.train[0]
    assert first.text == "Great day at the park #sunny 1 http://t.co/x1" and first.text_encoding == "utf-8"
    assert first.source == "train.txt:2" and first.image_path == ds.root / "data" / "1.jpg"
    assert ds.report.counts == {"train": 6, "test": 2, "empty_text": 0}
    assert ds.report.encodings == {"utf-8": 8} and ds.report.skipped == {} and ds.report.issues == []


def test_crlf_bom_spaces_blank_lines_and_case(make_lab: MakeLab) -> None:
    root = make_lab()
    (root / "train.txt").write_bytes(
        b"\xef\xbb\xbf GUID , Tag \r\n\r\n 1 , Positive\r\n2,NEGATIVE \r\n   \r\n3,neutral\r\n\r\n"
    )
    (root / "test_without_label.txt").write_bytes(b"guid,tag\r\n101,NULL\r\n102,\r\n")
    ds = load_lab_dataset(root)
    assert [(ex.guid, ex.label) for ex in ds.train] == [("1", "positive"), ("2", "negative"), ("3", "neutral")]
    assert [ex.source for ex in ds.train] == ["train.txt:3", "train.txt:4", "train.txt:6"]
    assert [(ex.guid, ex.label) for ex in ds.test] == [("101", None), ("102", None)]


def test_encodings_recorded(make_lab: MakeLab) -> None:
    root = make_lab()
    (root / "data" / "1.txt").write_bytes("今天天气很好 #开心".encode("gbk"))
    (root / "data" / "2.txt").write_bytes("print from 180€ – contact".encode("cp1252"))
    (root / "data" / "3.txt").write_bytes(b"")
    ds = load_lab_dataset(root)
    by_guid = {ex.guid: ex for ex in ds.train}
    assert (by_guid["1"].text, by_guid["1"].text_encoding) == ("今天天气很好 #开心", "gbk")
    assert (by_guid["2"].text, by_guid["2"].text_encoding) == ("print from 180€ – contact", "cp1252")
    assert by_guid["3"].text == ""
    assert ds.report.encodings == {"gbk": 1, "cp1252": 1, "utf-8": 6}
    assert ds.report.counts["empty_text"] == 1


def test_odd_but_valid_images_load(make_lab: MakeLab) -> None:
    root = make_lab()
    write_image(root / "data" / "1.jpg", fmt="PNG")  # PNG content behind a .jpg name
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(root / "data" / "2.jpg")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "data" / "3.jpg", format="PNG")
    ds = load_lab_dataset(root)
    assert len(ds.train) == 6 and ds.report.issues == []


# Each case breaks one thing in a clean dataset. Expected: the issue kind, the guid of the dropped row, and text that
# must appear in the raised message (the row or file it names).
def _truncate_jpeg(root: Path) -> None:
    rng = np.random.default_rng(0)
    path = root / "data" / "2.jpg"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:1500])


def _zero_byte_image(root: Path) -> None:
    (root / "data" / "2.jpg").write_bytes(b"")


def _missing_text(root: Path) -> None:
    (root / "data" / "2.txt").unlink()


def _missing_image(root: Path) -> None:
    (root / "data" / "2.jpg").unlink()


def _binary_text(root: Path) -> None:
    (root / "data" / "2.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))


def _non_image(root: Path) -> None:
    (root / "data" / "2.jpg").write_bytes(b"<html>not found</html>")


def _rewrite_train(*replace: tuple[str, str]) -> Callable[[Path], None]:
    def breaker(root: Path) -> None:
        text = (root / "train.txt").read_text(encoding="utf-8")
        for old, new in replace:
            text = text.replace(old, new)
        (root / "train.txt").write_text(text, encoding="utf-8")

    return breaker


def _duplicate(root: Path) -> None:
    with (root / "train.txt").open("a", encoding="utf-8") as f:
        f.write("2,positive\n")


def _in_both(root: Path) -> None:
    write_labels(root / "test_without_label.txt", DEFAULT_TEST + [("2", "null")])


BROKEN = {
    "truncated_jpeg": (_truncate_jpeg, "bad_image", "2", "data/2.jpg: truncated"),
    "zero_byte_image": (_zero_byte_image, "bad_image", "2", "data/2.jpg: empty file (0 bytes)"),
    "non_image": (_non_image, "bad_image", "2", "data/2.jpg: not an image"),
    "missing_text": (_missing_text, "missing_text", "2", "train.txt:3: text file data/2.txt is missing"),
    "missing_image": (_missing_image, "missing_image", "2", "train.txt:3: image data/2.jpg is missing"),
    "binary_text": (_binary_text, "bad_text", "2", "data/2.txt: contains NUL bytes"),
    "unknown_label": (
        _rewrite_train(("2,negative", '2,post"ive')), "unknown_label", "2",
        "train.txt:3: label 'post\"ive' has surrounding spaces, a comma, a quote, a tab or a line break; rename it "
        "(prediction files are comma-separated) -> write a plain class name, or null for an unlabelled row",
    ),
    "null_label_in_train": (
        _rewrite_train(("2,negative", "2,null")), "unknown_label", "2", "train.txt:3: training row has no label"
    ),
    "three_columns": (_rewrite_train(("2,negative", "2,negative,extra")), "malformed_row", "2",
                      ("train.txt:3: expected 2 columns (guid,tag), found 3: '2,negative,extra' -> write the row as "
                       "guid,tag\n")),
    "empty_guid": (_rewrite_train(("2,negative", ",negative")), "malformed_row", "2",
                   "train.txt:3: empty guid -> write the row as guid,tag with the guid naming data/{guid}.jpg\n"),
    "path_guid": (_rewrite_train(("2,negative", "../2,negative")), "malformed_row", "2",
                  ("train.txt:3: guid '../2' is not a plain file name -> write the row as guid,tag with the guid "
                   "naming data/{guid}.jpg\n")),
    "duplicate_guid": (
        _duplicate, "duplicate_guid", None,
        ("train.txt:8: duplicate guid 2 with a different label (negative vs positive); first at train.txt:3 -> remove "
         "the repeated row\n"),
    ),
    "guid_in_both_files": (_in_both, "guid_in_both_files", "2",
                           "train.txt:3: guid 2 is also in test_without_label.txt:4"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_raises_naming_it(make_lab: MakeLab, case: str) -> None:
    breaker, kind, _, message = BROKEN[case]
    root = make_lab()
    breaker(root)
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert message in str(info.value)
    assert [issue.kind for issue in info.value.issues] == [kind]
    assert "data.on_error=skip" in str(info.value)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_skipped_and_counted(make_lab: MakeLab, case: str, caplog: pytest.LogCaptureFixture) -> None:
    breaker, kind, dropped, message = BROKEN[case]
    root = make_lab()
    breaker(root)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_lab_dataset(root, on_error="skip")
    assert ds.report.skipped == {kind: 1}
    assert [issue.kind for issue in ds.report.issues] == [kind]
    train_guids = [ex.guid for ex in ds.train]
    if dropped is None:  # the duplicate: the first occurrence stays, with its own label
        assert train_guids == ["1", "2", "3", "4", "5", "6"] and ds.train[1].label == "negative"
    else:
        assert dropped not in train_guids and len(train_guids) == 5
    assert ds.report.counts["train"] == len(ds.train)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(message.split(" -> ")[0] in w for w in warnings)
    assert any(f"skipped 1 row(s): 1 {kind}" in w for w in warnings)


def test_guid_in_both_keeps_the_test_row(make_lab: MakeLab) -> None:
    root = make_lab()
    _in_both(root)
    ds = load_lab_dataset(root, on_error="skip")
    assert [ex.guid for ex in ds.test] == ["101", "102", "2"]


def test_too_large_image(make_lab: MakeLab) -> None:
    root = make_lab()
    write_image(root / "data" / "4.jpg", size=(200, 100))
    with pytest.raises(DataValidationError, match=r"data/4\.jpg: image has 20,000 pixels .*data.max_image_pixels"):
        load_lab_dataset(root, max_image_pixels=10_000)
    ds = load_lab_dataset(root, max_image_pixels=10_000, on_error="skip")
    assert ds.report.skipped == {"image_too_large": 1}
    assert len(load_lab_dataset(root, max_image_pixels=20_000).train) == 6


def test_missing_header_raise(make_lab: MakeLab) -> None:
    root = make_lab(header=False)
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert "train.txt:1: no header line: the first line is '1,positive'" in str(info.value)
    assert "-> add the header line guid,tag at the top of the file\n" in str(info.value)
    assert [issue.kind for issue in info.value.issues] == ["missing_header"]


def test_missing_header_skip_reads_first_line_as_data(make_lab: MakeLab, caplog: pytest.LogCaptureFixture) -> None:
    root = make_lab(header=False)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_lab_dataset(root, on_error="skip")
    assert [ex.guid for ex in ds.train] == ["1", "2", "3", "4", "5", "6"] and ds.train[0].source == "train.txt:1"
    assert ds.report.warnings == {"missing_header": 1} and ds.report.skipped == {}
    assert any("no header line" in r.getMessage() for r in caplog.records)


def test_all_issues_collected_before_raising(make_lab: MakeLab) -> None:
    root = make_lab()
    _missing_image(root)
    _binary_text(root)  # same row: both reported
    _rewrite_train(("5,negative", '5,"bad"'))(root)
    _duplicate(root)
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    kinds = [issue.kind for issue in info.value.issues]
    assert kinds == ["bad_text", "missing_image", "unknown_label", "duplicate_guid"]
    ds = load_lab_dataset(root, on_error="skip")
    # Three rows dropped (row 2 counted once, under its first issue), the first "2" row among them.
    assert ds.report.skipped == {"bad_text": 1, "unknown_label": 1, "duplicate_guid": 1}
    assert [ex.guid for ex in ds.train] == ["1", "3", "4", "6"]


def _rows_without_images(make_lab: MakeLab, n: int) -> tuple[Path, DataValidationError]:
    """A dataset of ``n`` training rows whose images are all missing, and the error loading it raises."""
    root = make_lab(train=[(str(i), LABELS[i % 3]) for i in range(1, n + 1)], test=None)
    for i in range(1, n + 1):
        (root / "data" / f"{i}.jpg").unlink()
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root, check_images=False)
    return root, info.value


def test_message_capped_but_issues_complete(make_lab: MakeLab) -> None:
    _, error = _rows_without_images(make_lab, 60)
    assert len(error.issues) == 60
    message = str(error)
    assert "60 problem(s)" in message and "... and 10 more" in message
    assert "train.txt:51:" in message and "train.txt:52:" not in message


def test_missing_test_file(make_lab: MakeLab, caplog: pytest.LogCaptureFixture) -> None:
    root = make_lab(test=None)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_lab_dataset(root)
    assert ds.test == [] and len(ds.train) == 6
    assert ds.report.warnings == {"missing_test_file": 1}
    test_path = root / "test_without_label.txt"
    assert f"no test file {test_path}: the dataset has no test rows" in [r.getMessage() for r in caplog.records]


def test_missing_train_file(make_lab: MakeLab) -> None:
    root = make_lab()
    (root / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"training label file not found: .*train\.txt"):
        load_lab_dataset(root)


def test_labelled_test_file_keeps_labels(make_lab: MakeLab) -> None:
    ds = load_lab_dataset(make_lab(test=[("101", "Positive"), ("102", "null")]))
    assert [ex.label for ex in ds.test] == ["positive", None]


def test_a_test_label_is_kept_for_scoring_and_a_tag_no_label_can_be_is_named(make_lab: MakeLab) -> None:
    # The label set is the data's: whether "maybe" is a class of the run is decided against the training labels.
    assert [ex.label for ex in load_lab_dataset(make_lab(test=[("101", "Maybe")])).test] == ["maybe"]
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(make_lab(name="quoted", test=[("101", '"maybe"')]))
    [issue] = info.value.issues
    assert str(issue).startswith("test_without_label.txt:2: label '\"maybe\"' has surrounding spaces, a comma, a quote")
    assert (issue.kind, issue.guid) == ("unknown_label", "101")


def test_the_sentiment_order_is_kept_for_sentiment_classes_only(make_lab: MakeLab) -> None:
    assert load_lab_dataset(make_lab()).label_order == ("positive", "neutral", "negative")
    two = make_lab(name="two", train=[("1", "negative"), ("2", "positive"), ("3", "negative")])
    assert load_lab_dataset(two).label_order == ("positive", "negative")
    other = make_lab(name="other", train=[("1", "happy"), ("2", "Sad"), ("3", "positive")])
    ds = load_lab_dataset(other)
    assert ds.label_order is None and [ex.label for ex in ds.train] == ["happy", "sad", "positive"]


def test_check_images_off_skips_decoding(make_lab: MakeLab) -> None:
    root = make_lab()
    _zero_byte_image(root)
    assert len(load_lab_dataset(root, check_images=False).train) == 6


def test_bad_on_error(make_lab: MakeLab) -> None:
    with pytest.raises(ValueError, match="^on_error must be one of raise, skip, got 'ignore'$"):
        load_lab_dataset(make_lab(), on_error="ignore")  # type: ignore[arg-type]


def test_missing_folders_are_named(make_lab: MakeLab, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"^dataset folder not found: {tmp_path / 'nowhere'}$"):
        load_lab_dataset(tmp_path / "nowhere")
    root = make_lab()
    for f in (root / "data").iterdir():
        f.unlink()
    (root / "data").rmdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"data folder not found: {root / 'data'} (it should hold "
                                                          "{guid}.jpg and {guid}.txt)")):
        load_lab_dataset(root)


def test_a_link_out_of_the_dataset_folder_is_refused(make_lab: MakeLab, tmp_path: Path) -> None:
    root = make_lab()
    guid = DEFAULT_TRAIN[0][0]
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not part of the dataset", encoding="utf-8")
    (root / "data" / f"{guid}.txt").unlink()
    (root / "data" / f"{guid}.txt").symlink_to(secret)
    with pytest.raises(DataValidationError, match=rf"data/{guid}.txt is a link to .*elsewhere.txt, outside the "):
        load_lab_dataset(root)
    inside = root / "data" / "shared.txt"
    inside.write_text("a text kept inside", encoding="utf-8")
    (root / "data" / f"{guid}.txt").unlink()
    (root / "data" / f"{guid}.txt").symlink_to(inside)  # a link within the folder is fine
    assert load_lab_dataset(root).train[0].text == "a text kept inside"


def test_an_empty_test_file_is_warned_about(make_lab: MakeLab, caplog) -> None:
    root = make_lab()
    (root / "test_without_label.txt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        dataset = load_lab_dataset(root)
    assert dataset.test == [] and dataset.report.warnings == {"empty_test_file": 1}
    test_path = root / "test_without_label.txt"
    assert f"test file {test_path} holds no rows: nothing will be predicted" in [r.getMessage() for r in caplog.records]


def test_the_error_lists_exactly_fifty_issues_without_a_more_line(make_lab: MakeLab) -> None:
    root, error = _rows_without_images(make_lab, 50)
    lines = str(error).split("\n")
    assert lines[0] == f"50 problem(s) in the dataset at {root}:" and len(lines) == 52
    assert lines[1].startswith("  train.txt:2: ") and error.root == root
    assert lines[-1] == ("Fix the rows above, or set data.on_error=skip to drop the offending rows (each is logged and "
                         "counted).")
    assert {issue.guid for issue in error.issues} == {str(i) for i in range(1, 51)}  # each names its row


def test_an_undecodable_label_file_is_one_named_issue(make_lab: MakeLab) -> None:
    root = make_lab()
    (root / "train.txt").write_bytes(b"guid,tag\n1,positive\x00\n")
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    [issue] = info.value.issues
    assert (issue.location, issue.fix) == ("train.txt", "save it as a utf-8 CSV with lines guid,tag")
    assert issue.reason.startswith("contains NUL bytes")


def test_a_row_already_found_malformed_or_repeated_is_not_checked_for_files(make_lab: MakeLab) -> None:
    root = make_lab()
    with (root / "train.txt").open("a", encoding="utf-8") as f:
        f.write("9,negative,extra\n../9,negative\n2,negative\n")  # 9 has no files; 2's image is gone
    (root / "data" / "2.jpg").unlink()
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(issue.location, issue.kind) for issue in info.value.issues] == [
        ("train.txt:3", "missing_image"), ("train.txt:8", "malformed_row"), ("train.txt:9", "malformed_row"),
        ("train.txt:10", "duplicate_guid")]
    assert str(info.value.issues[-1]).startswith("train.txt:10: duplicate guid 2; first at train.txt:3")


def test_a_malformed_test_row_does_not_claim_its_guid_from_the_training_rows(make_lab: MakeLab) -> None:
    root = make_lab(test=[("101", "null"), ("1", "null,extra")])  # guid 1 is also a (good) training row
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(issue.location, issue.kind) for issue in info.value.issues] == [
        ("test_without_label.txt:3", "malformed_row")]


def test_a_guid_in_both_files_names_the_first_test_line_of_it(make_lab: MakeLab) -> None:
    root = make_lab(test=[("101", "null"), ("1", "null"), ("1", "null")])
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(issue.location, issue.kind) for issue in info.value.issues] == [
        ("train.txt:2", "guid_in_both_files"), ("test_without_label.txt:4", "duplicate_guid")]
    assert info.value.issues[0].reason == "guid 1 is also in test_without_label.txt:3"


def test_a_row_with_a_bad_guid_is_not_checked_for_links(make_lab: MakeLab, tmp_path: Path) -> None:
    root = make_lab(train=[*DEFAULT_TRAIN, ("a b", "positive")])
    (tmp_path / "elsewhere.jpg").write_bytes((root / "data" / "1.jpg").read_bytes())
    (root / "data" / "a b.jpg").unlink()
    (root / "data" / "a b.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(issue.location, issue.kind) for issue in info.value.issues] == [("train.txt:8", "malformed_row")]


def test_every_kind_of_file_problem_is_one_exact_issue(make_lab: MakeLab, tmp_path: Path) -> None:
    root = make_lab(train=[*DEFAULT_TRAIN, *((str(g), "positive") for g in range(7, 14))])
    data = root / "data"
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("x", encoding="utf-8")
    (data / "7.txt").unlink()
    (data / "7.txt").symlink_to(secret)
    (data / "8.txt").unlink()
    (data / "9.txt").unlink()
    (data / "9.txt").mkdir()  # there, but not readable as a file
    (data / "10.txt").write_bytes(b"\xff\x81")  # no codec decodes it
    (data / "11.jpg").unlink()
    write_image(data / "12.jpg", size=(100, 80))
    (data / "13.jpg").write_bytes(b"not an image")
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root, max_image_pixels=5000)
    assert [(i.location, i.kind, i.reason, i.fix) for i in info.value.issues] == [
        ("data/7.txt", "outside_link", f"data/7.txt is a link to {secret}, outside the dataset folder",
         "copy the file into data/ or remove the row"),
        ("train.txt:9", "missing_text", "text file data/8.txt is missing", "add it (may be empty) or remove the row"),
        ("data/9.txt", "bad_text", "not a regular file but a folder",
         "replace it with a regular file or remove the row"),
        ("data/10.txt", "bad_text", "not valid utf-8, gbk, cp1252 (a binary file?)",
         "save it as utf-8 text or remove the row"),
        ("train.txt:12", "missing_image", "image data/11.jpg is missing", "add it or remove the row"),
        ("data/12.jpg", "image_too_large", ("image has 8,000 pixels (100x80), over the decompression-bomb limit of "
                                            "5,000; if the file is genuine, raise data.max_image_pixels"),
         "raise data.max_image_pixels if the image is genuine, or remove the row"),
        ("data/13.jpg", "bad_image", "not an image PIL can read (file starts with b'not an i')",
         "replace it with a readable JPEG/PNG or remove the row"),
    ]


def test_a_malformed_training_row_does_not_also_clash_with_the_test_file(make_lab: MakeLab) -> None:
    root = make_lab(train=[*DEFAULT_TRAIN, ("101", "positive,extra")])  # 101 is a test row too
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(i.location, i.kind) for i in info.value.issues] == [("train.txt:8", "malformed_row")]
    both = make_lab(train=[*DEFAULT_TRAIN, ("101", "positive")], name="both")
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(both)
    [issue] = info.value.issues
    assert (issue.kind, issue.fix) == ("guid_in_both_files", ("remove it from one file: a row cannot be both "
                                                              "training data and a prediction target"))


def test_skipped_test_rows_are_recorded_for_the_prediction_file_and_logged(make_lab: MakeLab, caplog) -> None:
    root = make_lab(train=[*DEFAULT_TRAIN, ("7", 'hap"py')],
                    test=[("101", "null"), ("102", "null"), ("../x", "null"), ("101", "null"), ("103", "null")])
    (root / "data" / "102.jpg").unlink()
    with caplog.at_level(logging.INFO, logger="mmsent.data"):
        dataset = load_lab_dataset(root, on_error="skip")
    assert {guid: issue.kind for guid, issue in dataset.test_skipped.items()} == {"102": "missing_image"}
    assert dataset.test_order == ["101", "102", "103"]  # the malformed guid names no prediction; 101 once
    messages = [r.getMessage() for r in caplog.records]
    assert ("skipping row train.txt:8: train.txt:8: label 'hap\"py' has surrounding spaces, a comma, a quote, a tab "
            "or a line break; rename it (prediction files are comma-separated) -> write a plain class name, or null "
            "for an unlabelled row") in messages
    assert messages[-1] == (f"dataset {root}: 6 train + 2 test rows; skipped 4 row(s): 1 duplicate_guid, "
                            "1 malformed_row, 1 missing_image, 1 unknown_label")
    caplog.clear()
    clean = make_lab(name="clean")
    with caplog.at_level(logging.INFO, logger="mmsent.data"):
        load_lab_dataset(clean)
    assert [r.getMessage() for r in caplog.records][-1] == f"dataset {clean}: 6 train + 2 test rows"


def test_a_header_problem_is_logged_as_read_as_data(make_lab: MakeLab, caplog) -> None:
    root = make_lab(header=False)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        load_lab_dataset(root, on_error="skip")
    assert ("train.txt:1: no header line: the first line is '1,positive', expected 'guid,tag' -> add the header line "
            "guid,tag at the top of the file (reading it as data)") in [r.getMessage() for r in caplog.records]


def test_a_guid_in_both_files_is_checked_for_links_only_through_its_test_row(make_lab: MakeLab,
                                                                           tmp_path: Path) -> None:
    root = make_lab(train=[*DEFAULT_TRAIN, ("101", "positive")])
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("x", encoding="utf-8")
    (root / "data" / "101.txt").unlink()
    (root / "data" / "101.txt").symlink_to(secret)
    with pytest.raises(DataValidationError) as info:
        load_lab_dataset(root)
    assert [(i.location, i.kind) for i in info.value.issues] == [("train.txt:8", "guid_in_both_files"),
                                                                 ("data/101.txt", "outside_link")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_and_oversized_texts_are_issues_not_a_hang(make_lab: MakeLab) -> None:
    # the probe: a FIFO given as an image (or text) hung the whole job
    root = make_lab()
    data = root / "data"
    for name in ("2.txt", "3.jpg"):
        (data / name).unlink()
        os.mkfifo(data / name)
    (data / "4.txt").write_text("x" * 5_001, encoding="utf-8")
    for check_images in (True, False):
        with pytest.raises(DataValidationError) as info:
            call_unblocked(lambda c=check_images: load_lab_dataset(root, check_images=c), [data / "2.txt",
                                                                                          data / "3.jpg"])
        assert [(i.location, i.kind, i.reason, i.fix) for i in info.value.issues] == [
            ("data/2.txt", "bad_text", "not a regular file but a FIFO (named pipe)",
             "replace it with a regular file or remove the row"),
            ("data/3.jpg", "bad_image", "not a regular file but a FIFO (named pipe)",
             "replace it with a readable JPEG/PNG or remove the row"),
            ("data/4.txt", "bad_text", "5,001 characters, over the limit of 5,000",
             "shorten it to 5,000 characters at most or remove the row"),
        ]
