"""The HTML report of a tiny run: written by the pipeline, self-contained, rebuildable from the CLI."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mmsent.cli import app
from mmsent.report import build_report
from mmsent.report.figures import calibration, confusion_matrix
from mmsent.report.gallery import confident_errors
from mmsent.report.run_data import load_run_data

FIGURES = ("comparison", "learning_curves", "confusion", "per_class", "calibration")


def test_the_pipeline_writes_a_self_contained_report(tiny_run):
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    for name in FIGURES:
        png = tiny_run / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert html.count("data:image/png;base64,") >= len(FIGURES)
    # Nothing is fetched: no external scripts, stylesheets or images.
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html)
    assert "<script" not in html
    for model in ("dual_stream", "gated", "text_only"):
        assert model in html
    assert "Most confident validation errors" in html


def test_gallery_holds_the_most_confident_errors_with_explanations(tiny_run):
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    data = load_run_data(tiny_run)
    probs = data.validation["dual_stream"].ensemble
    wrong = int((probs.argmax(1) != data.gold).sum())
    cards = html.count("<div class='card'>")
    assert wrong > 0, "the tiny run must make errors for the gallery to show"
    assert cards == min(12, wrong)
    assert html.count("data:image/jpeg;base64,") == 2 * cards  # thumbnail + heat-map per card
    assert "driven by:" in html and "class=\"tok\"" in html
    assert "explanations unavailable" not in html


def test_cli_rebuilds_the_report_without_explanations(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    (run / "report.html").unlink()
    shutil.rmtree(run / "report")
    result = CliRunner().invoke(app, ["report", str(run), "--no-explain", "--max-errors", "2"])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text(encoding="utf-8")
    assert (run / "report" / "calibration.png").is_file()
    assert "driven by:" not in html and html.count("<div class='card'>") <= 2


def test_report_survives_missing_pieces(tiny_run, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(tiny_run, run)
    (run / "validation_predictions.csv").unlink()
    html = build_report(run, explain=False).read_text(encoding="utf-8")
    assert "no validation_predictions.csv" in html and "Model comparison" in html
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nothing-here")


def test_confident_errors_and_calibration_numbers():
    gold = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    assert confident_errors(gold, probs, 5) == [1, 3]
    assert confusion_matrix(gold, probs.argmax(1)).tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    cal = calibration(probs, gold, bins=2)
    assert cal["count"] == [1, 3]
    # bin 1: confidences .9 .8 .6, accuracy 2/3; bin 0: confidence .5, accuracy 0
    assert cal["ece"] == pytest.approx(0.25 * 0.5 + 0.75 * abs((0.9 + 0.8 + 0.6) / 3 - 2 / 3))


def test_the_gallery_lists_the_wrong_rows_most_confident_first():
    from mmsent.report.gallery import confident_errors

    gold = np.array([1, 1, 0, 2])
    probs = np.array([[0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.5, 0.45, 0.05], [0.1, 0.1, 0.8]])
    assert confident_errors(gold, probs, 5) == [1, 0]  # argmax: both neutral rows wrong, the surer one first
    assert confident_errors(gold, probs, 1) == [1]


def test_tampered_guids_inject_nothing_and_read_nothing_outside_the_data(tiny_run, tmp_path):
    run = tmp_path / "tampered"
    shutil.copytree(tiny_run, run)
    secret = tmp_path / "secret.jpg"
    shutil.copy(tiny_run.parent / "lab" / "data" / "100.jpg", secret)  # a readable image outside the dataset
    csv_path = run / "validation_predictions.csv"
    header, *rows = csv_path.read_text(encoding="utf-8").splitlines()
    guids = sorted({r.split(",")[0] for r in rows})
    # every guid made hostile: half inject an attribute, half point outside the dataset's data/ folder
    hostile = {g: (f'{g}" onerror="alert(1)' if i % 2 else "../../../" + str(secret.with_suffix("")))
               for i, g in enumerate(guids)}
    rows = [",".join([hostile[r.split(",")[0]], *r.split(",")[1:]]) for r in rows]
    csv_path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    html = build_report(run, explain=False, max_errors=50).read_text(encoding="utf-8")
    assert html.count("<div class='card'>") > 0
    assert 'onerror="alert(1)"' not in html
    assert "guid is not a plain file name; its files are not read" in html
    assert "data:image/jpeg;base64," not in html  # no card read an image: not the secret, not any other
