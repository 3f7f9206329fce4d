"""The TumEmo release (data.format=tumemo): the id/label file, split files or a drawn 8:1:1 split, the fixed
emotion order, tolerated variants and every bad input named."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from mmsent.data.lab_format import DataValidationError
from mmsent.data.tumemo import LABELS, load_tumemo_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_benchmark_fixtures.py"
EMOTIONS = ("angry", "bored", "calm", "fear", "happy", "love", "sad")


@pytest.fixture(scope="module")
def fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_benchmark_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ids(rows) -> list[str]:
    return [guid for guid, _ in rows]


def set_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_split_files_fix_train_dev_and_a_labelled_test(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    ds = load_tumemo_dataset(tmp_path)
    assert ds.label_order == LABELS == EMOTIONS
    assert [(ex.guid, ex.label) for ex in ds.train] == want["train"] + want["dev"]
    assert ds.validation == ids(want["dev"])
    assert [(ex.guid, ex.label) for ex in ds.test] == want["test"]
    assert ds.report.counts == {"train": 98, "test": 14, "empty_text": 0, "val": 14}
    ex = ds.test[0]
    assert ex.image_path == tmp_path / "data" / f"{ex.guid}.jpg" and ex.source == "test.txt:1"
    assert ex.text == (tmp_path / "data" / f"{ex.guid}.txt").read_text(encoding="utf-8")


def test_json_split_files_in_a_splits_folder(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path, split_format="json")
    (tmp_path / "splits").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.json").rename(tmp_path / "splits" / f"{split}.json")
    # a toolkit's numeric labels are ignored; a named one must agree with the label file
    (tmp_path / "splits" / "test.json").write_text(json.dumps(
        [{"id": int(guid), "label": 3 if i else label.upper()} for i, (guid, label) in enumerate(want["test"])]))
    ds = load_tumemo_dataset(tmp_path)
    assert ds.validation == ids(want["dev"]) and [(ex.guid, ex.label) for ex in ds.test] == want["test"]
    assert ds.test[0].source == "splits/test.json:row 1"


def test_without_split_files_a_stratified_8_1_1_split_is_drawn(tmp_path, fixtures, caplog):
    want = fixtures.write_tumemo_fixture(tmp_path, per_class=(20, 0, 0), split_format=None)
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_tumemo_dataset(tmp_path, split_seed=3)
    assert "no split files: drew a stratified 8:1:1" in caplog.text
    assert (len(ds.train) - len(ds.validation), len(ds.validation), len(ds.test)) == (112, 14, 14)
    assert Counter(ex.label for ex in ds.test) == Counter(dict.fromkeys(EMOTIONS, 2))  # stratified
    assert {(ex.guid, ex.label) for ex in ds.train + ds.test} == set(want["all"])
    again = load_tumemo_dataset(tmp_path, split_seed=3)
    assert [ex.guid for ex in again.test] == [ex.guid for ex in ds.test] and again.validation == ds.validation
    other = load_tumemo_dataset(tmp_path, split_seed=4)
    assert [ex.guid for ex in other.test] != [ex.guid for ex in ds.test]


def test_label_file_variants_tabs_commas_no_header_and_png_images(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path, data_folder="all_data")
    path = tmp_path / "all_data_id_and_label.txt"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]  # no header
    path.write_text("\n".join(line.replace(" ", "\t" if i % 2 else ",") for i, line in enumerate(lines)) + "\n",
                    encoding="utf-8")
    guid = want["train"][0][0]
    image = tmp_path / "all_data" / f"{guid}.jpg"
    image.rename(image.with_suffix(".png"))  # a JPEG under a .png name still decodes
    ds = load_tumemo_dataset(tmp_path)
    assert [(ex.guid, ex.label) for ex in ds.train] == want["train"] + want["dev"]
    assert ds.train[0].image_path == image.with_suffix(".png")


def test_an_unknown_emotion_is_named_with_the_choices(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    set_line(tmp_path / "all_data_id_and_label.txt", 2, f"{want['train'][0][0]} Grumpy")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        "all_data_id_and_label.txt:2: unknown emotion 'Grumpy' -> use one of: Angry, Bored, Calm, Fear, Happy, "
        "Love, Sad",
        f"train.txt:1: id '{want['train'][0][0]}' is not a post of all_data_id_and_label.txt (or its line there is "
        "bad) -> fix the id, or remove the row",
    ]


def test_a_bad_line_of_a_post_in_no_split_raises_or_is_skipped(tmp_path, fixtures):
    fixtures.write_tumemo_fixture(tmp_path)
    with (tmp_path / "all_data_id_and_label.txt").open("a", encoding="utf-8") as fh:
        fh.write("999 Happy extra\n")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        "all_data_id_and_label.txt:114: expected '<id> <emotion>', found '999 Happy extra' -> fix the line"]
    ds = load_tumemo_dataset(tmp_path, on_error="skip")
    assert ds.report.skipped == {"malformed_row": 1} and len(ds.test) == 14


def test_a_repeated_post_in_the_label_file_is_named(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    with (tmp_path / "all_data_id_and_label.txt").open("a", encoding="utf-8") as fh:
        fh.write(f"{want['dev'][0][0]} Sad\n")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    assert [i.kind for i in exc.value.issues] == ["duplicate_guid"]
    assert "repeats the line at all_data_id_and_label.txt:" in str(exc.value)


def test_a_split_label_that_disagrees_with_the_label_file_is_named(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    guid, label = want["dev"][0]
    other = "sad" if label != "sad" else "calm"
    set_line(tmp_path / "dev.txt", 1, f"{guid} {other}")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    [issue] = exc.value.issues
    assert issue.location == "dev.txt:1" and issue.kind == "label_mismatch"
    assert issue.fix == "fix the split file or the label file"


def test_a_post_in_two_splits_names_both(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    with (tmp_path / "train.txt").open("a", encoding="utf-8") as fh:
        fh.write(f"{want['test'][1][0]}\n")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        f"train.txt:85: id {want['test'][1][0]} is also in the test split at test.txt:2 -> a post belongs to one "
        "split: remove it from the train file or the test file"]


def test_split_files_without_a_test_file_are_named(tmp_path, fixtures):
    fixtures.write_tumemo_fixture(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path, on_error="skip")
    [issue] = exc.value.issues
    assert issue.reason == "split files train.txt, dev.txt but no test file"
    assert "or none (the reader then draws an 8:1:1 split)" in issue.fix


def test_an_emotion_without_training_posts_is_named(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    keep = [guid for guid, label in want["train"] if label != "bored"]
    (tmp_path / "train.txt").write_text("\n".join(keep) + "\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    messages = [str(i) for i in exc.value.issues]
    assert messages[0].startswith("train.txt: class(es) ['bored'] of the label set ['angry', 'bored'")
    assert sum("label 'bored' has no row in the training file train.txt" in m for m in messages) == 4


def test_a_missing_text_file_is_named(tmp_path, fixtures):
    want = fixtures.write_tumemo_fixture(tmp_path)
    guid = want["test"][0][0]
    (tmp_path / "data" / f"{guid}.txt").unlink()
    with pytest.raises(DataValidationError) as exc:
        load_tumemo_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        f"test.txt:1: text file data/{guid}.txt is missing -> add it (may be empty) or remove the row"]


def test_a_missing_label_file_or_data_folder_is_file_not_found(tmp_path, fixtures):
    fixtures.write_tumemo_fixture(tmp_path)
    (tmp_path / "data").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="expected data/"):
        load_tumemo_dataset(tmp_path)
    (tmp_path / "all_data_id_and_label.txt").unlink()
    with pytest.raises(FileNotFoundError, match="all_data_id_and_label.txt"):
        load_tumemo_dataset(tmp_path)
