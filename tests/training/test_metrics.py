"""Metrics against values worked out by hand."""

from __future__ import annotations

import pytest

from mmsent.training import compute_metrics, format_metrics

Y_TRUE = [0, 0, 0, 0, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 2, 0, 2, 2, 1]
# positive: tp 3 fp 1 fn 1 -> P = R = F1 = 3/4; neutral: tp 0 -> 0; negative: tp 2 fp 1 fn 1 -> 2/3


def test_hand_computed_example() -> None:
    m = compute_metrics(Y_TRUE, Y_PRED)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["macro_f1"] == pytest.approx((3 / 4 + 0 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((4 * 3 / 4 + 0 + 3 * 2 / 3) / 8)
    assert m["per_class"]["positive"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4})
    assert m["per_class"]["neutral"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["per_class"]["negative"]["f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[3, 0, 1], [1, 0, 0], [0, 1, 2]]
    assert m["labels"] == ["positive", "neutral", "negative"]


def test_label_names_equal_indices() -> None:
    names = ["positive", "neutral", "negative"]
    by_name = compute_metrics([names[i] for i in Y_TRUE], [names[i] for i in Y_PRED])
    assert by_name == compute_metrics(Y_TRUE, Y_PRED)


def test_absent_class_still_counts_in_macro() -> None:
    m = compute_metrics([0, 0, 2], [0, 0, 2])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == pytest.approx(2 / 3)


def test_format_and_errors() -> None:
    line = format_metrics(compute_metrics(Y_TRUE, Y_PRED))
    assert "acc 0.625" in line and "macro-F1 0.472" in line and "neutral 0.00" in line
    with pytest.raises(ValueError):
        compute_metrics([0, 1], [0])
    with pytest.raises(ValueError):
        compute_metrics([0, 3], [0, 1])
