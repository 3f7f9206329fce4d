"""mmsent export: a self-describing folder that a fresh process loads to the run's exact predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmsent.cli import app
from mmsent.export import export_run
from mmsent.inference import RunPredictor


def test_an_exported_folder_reproduces_the_runs_predictions_in_a_fresh_process(tiny_run, tmp_path):
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["export", str(tiny_run), str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "checksums.sha256", "comparison.md", "config.yaml", "data_report.json", "metrics.json", "models",
         "predictor.json"])
    predictor = json.loads((out / "predictor.json").read_text())
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(predictor["models"])

    lab = tiny_run.parent / "lab"
    images = [str(lab / "data" / f"{g}.jpg") for g in ("130", "131", "100")]
    texts = ["happy love sun", "sad hate rain", "the park is on a day"]
    expected = RunPredictor(tiny_run).predict(images, texts, explain_inputs=False)
    code = ("import json, sys, mmsent; m = mmsent.load(sys.argv[1]); "
            "r = m.predict(json.loads(sys.argv[2]), json.loads(sys.argv[3]), explain_inputs=False); "
            "print(json.dumps([[x['label'], x['probabilities']] for x in r]))")
    fresh = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(images), json.dumps(texts)],
                           capture_output=True, text=True, check=True)
    got = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert got == [[e["label"], e["probabilities"]] for e in expected]  # exactly

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: mmsent\n")
    scores = predictor["scores"]["argmax"]
    assert f"accuracy **{scores['accuracy']:.3f}**, macro-F1 **{scores['macro_f1']:.3f}**" in card
    assert "| model | accuracy | macro-F1 |" in card and "## Intended use and limitations" in card


def test_export_refuses_a_folder_with_files(tiny_run, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_run(tiny_run, tmp_path)


def test_an_exported_folder_is_sealed_and_refuses_a_changed_file(tiny_run, tmp_path):
    from mmsent.run_folder import MANIFEST_FILE, IntegrityError, load_run_models, prediction_files

    out = export_run(tiny_run, tmp_path / "model")
    listed = [line.split("  ", 1)[1] for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert listed == sorted(prediction_files(out)) and "README.md" not in listed  # the card may be edited freely
    (out / "README.md").write_text("my own words\n")
    load_run_models(out)
    weights = out / "models" / json.loads((out / "predictor.json").read_text())["models"][0] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{weights}: changed since the run was sealed"):
        load_run_models(out)


def test_export_refuses_a_run_changed_since_it_was_sealed(tiny_run, tmp_path):
    from mmsent.run_folder import IntegrityError

    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "predictor.json").write_text((run / "predictor.json").read_text().replace('"class_weights": null',
                                                                                       '"class_weights": [1, 9, 1]'))
    assert "[1, 9, 1]" in (run / "predictor.json").read_text()  # a valid edit: only the seal can tell
    with pytest.raises(IntegrityError, match=r"predictor\.json: changed since"):
        export_run(run, tmp_path / "model")
    assert not (tmp_path / "model").exists()  # refused before anything is written
