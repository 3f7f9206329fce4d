"""The model that ships with mmsent answers without a run folder: predict --image/--text, serve and mmsent.load."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from mmsent.cli import app
from mmsent.data.sample import sample_dataset_path
from mmsent.export import shipped_model_path

IMAGE = next((sample_dataset_path() / "data").glob("*.jpg"))


def test_the_model_card_states_the_validation_scores_it_was_chosen_with():
    folder = shipped_model_path()
    predictor = json.loads((folder / "predictor.json").read_text())
    held = predictor["scores"]["argmax"]
    card = (folder / "README.md").read_text()
    assert f"macro-F1 **{held['macro_f1']:.3f}**" in card and f"accuracy **{held['accuracy']:.3f}**" in card
    assert "stratified validation split of 600 rows" in card
    assert len(predictor["models"]) == len(list((folder / "models").iterdir()))


def test_predict_one_post_without_a_run_folder():
    result = CliRunner().invoke(app, ["predict", "--image", str(IMAGE), "--text", "What a lovely sunny day"])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    match = re.fullmatch(r"(positive|neutral|negative)  \(positive ([\d.]+)  neutral ([\d.]+)  negative ([\d.]+)\)",
                         line)
    assert match, line
    assert sum(float(p) for p in match.groups()[1:]) == pytest.approx(1.0, abs=2e-3)


def test_without_a_run_folder_a_dataset_prediction_needs_out():
    result = CliRunner().invoke(app, ["predict", "--data", str(sample_dataset_path())])
    assert result.exit_code == 2 and "--out" in result.output


def test_serve_without_a_run_folder():
    from fastapi.testclient import TestClient

    from mmsent.serve import create_app

    with TestClient(create_app(shipped_model_path())) as client:
        health = client.get("/health").json()
        r = client.post("/predict", files={"image": ("a.jpg", IMAGE.read_bytes(), "image/jpeg")},
                        data={"text": "so sad and awful today"})
    assert r.status_code == 200, r.text
    assert r.json()["label"] in ("positive", "neutral", "negative")
    assert health["status"] == "ok" and health["model"]["models"] == 18


def test_load_without_a_folder_gives_the_shipped_model():
    import mmsent

    model = mmsent.load()
    [answer] = model.predict([IMAGE], ["love this great game"], explain_inputs=False)
    assert answer["label"] in ("positive", "neutral", "negative")


def test_text_without_image_says_they_go_together():
    result = CliRunner().invoke(app, ["predict", "--text", "hello"])
    assert result.exit_code == 2 and "--image and --text go together" in result.output
