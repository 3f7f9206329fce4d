"""data.format=splits: train/dev/test files (JSON, JSONL, CSV), the fixed dev split, labelled test rows, and every
bad input named by file, row and fix."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from types import ModuleType

import pytest

from mmsent.data.lab_format import DataValidationError
from mmsent.data.split_files import load_split_files
from mmsent.labels import LabelError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_benchmark_fixtures.py"


@pytest.fixture(scope="module")
def fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_benchmark_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows_of(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def edit(path: Path, change) -> None:
    """Rewrites a JSON split file with ``change(rows)`` applied."""
    rows = rows_of(path)
    change(rows)
    path.write_text(json.dumps(rows), encoding="utf-8")


def issues_of(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(issue) for issue in exc.value.issues]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_each_format_reads_train_dev_and_a_labelled_test(tmp_path, fixtures, fmt):
    want = fixtures.write_splits_fixture(tmp_path, fmt=fmt)
    ds = load_split_files(tmp_path)
    assert [(ex.guid, ex.label) for ex in ds.train] == want["train"] + want["dev"]
    assert ds.validation == [guid for guid, _ in want["dev"]]
    assert [(ex.guid, ex.label) for ex in ds.test] == want["test"]  # the test split keeps its labels
    assert ds.test_order == [guid for guid, _ in want["test"]]
    assert ds.label_order == ("positive", "neutral", "negative")  # sentiment classes keep the sentiment order
    assert ds.report.counts == {"train": 45, "test": 9, "empty_text": 0, "val": 9}
    first = ds.train[0]
    assert first.image_path == tmp_path / "images" / f"{first.guid}.jpg"
    assert first.text and first.source.startswith(f"train.{fmt}:")


@pytest.mark.parametrize("name", ["val", "valid", "validation"])
def test_dev_may_be_named_val_valid_or_validation(tmp_path, fixtures, name):
    want = fixtures.write_splits_fixture(tmp_path, dev_name=name)
    assert load_split_files(tmp_path).validation == [guid for guid, _ in want["dev"]]


def test_without_a_dev_file_no_validation_ids_are_given(tmp_path, fixtures, caplog):
    fixtures.write_splits_fixture(tmp_path)
    (tmp_path / "dev.json").unlink()
    with caplog.at_level(logging.INFO, logger="mmsent.data"):
        ds = load_split_files(tmp_path)
    assert ds.validation == [] and len(ds.train) == 36
    assert "draws its validation rows from train" in caplog.text


def test_counts_per_class_and_split_are_logged(tmp_path, fixtures, caplog):
    fixtures.write_splits_fixture(tmp_path)
    with caplog.at_level(logging.INFO, logger="mmsent.data"):
        load_split_files(tmp_path)
    assert "train split, 36 rows per class {'negative': 12, 'neutral': 12, 'positive': 12}" in caplog.text
    assert "dev split, 9 rows per class" in caplog.text and "test split, 9 rows per class" in caplog.text


def test_an_image_column_is_relative_to_the_image_folder_and_data_is_one(tmp_path, fixtures):
    want = fixtures.write_splits_fixture(tmp_path)
    (tmp_path / "images").rename(tmp_path / "data")
    guid = want["train"][0][0]
    (tmp_path / "data" / f"{guid}.jpg").rename(tmp_path / "data" / "renamed.jpg")
    edit(tmp_path / "train.json", lambda rows: rows[0].update(image="renamed.jpg"))
    ds = load_split_files(tmp_path)
    assert ds.train[0].image_path == tmp_path / "data" / "renamed.jpg"
    assert ds.train[1].image_path.parent == tmp_path / "data"


def test_a_fixed_label_set_orders_the_classes(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    ds = load_split_files(tmp_path, labels=["positive", "neutral", "negative"])
    assert ds.label_order == ("positive", "neutral", "negative")
    with pytest.raises(LabelError):
        load_split_files(tmp_path, labels=["positive"])


def test_a_fixed_class_without_training_rows_is_named(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    for split in ("train", "dev", "test"):
        edit(tmp_path / f"{split}.json", lambda rows: rows.__setitem__(slice(None), [
            r for r in rows if r["label"] != "neutral"]))
    for on_error in ("raise", "skip"):  # no skipping can give a class training rows
        with pytest.raises(DataValidationError) as exc:
            load_split_files(tmp_path, labels=["positive", "neutral", "negative"], on_error=on_error)
        assert issues_of(exc) == ["train.json: class(es) ['neutral'] of the label set ['positive', 'neutral', "
                                  "'negative'] have no training row -> add training rows of them, or drop them from "
                                  "the label set"]


def test_a_label_outside_the_fixed_set_is_named_with_its_row(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / "train.json", lambda rows: rows[2].update(label="mixed"))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path, labels=["positive", "neutral", "negative"])
    assert issues_of(exc) == ["train.json:row 3: label 'mixed' is not in the label set ['positive', 'neutral', "
                              "'negative'] -> use one of them, or add it to the label set, or remove the row"]


@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_dev_or_test_label_unseen_in_train_is_named(tmp_path, fixtures, split):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / f"{split}.json", lambda rows: rows[1].update(label="mixed"))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert issues_of(exc) == [f"{split}.json:row 2: label 'mixed' has no row in the training file train.json -> fix "
                              "the label, or add training rows of the class, or remove the row"]


def test_a_label_seen_only_in_dev_is_not_a_training_class(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / "dev.json", lambda rows: rows[0].update(label="mixed"))
    edit(tmp_path / "test.json", lambda rows: rows[0].update(label="mixed"))
    ds = load_split_files(tmp_path, on_error="skip")
    assert "mixed" not in {ex.label for ex in ds.train + ds.test}
    assert ds.report.skipped == {"unseen_label": 2}
    assert set(ds.test_skipped) == {rows_of(tmp_path / "test.json")[0]["id"]}  # still listed in predictions


def test_repeated_ids_name_both_places(tmp_path, fixtures):
    want = fixtures.write_splits_fixture(tmp_path)
    test_id = want["test"][0][0]
    edit(tmp_path / "train.json", lambda rows: rows[4].update(id=rows[3]["id"]))
    edit(tmp_path / "dev.json", lambda rows: rows[0].update(id=test_id))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    repeated = want["train"][3][0]
    assert issues_of(exc) == [
        f"train.json:row 5: id {repeated} repeats the row at train.json:row 4 -> remove one of the two rows",
        f"dev.json:row 1: id {test_id} is also in the test split at test.json:row 1 -> a post belongs to one "
        "split: remove it from the dev file or the test file",
    ]


def test_under_skip_a_repeat_across_splits_leaves_the_test_split_whole(tmp_path, fixtures, caplog):
    want = fixtures.write_splits_fixture(tmp_path)
    test_id = want["test"][0][0]
    edit(tmp_path / "train.json", lambda rows: rows[0].update(id=test_id))
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_split_files(tmp_path, on_error="skip")
    assert [ex.guid for ex in ds.test] == [guid for guid, _ in want["test"]]
    assert len(ds.train) == 44 and ds.report.skipped == {"duplicate_guid": 1}
    assert "skipping row train.json:row 1" in caplog.text


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_missing_train_or_test_file_is_named_with_the_names_to_use(tmp_path, fixtures, split):
    fixtures.write_splits_fixture(tmp_path)
    (tmp_path / f"{split}.json").unlink()
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path, on_error="skip")
    assert issues_of(exc) == [f"{tmp_path}: no {split} split file -> add one of: {split}.json, {split}.jsonl, "
                              f"{split}.csv"]


def test_two_files_for_one_split_are_ambiguous(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    (tmp_path / "val.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert issues_of(exc) == [f"{tmp_path}: several files could be the dev split: dev.json, val.jsonl -> keep "
                              "exactly one of them"]


def test_a_file_that_is_not_a_json_list_is_named(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    (tmp_path / "test.json").write_text('{"id": "x"}\n{"id": "y"}\n', encoding="utf-8")
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    [issue] = exc.value.issues
    assert issue.location == "test.json" and "name it .jsonl" in issue.reason


@pytest.mark.parametrize(("field", "reason", "fix"), [
    ("id", "no 'id'; every row needs a unique id", "fill in the row's id, text and label"),
    ("text", "no 'text' (or 'text_path') column value", "fill in the row's id, text and label"),
    ("label", "no label", "give every row a label (the test split is labelled too) or remove the row"),
])
def test_a_row_without_id_text_or_label_is_named(tmp_path, fixtures, field, reason, fix):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / "test.json", lambda rows: rows[2].pop(field))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert issues_of(exc) == [f"test.json:row 3: {reason} -> {fix}"]


def test_csv_rows_are_named_by_line(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path, fmt="csv")
    lines = (tmp_path / "dev.csv").read_text(encoding="utf-8").splitlines()
    guid, text, _ = lines[2].split(",")
    lines[2] = f"{guid},{text},"
    (tmp_path / "dev.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert [i.location for i in exc.value.issues] == ["dev.csv:3"]


@pytest.mark.parametrize("label", ["null", "a,b", "say \"hi\""])
def test_a_label_that_cannot_be_a_class_name_is_named(tmp_path, fixtures, label):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / "train.json", lambda rows: rows[0].update(label=label))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    [issue] = exc.value.issues
    assert issue.location == "train.json:row 1" and issue.kind == "unknown_label"
    assert issue.fix == "rename the class in every split file"


def test_an_id_that_is_not_a_file_name_is_named(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path)
    edit(tmp_path / "train.json", lambda rows: rows[0].update(id="../etc"))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert [(i.location, i.kind) for i in exc.value.issues] == [("train.json:row 1", "malformed_row")]


def test_every_problem_is_listed_at_once_and_skip_drops_only_those_rows(tmp_path, fixtures, caplog):
    want = fixtures.write_splits_fixture(tmp_path)
    (tmp_path / "images" / f"{want['train'][0][0]}.jpg").unlink()
    edit(tmp_path / "dev.json", lambda rows: rows[0].pop("label"))
    edit(tmp_path / "test.json", lambda rows: rows[0].update(label="mixed"))
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    assert sorted(i.kind for i in exc.value.issues) == ["missing_image", "unknown_label", "unseen_label"]
    assert f"image images/{want['train'][0][0]}.jpg is missing" in str(exc.value)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_split_files(tmp_path, on_error="skip")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (43, 8, 8)
    assert ds.report.skipped == {"missing_image": 1, "unknown_label": 1, "unseen_label": 1}
    assert caplog.text.count("skipping row") == 3


def test_a_class_losing_every_training_row_under_skip_drops_its_dev_and_test_rows(tmp_path, fixtures):
    want = fixtures.write_splits_fixture(tmp_path)
    for guid, label in want["train"]:
        if label == "neutral":
            (tmp_path / "images" / f"{guid}.jpg").unlink()
    ds = load_split_files(tmp_path, on_error="skip")
    assert {ex.label for ex in ds.train + ds.test} == {"negative", "positive"}
    assert ds.report.skipped == {"missing_image": 12, "unseen_label": 6}
    assert len(ds.test_skipped) == 3 and len(ds.validation) == 6
    with pytest.raises(DataValidationError, match="have no training row"):
        load_split_files(tmp_path, on_error="skip", labels=["negative", "neutral", "positive"])


def test_a_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.format=splits"):
        load_split_files(tmp_path / "nowhere")


def test_a_csv_row_cut_at_an_unquoted_comma_is_named(tmp_path, fixtures):
    fixtures.write_splits_fixture(tmp_path, fmt="csv")
    with (tmp_path / "train.csv").open("a", encoding="utf-8") as fh:
        fh.write("p9999,not bad, actually,positive\n")
    with pytest.raises(DataValidationError) as exc:
        load_split_files(tmp_path)
    [issue] = exc.value.issues
    assert issue.location == "train.csv:38" and issue.kind == "malformed_row"
