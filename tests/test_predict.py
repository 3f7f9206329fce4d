"""Prediction files: the input's guid,tag layout, input order, probabilities beside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsent.data.records import Example
from mmsent.predict import read_predictions, write_predictions


def _examples(guids):
    return [Example(g, None, "t", "utf-8", Path(f"{g}.jpg"), Path(f"{g}.txt")) for g in guids]


def test_tags_follow_argmax_and_input_order(tmp_path):
    probs = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.2, 0.5, 0.3]])
    proba_path = write_predictions(tmp_path / "pred.txt", _examples(["30", "4", "17"]), probs)
    text = (tmp_path / "pred.txt").read_text(encoding="utf-8")
    assert text == "guid,tag\n30,negative\n4,positive\n17,neutral\n"
    assert read_predictions(tmp_path / "pred.txt") == [("30", "negative"), ("4", "positive"), ("17", "neutral")]
    lines = proba_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "guid,tag,p_positive,p_neutral,p_negative"
    assert lines[1] == "30,negative,0.100000,0.200000,0.700000"


def test_shape_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_predictions(tmp_path / "p.txt", _examples(["1", "2"]), np.ones((3, 3)) / 3)


def test_reading_a_file_without_header_fails(tmp_path):
    (tmp_path / "p.txt").write_text("1,positive\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        read_predictions(tmp_path / "p.txt")
