"""Reports of runs over other classes than the three sentiment ones: 7 emotions, 2 sarcasm classes, up to ~20."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from mmsent_runkit import EMOTIONS, SARCASM

from mmsent.labels import DEFAULT_LABELS, LabelSet
from mmsent.report import build_report
from mmsent.report.figures import confusion_matrices, confusion_matrix, matrix_layout, per_class_bars
from mmsent.report.run_data import load_run_data, read_validation_predictions


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_a_seven_class_report_draws_every_class_and_scores_the_test_split(seven_class_run, tmp_path):
    run = shutil.copytree(seven_class_run, tmp_path / "run")
    data = load_run_data(run)
    assert data.labels == LabelSet(EMOTIONS)
    assert data.validation["dual_stream"].probs.shape == (2, 21, 7)
    assert sorted(set(data.gold.tolist())) == list(range(7))

    html = build_report(run, max_errors=4).read_text(encoding="utf-8")
    for name in ("confusion", "per_class", "test_confusion", "calibration"):
        assert png_size((run / "report" / f"{name}.png").read_bytes())[0] > 0, name
    assert "Not shown" not in html  # no figure failed
    test = json.loads((run / "test_metrics.json").read_text(encoding="utf-8"))
    assert "<h2>Test split</h2>" in html
    assert (f"on {test['n']} labelled test rows that no model trained or was chosen on: accuracy "
            f"{test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}, weighted-F1 {test['weighted_f1']:.3f}.") in html
    assert "positive class" not in html  # the run named no positive class
    for name in EMOTIONS:  # the validation and the test per-class tables
        assert html.count(f"<td>{name}</td>") == 2, name
    # the gallery names its rows' classes and keeps a row of seven probabilities short
    assert html.count("<div class='card'>") > 0 and "top 5 of 7 classes: " in html
    assert "explanations unavailable" not in html
    assert "driven by:" in html


def test_a_two_class_report_gives_the_positive_class_f1(two_class_run, tmp_path):
    run = shutil.copytree(two_class_run, tmp_path / "run")
    html = build_report(run, explain=False).read_text(encoding="utf-8")
    test = json.loads((run / "test_metrics.json").read_text(encoding="utf-8"))
    assert f"F1 of the positive class (sarcastic) {test['positive_f1']:.3f}" in html
    assert (run / "report" / "test_confusion.png").is_file() and "Not shown" not in html
    for name in SARCASM:
        assert html.count(f"<td>{name}</td>") == 2
    assert "not_sarcastic 0." in html and "top " not in html  # both probabilities in the cards, in class order


def test_a_report_without_test_metrics_has_no_test_section(seven_class_run, tmp_path):
    run = shutil.copytree(seven_class_run, tmp_path / "run")
    (run / "test_metrics.json").unlink()
    html = build_report(run, explain=False).read_text(encoding="utf-8")
    assert "Test split" not in html and not (run / "report" / "test_confusion.png").exists()


def test_held_out_probabilities_are_read_by_the_runs_labels(tmp_path):
    path = tmp_path / "validation_predictions.csv"
    path.write_text("guid,gold,model,fold,seed,p_no,p_yes\n1,yes,concat,0,0,0.2,0.8\n2,no,concat,0,0,0.6,0.4\n",
                    encoding="utf-8")
    guids, gold, validation = read_validation_predictions(path, LabelSet(("no", "yes")))
    assert guids == ["1", "2"] and gold.tolist() == [1, 0]
    assert validation["concat"].ensemble.tolist() == [[0.2, 0.8], [0.6, 0.4]]
    with pytest.raises(ValueError, match="no column p_maybe"):
        read_validation_predictions(path, LabelSet(("no", "yes", "maybe")))
    # a run from before the label set was saved: the three sentiment classes
    (tmp_path / "metrics.json").write_text("{}", encoding="utf-8")
    path.unlink()
    assert load_run_data(tmp_path).labels == DEFAULT_LABELS


def test_confusion_matrices_and_per_class_bars_scale_with_the_classes():
    three = matrix_layout(DEFAULT_LABELS, 120)
    assert (three.side, three.tick_size, three.count_size, three.rotate) == (3.3, "x-small", "small", False)
    seven = matrix_layout(EMOTIONS, 120)
    assert seven.side > three.side and seven.count_size == "small" and not seven.rotate
    many = [f"a_rather_long_class_name_{i}" for i in range(20)]
    twenty = matrix_layout(many, 120)
    assert twenty.side > seven.side and twenty.rotate and twenty.count_size is not None
    assert matrix_layout(many, 10**12).count_size is None  # thirteen digits do not fit a cell: counts left out

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 20, 200)
    matrices = {f"design {i}": confusion_matrix(gold, rng.integers(0, 20, 200), 20) for i in range(3)}
    width, height = png_size(confusion_matrices(matrices, many))
    assert height > width  # twenty classes: one large panel per row, not three squeezed side by side
    per_class = {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for n in many}
    assert png_size(per_class_bars(per_class, "t", many))[0] > png_size(per_class_bars(
        {n: per_class[n] for n in many[:3]}, "t"))[0]
