"""A 7-class TumEmo-layout and a 2-class HFM-layout dataset, end to end through the real pipeline:
run -> report -> evaluate -> predict --input -> serve -> export -> mmsent.load, with the classes in every output.
Plus the split-files protocol: no training step sees a dev or test row, selection sees only dev, test only scoring."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from mmsent_runkit import EMOTIONS, SARCASM
from mmsent_testkit import build_tiny_bert
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

from mmsent.cli import app as cli_app

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _fixtures():
    spec = importlib.util.spec_from_file_location("make_benchmark_fixtures", REPO / "scripts" /
                                                  "make_benchmark_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encoders(base: Path) -> list[str]:
    """Small random encoders (nothing downloaded), as the tiny runs of the other tests use."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    weights = base / "lite0-random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), weights)
    return [f"encoders.image=efficientnet-lite0:{weights}", f"encoders.text={build_tiny_bert(base / 'bert')}",
            "encoders.image_grid=2", "encoders.text_max_length=16", "encoders.device=cpu", "encoders.batch_size=16",
            "encoders.backend=torch", "training.device=cpu", "training.hidden_dim=16", "training.num_heads=2",
            "training.epochs=3", "training.patience=3", "compare.models=gated,text_only", "compare.seeds=0",
            "compare.workers=1", f"cache_dir={base / 'cache'}"]


def _run(base: Path, root: Path, fmt: str, *extra: str) -> tuple[Path, list[str]]:
    from mmsent.config import load_config
    from mmsent.pipeline import run

    overrides = [f"data.root={root}", f"data.format={fmt}", *_encoders(base), *extra]
    run(load_config(overrides=overrides), base / "run", progress=False)
    return base / "run", overrides


