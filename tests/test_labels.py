"""The label set: read from training labels, saved as id2label/label2id, checked when loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmsent.labels import DEFAULT_LABELS, LABELS, LabelError, LabelSet, as_label_set
from mmsent.training.metrics import compute_metrics


def test_the_default_keeps_the_lab_order() -> None:
    assert DEFAULT_LABELS.names == LABELS == ("positive", "neutral", "negative")
    assert as_label_set(None) is DEFAULT_LABELS
    assert as_label_set(["a", "b"]) == LabelSet(("a", "b"))


def test_training_labels_are_sorted_unless_an_order_is_fixed() -> None:
    seen = ["sad", "happy", "angry", "happy"]
    assert LabelSet.from_training(seen).names == ("angry", "happy", "sad")
    assert LabelSet.from_training(seen, order=["sad", "happy", "angry"]).names == ("sad", "happy", "angry")


def test_a_training_label_outside_the_fixed_order_is_named() -> None:
    with pytest.raises(LabelError, match=r"\['fear'\] outside the label set"):
        LabelSet.from_training(["sad", "fear"], order=["sad", "happy"])


def test_a_class_with_no_training_row_is_named() -> None:
    with pytest.raises(LabelError, match=r"\['happy'\].*no training row"):
        LabelSet.from_training(["sad", "sad"], order=["sad", "happy"])


@pytest.mark.parametrize("names, match", [
    (("a",), "2 to"),
    (("a", "a"), "repeats"),
    (("a", "b,c"), "comma"),
    (("a", " b"), "spaces"),
    (("a", ""), "non-empty"),
    (("a", "null"), "unlabelled"),
    (("a", 3), "non-empty string"),
])
def test_unusable_label_sets_are_refused(names: tuple, match: str) -> None:
    with pytest.raises(LabelError, match=match):
        LabelSet(names)


def test_id2label_round_trips_through_json_with_string_keys() -> None:
    labels = LabelSet(("not_sarcastic", "sarcastic"))
    saved = json.loads(json.dumps(labels.to_json()))
    assert saved == {"id2label": {"0": "not_sarcastic", "1": "sarcastic"},
                     "label2id": {"not_sarcastic": 0, "sarcastic": 1}}
    assert LabelSet.from_json(saved, "config.json") == labels
    assert labels.id2label == {0: "not_sarcastic", 1: "sarcastic"}


@pytest.mark.parametrize("data, match", [
    ({}, "missing"),
    ({"id2label": {"0": "a", "2": "b"}}, "0..1"),
    ({"id2label": {"x": "a"}}, "class indices"),
    ({"id2label": {"0": "a", "1": "b"}, "label2id": {"a": 1, "b": 0}}, "disagrees"),
])
def test_a_damaged_id2label_is_named(data: dict, match: str) -> None:
    with pytest.raises(LabelError, match=rf"model.json: .*{match}"):
        LabelSet.from_json(data, "model.json")


def test_require_same_names_both_sides() -> None:
    with pytest.raises(LabelError, match=r"the model has labels \['a', 'b'\] but the data has \['b', 'a'\]"):
        LabelSet(("b", "a")).require_same(LabelSet(("a", "b")), "the data", "the model")
    LabelSet(("a", "b")).require_same(LabelSet(("a", "b")), "x", "y")


def test_index_outside_the_set_is_a_clear_error() -> None:
    with pytest.raises(LabelError, match="'calm' is not one of"):
        LabelSet(("happy", "sad")).index("calm")


def test_metrics_follow_any_label_set_and_equal_sklearn() -> None:
    labels = LabelSet(("angry", "bored", "calm", "fear", "happy", "love", "sad"))
    rng = np.random.default_rng(0)
    yt, yp = rng.integers(0, 7, 200), rng.integers(0, 7, 200)
    m = compute_metrics(yt, yp, labels)
    assert m["labels"] == list(labels)
    assert list(m["per_class"]) == list(labels)
    assert np.array(m["confusion_matrix"]).shape == (7, 7)
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(yt, yp, average="weighted"))
    by_name = compute_metrics([labels[i] for i in yt], [labels[i] for i in yp], labels)
    assert by_name["macro_f1"] == m["macro_f1"]


def test_a_binary_task_reports_its_positive_class_f1() -> None:
    labels = LabelSet(("not_sarcastic", "sarcastic"))
    yt, yp = [0, 1, 1, 0, 1], [0, 1, 0, 0, 1]
    m = compute_metrics(yt, yp, labels, positive_label="sarcastic")
    assert m["positive_f1"] == pytest.approx(f1_score(yt, yp, pos_label=1))
    with pytest.raises(LabelError):
        compute_metrics(yt, yp, labels, positive_label="positive")


def test_indices_beyond_the_set_are_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0..1"):
        compute_metrics([0, 2], [0, 1], LabelSet(("a", "b")))
