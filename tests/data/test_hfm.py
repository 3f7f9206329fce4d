"""The HFM sarcasm release (data.format=hfm): Python-literal lines, the last element as label, the cue-word filter,
the fixed dev split, the labelled test split, tolerated variants and every bad input named."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from mmsent.data.hfm import LABELS, has_cue_word, load_hfm_dataset, parse_line
from mmsent.data.lab_format import DataValidationError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_benchmark_fixtures.py"


@pytest.fixture(scope="module")
def fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_benchmark_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_release_reads_with_its_fixed_splits(tmp_path, fixtures):
    want = fixtures.write_hfm_fixture(tmp_path)
    ds = load_hfm_dataset(tmp_path)
    assert ds.label_order == LABELS == ("not_sarcastic", "sarcastic")
    assert [(ex.guid, ex.label) for ex in ds.train] == want["train"] + want["dev"]
    assert ds.validation == [guid for guid, _ in want["dev"]]
    # the last element is the label (the fixture's hashtag label, one before it, is always the other class)
    assert [(ex.guid, ex.label) for ex in ds.test] == want["test"]
    assert ds.report.counts == {"train": 30, "test": 6, "empty_text": 0, "val": 6, "cue_word_dropped": 3}
    ex = ds.test[0]
    assert ex.image_path == tmp_path / "dataset_image" / f"{ex.guid}.jpg" and ex.source == "text/test2.txt:1"
    assert ex.text.split()  # the inline text of the line


def test_posts_with_a_cue_word_are_dropped_as_the_release_loader_does(tmp_path, fixtures, caplog):
    want = fixtures.write_hfm_fixture(tmp_path)
    cue = {guid for guid, _ in want["cue"]}
    with caplog.at_level(logging.INFO, logger="mmsent.data"):
        ds = load_hfm_dataset(tmp_path)
    assert not cue & {ex.guid for ex in ds.train + ds.test}
    assert "{'train': 1, 'dev': 1, 'test': 1}" in caplog.text
    kept = load_hfm_dataset(tmp_path, drop_cue_words=False)
    assert cue <= {ex.guid for ex in kept.train + kept.test}
    assert (len(kept.train), len(kept.validation), len(kept.test)) == (32, 7, 7)


@pytest.mark.parametrize(("line", "split", "expected"), [
    ("['1', 'a b', 1]", "train", ("1", "a b", "sarcastic")),
    ("[2, 'a', 0]", "train", ("2", "a", "not_sarcastic")),
    ("['3', 'a', 1, 0]", "test", ("3", "a", "not_sarcastic")),  # hashtag label 1, annotator 0: the last wins
    ("['4', 'a', '1']", "dev", ("4", "a", "sarcastic")),
])
def test_parse_line_takes_the_last_element_as_the_label(line, split, expected):
    assert parse_line(line, split) == expected


@pytest.mark.parametrize(("line", "split", "message"), [
    ("['1', 'a', 1, 0]", "train", "expected a list"),
    ("['1', 'a', 2]", "train", "is not 0 (not sarcastic) or 1 (sarcastic)"),
    ("['1', 'a'", "train", "not a Python list literal"),
    ("__import__('os').system('false')", "train", "not a Python list literal"),  # never run
    ("['1', 5, 1]", "test", "the text a string"),
])
def test_parse_line_says_what_is_wrong(line, split, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_line(line, split)


def test_cue_words_are_whole_words():
    assert has_cue_word("so much irony here") and has_cue_word("see <url>")
    assert not has_cue_word("ironically fine") and not has_cue_word("#sarcasm")


def test_variants_files_at_the_root_old_names_and_a_nested_image_folder(tmp_path, fixtures):
    want = fixtures.write_hfm_fixture(tmp_path)
    (tmp_path / "text" / "valid2.txt").rename(tmp_path / "valid.txt")
    (tmp_path / "text" / "test2.txt").rename(tmp_path / "test.txt")
    (tmp_path / "text" / "train.txt").rename(tmp_path / "train.txt")
    (tmp_path / "text").rmdir()
    nested = tmp_path / "dataset_image" / "dataset_image"
    shutil.move(str(tmp_path / "dataset_image"), str(tmp_path / "tmp"))
    nested.parent.mkdir()
    shutil.move(str(tmp_path / "tmp"), str(nested))
    ds = load_hfm_dataset(tmp_path)
    assert ds.validation == [guid for guid, _ in want["dev"]] and len(ds.test) == 6
    assert ds.test[0].image_path.parent == nested and ds.test[0].source == "test.txt:1"


def test_without_valid2_the_run_draws_validation_from_train(tmp_path, fixtures):
    fixtures.write_hfm_fixture(tmp_path)
    (tmp_path / "text" / "valid2.txt").unlink()
    ds = load_hfm_dataset(tmp_path)
    assert ds.validation == [] and len(ds.train) == 24


@pytest.mark.parametrize("name", ["train.txt", "test2.txt"])
def test_a_missing_train_or_test_file_is_named(tmp_path, fixtures, name):
    fixtures.write_hfm_fixture(tmp_path)
    (tmp_path / "text" / name).unlink()
    with pytest.raises(DataValidationError) as exc:
        load_hfm_dataset(tmp_path, on_error="skip")
    [issue] = exc.value.issues
    assert issue.kind == "missing_split_file" and name in issue.reason
    assert issue.fix == "put the release's text files in text/ beside dataset_image/"


def test_a_missing_image_folder_is_file_not_found(tmp_path, fixtures):
    fixtures.write_hfm_fixture(tmp_path)
    shutil.rmtree(tmp_path / "dataset_image")
    with pytest.raises(FileNotFoundError, match="dataset_image/"):
        load_hfm_dataset(tmp_path)


def test_a_bad_line_is_named_and_skippable(tmp_path, fixtures, caplog):
    fixtures.write_hfm_fixture(tmp_path)
    set_line(tmp_path / "text" / "train.txt", 3, "['12', 'text', 7]")
    with pytest.raises(DataValidationError) as exc:
        load_hfm_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        "text/train.txt:3: label 7 is not 0 (not sarcastic) or 1 (sarcastic) -> fix the line or remove it"]
    with caplog.at_level(logging.WARNING, logger="mmsent.data"):
        ds = load_hfm_dataset(tmp_path, on_error="skip")
    assert len(ds.train) == 29 and ds.report.skipped == {"malformed_row": 1}
    assert "skipping row text/train.txt:3" in caplog.text


def test_an_id_in_two_splits_names_both_lines(tmp_path, fixtures):
    want = fixtures.write_hfm_fixture(tmp_path)
    test_id = want["test"][0][0]
    set_line(tmp_path / "text" / "train.txt", 1, repr([test_id, "some words", 0]))
    with pytest.raises(DataValidationError) as exc:
        load_hfm_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        f"text/train.txt:1: id {test_id} is also in the test split at text/test2.txt:1 -> a post belongs to one "
        "split: remove it from the train file or the test file"]


def test_a_class_without_training_rows_is_named(tmp_path, fixtures):
    fixtures.write_hfm_fixture(tmp_path, cue_rows=False)
    path = tmp_path / "text" / "train.txt"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.endswith(", 1]")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as exc:
        load_hfm_dataset(tmp_path)
    assert str(exc.value.issues[0]) == (
        "text/train.txt: class(es) ['sarcastic'] of the label set ['not_sarcastic', 'sarcastic'] have no training "
        "row -> add training rows of them, or drop them from the label set")


def test_a_missing_image_is_named(tmp_path, fixtures):
    want = fixtures.write_hfm_fixture(tmp_path)
    guid = want["dev"][1][0]
    (tmp_path / "dataset_image" / f"{guid}.jpg").unlink()
    with pytest.raises(DataValidationError) as exc:
        load_hfm_dataset(tmp_path)
    assert [str(i) for i in exc.value.issues] == [
        f"text/valid2.txt:2: image dataset_image/{guid}.jpg is missing -> add it or remove the row"]