@pytest.fixture(scope="module")
def emotion_run(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    base = tmp_path_factory.mktemp("tumemo")
    _fixtures().write_tumemo_fixture(base / "tumemo", per_class=(6, 2, 2))
    run_dir, overrides = _run(base, base / "tumemo", "tumemo")
    return run_dir, base / "tumemo", overrides


@pytest.fixture(scope="module")
def sarcasm_run(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    base = tmp_path_factory.mktemp("hfm")
    _fixtures().write_hfm_fixture(base / "hfm", per_class=(8, 3, 3))
    run_dir, overrides = _run(base, base / "hfm", "hfm", "data.positive_label=sarcastic")
    return run_dir, base / "hfm", overrides


def _check_run_files(run_dir: Path, labels: tuple[str, ...]) -> None:
    predictor = json.loads((run_dir / "predictor.json").read_text(encoding="utf-8"))
    assert predictor["id2label"] == {str(i): n for i, n in enumerate(labels)}
    for model_json in (run_dir / "models").glob("*/model.json"):
        assert json.loads(model_json.read_text(encoding="utf-8"))["id2label"] == predictor["id2label"]
    assert list(json.loads((run_dir / "data_report.json").read_text(encoding="utf-8"))["label_counts"]) == list(labels)
    header = (run_dir / "validation_predictions.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "guid,gold,model,fold,seed," + ",".join(f"p_{n}" for n in labels)
    predictions = (run_dir / "predictions.txt").read_text(encoding="utf-8").splitlines()
    assert predictions[0] == "guid,tag" and {line.split(",")[1] for line in predictions[1:]} <= set(labels)
    comparison = json.loads((run_dir / "comparison.json").read_text(encoding="utf-8"))
    assert list(comparison["runs"][0]["metrics"]["per_class"]) == list(labels)


def _check_test_metrics(run_dir: Path, labels: tuple[str, ...]) -> dict:
    metrics = json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["labels"] == list(labels) and np.array(metrics["confusion_matrix"]).shape == (len(labels),) * 2
    # the scores are scikit-learn's on the predictions the run wrote for its test rows
    tags = dict(line.split(",") for line in (run_dir / "predictions.txt").read_text().splitlines()[1:])
    return {"metrics": metrics, "tags": tags}


@pytest.mark.parametrize("which", ["emotion", "sarcasm"])
def test_a_run_names_its_classes_in_every_file(which: str, emotion_run, sarcasm_run) -> None:
    run_dir, _, _ = emotion_run if which == "emotion" else sarcasm_run
    labels = EMOTIONS if which == "emotion" else SARCASM
    _check_run_files(run_dir, labels)
    metrics = _check_test_metrics(run_dir, labels)["metrics"]
    if which == "sarcasm":
        assert metrics["positive_label"] == "sarcastic" and 0.0 <= metrics["positive_f1"] <= 1.0
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Test split" in report and all(name in report for name in labels)


def test_evaluate_equals_sklearn_on_the_same_predictions(emotion_run) -> None:
    run_dir, root, overrides = emotion_run
    from mmsent.config import load_config
    from mmsent.data.tumemo import load_tumemo_dataset

    (run_dir / "test_metrics.json").unlink()
    result = runner.invoke(cli_app, ["evaluate", str(run_dir), "--data", str(root), "--set", "data.format=tumemo",
                                     "--set", f"cache_dir={load_config(overrides=overrides).cache_dir}", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8"))
    tags = dict(line.split(",") for line in (run_dir / "predictions.txt").read_text().splitlines()[1:])
    gold = {ex.guid: ex.label for ex in load_tumemo_dataset(root).test}
    y_true, y_pred = [gold[g] for g in gold], [tags[g] for g in gold]
    assert metrics["n"] == len(gold)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=list(EMOTIONS), average="macro",
                                                         zero_division=0))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=list(EMOTIONS),
                                                            average="weighted", zero_division=0))


def test_evaluate_refuses_rows_the_run_trained_on(emotion_run, tmp_path) -> None:
    run_dir, root, _ = emotion_run
    first = next(csv.reader((run_dir / "split.csv").read_text().splitlines()[3:]))[0]
    leak = tmp_path / "leak2.csv"
    leak.write_text(f"id,text,image,label,split\n{first},x,{root / 'data' / (first + '.jpg')},calm,test\n")
    result = runner.invoke(cli_app, ["evaluate", str(run_dir), "--data", str(leak), "--set", "data.format=table"])
    assert result.exit_code == 1 and "trained or validated the run" in result.output


def test_predicting_labels_of_another_task_is_refused_naming_both(emotion_run, tmp_path) -> None:
    run_dir, root, _ = emotion_run
    image = next((root / "data").glob("*.jpg"))
    table = tmp_path / "other.csv"
    table.write_text(f"id,text,image,label,split\nz1,some text,{image},sarcastic,test\n", encoding="utf-8")
    result = runner.invoke(cli_app, ["evaluate", str(run_dir), "--data", str(table), "--set", "data.format=table"])
    assert result.exit_code == 1
    assert "'sarcastic'" in result.output and "angry" in result.output and "other.csv:2" in result.output


def test_predict_input_serve_export_and_load_keep_the_classes(emotion_run, tmp_path) -> None:
    import mmsent
    from mmsent.export import export_run
    from mmsent.inference import RunPredictor
    from mmsent.serve import create_app

    run_dir, root, _ = emotion_run
    images = sorted((root / "data").glob("*.jpg"))[:3]
    manifest = tmp_path / "posts.csv"
    manifest.write_text("id,image,text\n" + "".join(f"p{i},{im},a calm quiet day\n" for i, im in enumerate(images)),
                        encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(cli_app, ["predict", str(run_dir), "--input", str(manifest), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all(set(rec) == {"id", "label", *(f"p_{n}" for n in EMOTIONS)} and rec["label"] in EMOTIONS
               for rec in lines)

    with TestClient(create_app(run_dir)) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]["properties"]
        assert schema["label"]["enum"] == list(EMOTIONS)
        assert schema["probabilities"]["required"] == list(EMOTIONS)
        answer = client.post("/predict", files={"image": ("a.jpg", images[0].read_bytes(), "image/jpeg")},
                             data={"text": "a calm quiet day"}).json()
        assert answer["label"] in EMOTIONS and list(answer["probabilities"]) == list(EMOTIONS)

    exported = export_run(run_dir, tmp_path / "export")
    texts = ["a calm quiet day", "so angry now", "love it"]
    before = RunPredictor(run_dir).predict(images, texts, explain_inputs=False)
    after = mmsent.load(exported).predict(images, texts, explain_inputs=False)
    assert [r["label"] for r in before] == [r["label"] for r in after]
    assert [r["probabilities"] for r in before] == [r["probabilities"] for r in after]
    assert list(after[0]["probabilities"]) == list(EMOTIONS)


def test_the_split_files_protocol_never_trains_or_selects_on_test_rows(tmp_path, monkeypatch) -> None:
    """A spy on training: fit rows, early-stopping rows and scored rows, by id, against the files' splits."""
    import mmsent.training.compare as compare_module

    fixtures = _fixtures()
    want = fixtures.write_splits_fixture(tmp_path / "splits", per_class=(8, 3, 3))
    dev, test = {g for g, _ in want["dev"]}, {g for g, _ in want["test"]}
    seen: dict[str, set[str]] = {"trained": set(), "selected": set()}
    real = compare_module.compare_models

    def spy(features, labels, split, *args, **kwargs):
        seen["trained"].update(split.train)
        seen["selected"].update(split.val)
        assert not set(features.guids) & test, "test rows reached the comparison"
        return real(features, labels, split, *args, **kwargs)

    monkeypatch.setattr("mmsent.pipeline.compare_models", spy)
    run_dir, _ = _run(tmp_path, tmp_path / "splits", "splits")
    assert seen["selected"] == dev and not seen["trained"] & (dev | test)
    metrics = json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == len(test)


def test_predicting_a_folder_labelled_with_other_classes_is_refused_naming_both(emotion_run) -> None:
    from mmsent.data.sample import sample_dataset_path

    run_dir, _, overrides = emotion_run
    cache = next(o for o in overrides if o.startswith("cache_dir="))
    result = runner.invoke(cli_app, ["predict", str(run_dir), "--data", str(sample_dataset_path()), "--set", cache])
    assert result.exit_code == 1
    assert "the run" in result.output and "'angry'" in result.output and "'positive'" in result.output


def test_bad_label_sets_are_named_with_the_data_and_the_fix(tmp_path) -> None:
    from mmsent.data.lab_format import load_lab_dataset
    from mmsent.labels import LabelError
    from mmsent_runkit import write_lab_dataset

    root = write_lab_dataset(tmp_path / "lab")
    dataset = load_lab_dataset(root)
    with pytest.raises(LabelError, match=rf"{root}: class\(es\) \['calm'\] of the label set .* no training row"):
        dataset.label_set(["positive", "neutral", "negative", "calm"])
    with pytest.raises(LabelError, match=r"\['neutral'\] outside the label set"):
        dataset.label_set(["positive", "negative"])
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join([*lines, lines[1].split(",")[0] + "x,postive"]) + "\n")
    (root / "data" / (lines[1].split(",")[0] + "x.jpg")).write_bytes((root / "data" / (lines[1].split(",")[0] +
                                                                                          ".jpg")).read_bytes())
    (root / "data" / (lines[1].split(",")[0] + "x.txt")).write_text("a post")
    with pytest.raises(LabelError, match=r"train.txt:\d+: class 'postive' has a single training row .* did you mean "
                                         r"'positive'\?"):
        load_lab_dataset(root).label_set()
