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


def test_a_hand_labelled_guid_tag_file_is_never_overwritten(tmp_path):
    # defect 3: a file was taken for a prediction file because its first line is guid,tag; a label file has it too
    from mmsent.predict import prediction_path

    run_dir, data = tmp_path / "run", tmp_path / "data"
    (run_dir / "models").mkdir(parents=True)
    data.mkdir()
    labels = tmp_path / "elsewhere" / "train.txt"
    labels.parent.mkdir()
    labels.write_text("guid,tag\n1,positive\n2,negative\n")
    with pytest.raises(ValueError, match=r"train\.txt, which is not a prediction file written by mmsent.*"
                                         r"delete it yourself"):
        prediction_path(labels, run_dir, data)
    with pytest.raises(ValueError, match=r"train\.txt.*not a prediction file written by mmsent"):
        write_predictions(labels, _examples(["1"]), np.ones((1, 3)) / 3)
    assert labels.read_text() == "guid,tag\n1,positive\n2,negative\n"
    assert not (labels.parent / "train_proba.csv").exists()
    # a companion (probabilities, skipped rows) the user owns is as safe as the file itself
    mine = tmp_path / "mine_proba.csv"
    mine.write_text("guid,tag,p_positive,p_neutral,p_negative\n")
    with pytest.raises(ValueError, match=r"mine_proba\.csv"):
        write_predictions(tmp_path / "mine.txt", _examples(["1"]), np.ones((1, 3)) / 3)
    assert not (tmp_path / "mine.txt").exists()


def test_a_prediction_file_is_recognised_by_its_marker_not_its_header(tmp_path):
    from mmsent.predict import prediction_path

    run_dir, data = tmp_path / "run", tmp_path / "data"
    (run_dir / "models").mkdir(parents=True)
    data.mkdir()
    out = tmp_path / "p.txt"
    write_predictions(out, _examples(["1", "2"]), np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))
    assert out.read_text() == "guid,tag\n1,positive\n2,negative\n"  # the lab format, byte for byte
    assert (tmp_path / "p.txt.mmsent.json").is_file()
    assert prediction_path(out, run_dir, data) == out  # ours, unchanged: may be replaced
    write_predictions(out, _examples(["1"]), np.array([[0.1, 0.2, 0.7]]))
    assert read_predictions(out) == [("1", "negative")]
    # replaced by the user's own labels (the marker left behind): theirs now
    out.write_text("guid,tag\n1,neutral\n")
    with pytest.raises(ValueError, match=r"p\.txt, which is not a prediction file written by mmsent"):
        prediction_path(out, run_dir, data)
    with pytest.raises(ValueError, match=r"p\.txt"):
        write_predictions(out, _examples(["1"]), np.ones((1, 3)) / 3)
    assert out.read_text() == "guid,tag\n1,neutral\n"


def test_one_writer_per_prediction_file(tmp_path):
    from mmsent.io import output_lock

    out = tmp_path / "p.txt"
    with output_lock(out), pytest.raises(ValueError, match=r"p\.txt.*another mmsent process"):
        write_predictions(out, _examples(["1"]), np.ones((1, 3)) / 3)
    assert not out.exists()
    write_predictions(out, _examples(["1"]), np.ones((1, 3)) / 3)  # the lock is free again
    assert out.is_file()
