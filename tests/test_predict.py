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


def test_predict_out_never_overwrites_what_is_not_a_prediction_file(tmp_path):
    from mmsent.predict import prediction_path

    run_dir, data = tmp_path / "run", tmp_path / "data"
    (run_dir / "models" / "concat_seed0").mkdir(parents=True)
    data.mkdir()
    (data / "test_without_label.txt").write_text("guid,tag\n1,null\n")
    (run_dir / "config.yaml").write_text("data: {}\n")
    with pytest.raises(ValueError, match="inside the dataset folder"):
        prediction_path(data / "test_without_label.txt", run_dir, data)
    with pytest.raises(ValueError, match="inside the run's models"):
        prediction_path(run_dir / "models" / "concat_seed0" / "weights.safetensors", run_dir, data)
    with pytest.raises(ValueError, match="would overwrite .*config.yaml, which is not a prediction file"):
        prediction_path(run_dir / "config.yaml", run_dir, data)
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match="notes_proba.csv|notes.txt"):
        (tmp_path / "notes_proba.csv").write_text("precious")
        prediction_path(tmp_path / "notes.txt", run_dir, data)
    # a folder gets predictions.txt; an earlier prediction file may be replaced
    assert prediction_path(tmp_path, run_dir, data) == tmp_path / "predictions.txt"
    write_predictions(tmp_path / "p.txt", _examples(["1"]), np.ones((1, 3)) / 3)
    assert prediction_path(tmp_path / "p.txt", run_dir, data) == tmp_path / "p.txt"
