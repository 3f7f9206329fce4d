"""A run over other classes than the three sentiment ones predicts, explains, exports and is tracked by its own
classes (a 7-class emotion run and a 2-class sarcasm run, built without the pipeline)."""

from __future__ import annotations

import json
import shutil

import pytest
from mmsent_runkit import EMOTIONS, SARCASM

from mmsent.labels import LabelSet


def _post(run):
    lab = run.parent / "lab" / "data"
    return [lab / "v0.jpg", lab / "v5.jpg"], ["happy day angry #park", "sad rain"]


def test_the_run_predictor_names_seven_probabilities_by_the_runs_classes(seven_class_run):
    from mmsent.inference import RunPredictor

    predictor = RunPredictor(seven_class_run)
    assert predictor.labels == LabelSet(EMOTIONS) and predictor.info()["labels"] == list(EMOTIONS)
    images, texts = _post(seven_class_run)
    for result in predictor.predict(images, texts):
        assert list(result["probabilities"]) == list(EMOTIONS)
        assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
        assert result["evidence"]["modality_ablation"] and result["evidence"]["tokens"]


def test_an_export_keeps_the_classes_and_its_card_lists_them(seven_class_run, tmp_path):
    import mmsent
    from mmsent.export import export_run
    from mmsent.inference import RunPredictor

    out = export_run(seven_class_run, tmp_path / "model")
    assert LabelSet.from_json(json.loads((out / "predictor.json").read_text()), "predictor.json") == LabelSet(EMOTIONS)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"Predicts {', '.join(EMOTIONS)} for a post" in card
    assert "# mmsent image + text classification model" in card and "mvsa" not in card
    assert "MVSA" not in card and "as one of 7 classes" in card
    assert "Class shares of the training rows: angry 14%" in card
    test = json.loads((seven_class_run / "test_metrics.json").read_text())
    assert f"Test split ({test['n']} labelled rows no model trained or was chosen on): accuracy " in card
    images, texts = _post(seven_class_run)
    loaded = mmsent.load(out)
    assert loaded.labels == LabelSet(EMOTIONS)
    got = loaded.predict(images, texts, explain_inputs=False)
    expected = RunPredictor(seven_class_run).predict(images, texts, explain_inputs=False)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["probabilities"] for r in got] == [r["probabilities"] for r in expected]


def test_tracking_records_the_test_split_scores(two_class_run, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from mmsent.tracking import log_run

    run_dir = shutil.copytree(two_class_run, tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(log_run(run_dir, uri, experiment="tests"))
    test = json.loads((run_dir / "test_metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "positive_f1"):
        assert run.data.metrics[f"test_{key}"] == pytest.approx(test[key]), key
    for name in SARCASM:
        assert run.data.metrics[f"test_f1_{name}"] == pytest.approx(test["per_class"][name]["f1"])
        assert f"predictor_f1_{name}" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)}
    assert "test_metrics.json" in artifacts
    assert run.data.params["data.kfold"] == "None"  # the config, read by the strict loader


def test_class_names_become_valid_mlflow_metric_keys():
    from mmsent.tracking import metric_key

    assert metric_key("not_sarcastic") == "not_sarcastic" and metric_key("très:bien") == "tr_s_bien"
