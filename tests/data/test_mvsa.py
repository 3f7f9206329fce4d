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
