"""MVSA releases: the fusion rule's every outcome on fixtures written from the published format description."""

from __future__ import annotations

from collections import Counter

import pytest
from mvsa_fixtures import write_release

from mmsent.config import load_config
from mmsent.data.lab_format import DataValidationError
from mmsent.data.mvsa import fuse, load_mvsa_dataset, majority


@pytest.mark.parametrize("variant", ["single", "multiple"])
def test_every_outcome_of_the_rule_is_applied_and_counted(tmp_path, variant):
    expected = write_release(tmp_path, variant)
    dataset = load_mvsa_dataset(tmp_path, variant)
    assert {ex.guid: ex.label for ex in dataset.train} == {g: lab for g, (lab, _) in expected.items() if lab}
    assert dataset.test == []
    assert dataset.train[0].source == "labelResultAll.txt:2"  # where its label line is
    counts = Counter(outcome for _, outcome in expected.values())
    assert dataset.report.label_fusion == {k: counts.get(k, 0) for k in ("agree", "one_neutral", "conflict",
                                                                         "no_majority")}
    assert not dataset.report.warnings  # no "missing test file" noise


def test_the_rule_itself():
    assert majority(["positive", "neutral", "positive"]) == "positive"
    assert majority(["positive", "neutral", "negative"]) is None
    assert fuse(["neutral"], ["negative"]) == ("negative", "one_neutral")
    assert fuse(["positive"], ["negative"]) == (None, "conflict")


def test_malformed_lines_are_named(tmp_path):
    write_release(tmp_path, "multiple")
    path = tmp_path / "labelResultAll.txt"
    path.write_text(path.read_text() + "19\tpositive,positive\tpositive\n"
                    "20\tgood,bad\tneutral,neutral\tneutral,neutral\n")
    with pytest.raises(DataValidationError, match=r"labelResultAll.txt:10: expected an id and 3 text,image"):
        load_mvsa_dataset(tmp_path, "multiple")
    skipped = load_mvsa_dataset(tmp_path, "multiple", on_error="skip")
    assert skipped.report.skipped == {"malformed_row": 1, "unknown_label": 1}


def test_the_run_reads_a_release_through_data_format(tmp_path):
    from mmsent.pipeline import data_report, load_dataset

    write_release(tmp_path, "single")
    cfg = load_config(overrides=[f"data.root={tmp_path}", "data.format=mvsa-single"])
    report = data_report(load_dataset(cfg))
    assert report["label_fusion"] == {"agree": 3, "one_neutral": 2, "conflict": 2, "no_majority": 0}
    assert report["counts"]["train"] == 5


def test_each_bad_line_is_one_named_issue_and_reading_goes_on(tmp_path):
    from mmsent.data.mvsa import read_label_file
    from mmsent.data.records import DataIssue

    path = tmp_path / "labelResultAll.txt"
    path.write_text("ID\ttext,image\n"
                    "1\tpositive,positive\n"
                    "2\tpositive\n"
                    "3\tpositive,happy\n"
                    "1\tnegative,negative\n"
                    "4\tNeutral , Negative\n"
                    "5\tnegative,neutral\n"
                    "6\tpositive,negative\n", encoding="utf-8")
    rows, outcomes, issues = read_label_file(path, 1)
    assert [(r.guid, r.label, r.file, r.line) for r in rows] == [
        ("1", "positive", "labelResultAll.txt", 2), ("4", "negative", "labelResultAll.txt", 6),
        ("5", "negative", "labelResultAll.txt", 7)]
    assert outcomes == {"agree": 1, "one_neutral": 2, "conflict": 1}
    assert issues == [
        DataIssue("labelResultAll.txt:3", "expected an id and 1 text,image label pair(s) separated by tabs, found "
                  "'2\\tpositive'", "fix the line or remove it", guid="2", kind="malformed_row"),
        DataIssue("labelResultAll.txt:4", "unknown label 'happy'", "use one of: positive, neutral, negative", guid="3",
                  kind="unknown_label"),
        DataIssue("labelResultAll.txt:5", "duplicate id 1", "remove the repeated line", guid="1",
                  kind="duplicate_guid"),
    ]


def test_a_label_file_without_header_or_lines(tmp_path):
    from mmsent.data.mvsa import read_label_file

    path = tmp_path / "labelResultAll.txt"
    path.write_text("7\tneutral,neutral\n", encoding="utf-8")
    assert [r.guid for r in read_label_file(path, 1)[0]] == ["7"]  # no header: the first line is a post
    path.write_text("\n \n", encoding="utf-8")
    assert read_label_file(path, 1) == ([], Counter(), [])


def test_an_undecodable_label_file_is_named(tmp_path):
    from mmsent.data.mvsa import read_label_file
    from mmsent.data.text import TextDecodeError

    path = tmp_path / "labelResultAll.txt"
    path.write_bytes(b"ID\x00\ttext,image\n")
    with pytest.raises(TextDecodeError, match="^labelResultAll.txt: contains NUL bytes"):
        read_label_file(path, 1)


def test_loading_passes_its_options_on_and_counts_each_skip(tmp_path):
    write_release(tmp_path, "single")
    (tmp_path / "data" / "1.jpg").write_bytes(b"not an image")  # checked by default
    with pytest.raises(DataValidationError, match="data/1.jpg: not an image"):
        load_mvsa_dataset(tmp_path, "single")
    assert len(load_mvsa_dataset(tmp_path, "single", check_images=False).train) == 5
    skipped = load_mvsa_dataset(tmp_path, "single", on_error="skip", max_image_pixels=100)
    assert skipped.train == [] and skipped.report.skipped == {"bad_image": 1, "image_too_large": 4}
    path = tmp_path / "labelResultAll.txt"
    path.write_text(path.read_text() + "8\tpositive\n9\tnegative\n")
    assert load_mvsa_dataset(tmp_path, "single", on_error="skip", check_images=False).report.skipped == {
        "malformed_row": 2}


def test_a_folder_without_the_label_file_says_what_a_release_holds(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'labelResultAll.txt'} not found: an MVSA release "
                                                "holds labelResultAll.txt beside data/$"):
        load_mvsa_dataset(tmp_path, "single")


def test_a_tie_between_two_labels_has_no_majority():
    assert majority(["positive", "negative"]) is None
    assert majority(["positive", "negative", "negative", "positive"]) is None
    assert majority(["neutral"]) == "neutral"
