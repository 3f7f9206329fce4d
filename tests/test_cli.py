"""The CLI is a thin layer: exit codes, messages, and that it reaches the library."""

from __future__ import annotations

import json
import shutil

import pytest
from mmsent_testkit import FakeImageEncoder, FakeTextEncoder
from typer.testing import CliRunner

import mmsent.pipeline as pipeline
import mmsent.run_folder as run_folder
from mmsent.cli import app
from mmsent.data.sample import sample_dataset_path

runner = CliRunner()
FAST = ["--set", "training.hidden_dim=16", "--set", "training.epochs=2", "--set", "training.num_heads=2",
        "--set", "compare.seeds=0", "--set", "compare.models=concat,text_only,image_only"]


@pytest.fixture
def fakes(monkeypatch):
    encoders = (FakeImageEncoder(), FakeTextEncoder(max_length=8))
    monkeypatch.setattr(pipeline, "create_encoders_from_config", lambda cfg, **kw: encoders)
    monkeypatch.setattr(run_folder, "create_encoders_from_config", lambda cfg, **kw: encoders)
    return encoders


def test_validate_the_bundled_sample_prints_its_report():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["train"] == 360 and report["counts"]["test"] == 61
    assert sum(report["label_counts"].values()) == 360


def test_validate_lists_bad_rows_and_exits_1(tmp_path):
    root = tmp_path / "lab"
    shutil.copytree(sample_dataset_path(), root)
    first_guid = (root / "train.txt").read_text(encoding="utf-8").splitlines()[1].split(",")[0]
    (root / "data" / f"{first_guid}.txt").unlink()
    with (root / "train.txt").open("a", encoding="utf-8") as fh:
        fh.write("99999,ha\"ppy\n")  # a tag no class name can be
    result = runner.invoke(app, ["validate", "--data", str(root)])
    assert result.exit_code == 1
    assert f"{first_guid}.txt" in result.output and "ha\"ppy" in result.output
    skipped = runner.invoke(app, ["validate", "--data", str(root), "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert report["counts"]["train"] == 359  # 360 - the row without text; the unknown-label row is counted, not kept
    assert sum(report["skipped"].values()) == 2


def test_bad_override_is_a_usage_error():
    result = runner.invoke(app, ["run", "--set", "training.lrr=1"])
    assert result.exit_code == 2
    assert "training.lrr" in result.output


def test_run_then_predict(tmp_path, fakes):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--out", str(out), "-q", "--set", f"cache_dir={tmp_path / 'c'}"] + FAST)
    assert result.exit_code == 0, result.output
    assert "| concat |" in result.stdout or "| **concat** |" in result.stdout
    assert (out / "predictions.txt").is_file()
    again = tmp_path / "again.txt"
    result = runner.invoke(app, ["predict", str(out), "--out", str(again), "-q",
                                 "--set", f"cache_dir={tmp_path / 'c'}"])
    assert result.exit_code == 0, result.output
    assert again.read_text(encoding="utf-8") == (out / "predictions.txt").read_text(encoding="utf-8")


def test_run_ends_pointing_to_its_report(tmp_path, fakes):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--out", str(out), "-q", "--set", f"cache_dir={tmp_path / 'c'}"] + FAST)
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'} (open it in a browser)" in result.output


def test_a_path_that_looks_like_markup_is_printed_as_it_is(tmp_path):
    folder = tmp_path / "[red]x"  # Rich markup would swallow "[red]"
    folder.mkdir()
    result = runner.invoke(app, ["predict", str(folder)])
    assert result.exit_code == 1
    assert "[red]x" in result.output and "Traceback" not in result.output


def test_predict_without_a_run_explains(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path)])
    assert result.exit_code == 1
    assert "a run directory" in result.output and "Traceback" not in result.output


def test_predict_one_post_prints_its_label_and_probabilities(tiny_run):
    from mmsent.inference import RunPredictor

    lab = tiny_run.parent / "lab"
    image, text = lab / "data" / "130.jpg", "sad hate awful rain"
    result = runner.invoke(app, ["predict", str(tiny_run), "--image", str(image), "--text", text])
    assert result.exit_code == 0, result.output
    [expected] = RunPredictor(tiny_run).predict([image], [text], explain_inputs=False)
    assert result.stdout.startswith(expected["label"] + "  (positive ")
    assert f"{expected['probabilities']['neutral']:.3f}" in result.stdout
    alone = runner.invoke(app, ["predict", str(tiny_run), "--text", text])
    assert alone.exit_code == 2 and "--image and --text go together" in alone.output


def test_an_unknown_engine_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path), "--input", str(tmp_path / "m.csv"), "--engine", "spark"])
    assert result.exit_code == 2 and "--engine 'spark': use local or ray" in result.output


def _no_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run's models were loaded before --out was checked")

    monkeypatch.setattr(run_folder, "load_run_models", fail)
    monkeypatch.setattr(pipeline, "load_run_models", fail)


def test_predict_input_never_empties_a_text_file_given_as_out(tiny_run, tmp_path, monkeypatch):
    # defect 1, as reported: --out naming the post's own text file (no final newline) emptied it
    post = tmp_path / "post.txt"
    post.write_bytes(b"I love this sunny day")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text_path,image\nX,post.txt,{tiny_run.parent / 'lab' / 'data' / '130.jpg'}\n")
    _no_model_loading(monkeypatch)
    result = runner.invoke(app, ["predict", str(tiny_run), "--input", str(manifest), "--out", str(post), "-q"])
    assert result.exit_code == 1, result.output
    assert "post.txt" in result.output and "Traceback" not in result.output
    assert post.read_bytes() == b"I love this sunny day"


def test_predict_out_in_the_dataset_folder_is_refused_before_the_models_load(tiny_run, tmp_path, monkeypatch):
    lab = tmp_path / "lab"
    shutil.copytree(tiny_run.parent / "lab", lab)
    _no_model_loading(monkeypatch)
    result = runner.invoke(app, ["predict", str(tiny_run), "--data", str(lab), "--out", str(lab / "new.txt"), "-q"])
    assert result.exit_code == 1, result.output
    assert "inside the dataset folder" in result.output and not (lab / "new.txt").exists()
    labels = tmp_path / "train.txt"  # defect 3 from the command line: a label file outside the dataset
    labels.write_text("guid,tag\n1,positive\n")
    result = runner.invoke(app, ["predict", str(tiny_run), "--data", str(lab), "--out", str(labels), "-q"])
    assert result.exit_code == 1 and "not a prediction file written by mmsent" in result.output
    assert labels.read_text() == "guid,tag\n1,positive\n"


def test_version_prints_the_package_version_and_exits() -> None:
    from mmsent import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mmsent {__version__}"
