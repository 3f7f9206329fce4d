"""Metrics against values worked out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("convert", [
    torch.tensor, np.array, lambda y: np.array(y, dtype=object),
    lambda y: np.array([["positive", "neutral", "negative"][i] for i in y], dtype=object),
    lambda y: np.array([["positive", "neutral", "negative"][i].encode() for i in y]),
], ids=["tensor", "int-array", "object-ints", "object-names", "bytes-names"])
def test_every_input_form_gives_the_same_metrics(convert) -> None:
    assert compute_metrics(convert(Y_TRUE), convert(Y_PRED)) == compute_metrics(Y_TRUE, Y_PRED)


def test_errors_name_the_argument_and_the_problem() -> None:
    with pytest.raises(ValueError, match=r"^y_true holds class indices outside 0\.\.2$"):
        compute_metrics([0, 3], [0, 1])
    with pytest.raises(ValueError, match=r"^y_pred holds class indices outside 0\.\.2$"):
        compute_metrics([0, 1], [-1, 1])
    with pytest.raises(ValueError, match=r"^y_true has 2 entries, y_pred 1$"):
        compute_metrics([0, 1], [0])
    with pytest.raises(ValueError, match=r"^cannot compute metrics on zero examples$"):
        compute_metrics([], [])
    assert compute_metrics([2], [2])["accuracy"] == 1.0  # one example is enough


def test_classes_absent_from_both_sides_score_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns when zero_division is left at "warn"
        m = compute_metrics([0, 0, 2], [0, 0, 2])
    assert m["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert m["weighted_f1"] == 1.0


def test_format_is_one_exact_line() -> None:
    assert format_metrics(compute_metrics(Y_TRUE, Y_PRED)) == (
        "acc 0.625 | macro-F1 0.472 | weighted-F1 0.625 | F1 positive 0.75 neutral 0.00 negative 0.67")
    assert format_metrics({"accuracy": 0.5, "macro_f1": 0.25, "weighted_f1": 0.4}) == (
        "acc 0.500 | macro-F1 0.250 | weighted-F1 0.400")
