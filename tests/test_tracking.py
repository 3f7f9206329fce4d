"""MLflow tracking: a run on the bundled sample is recorded and read back through MLflow's own client."""

from __future__ import annotations

import json

import pytest

mlflow = pytest.importorskip("mlflow")


def test_a_finished_run_is_recorded_and_read_back_through_mlflow(tiny_run, tmp_path):
    import shutil

    import yaml

    from mmsent.tracking import log_run

    run_dir = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run folder stays as it was
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_run(run_dir, uri, experiment="tests")
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name("tests").experiment_id
    held = json.loads((run_dir / "metrics.json").read_text())["ensemble_validation_metrics"]
    assert run.data.metrics["predictor_macro_f1"] == pytest.approx(held["macro_f1"])
    assert run.data.metrics["predictor_accuracy"] == pytest.approx(held["accuracy"])
    assert run.data.metrics["predictor_f1_neutral"] == pytest.approx(held["per_class"]["neutral"]["f1"])
    for row in json.loads((run_dir / "comparison.json").read_text())["summary"]:
        assert run.data.metrics[f"{row['model']}_macro_f1_mean"] == pytest.approx(row["macro_f1_mean"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert run.data.params["compare.seeds"] == json.dumps(config["compare"]["seeds"])
    assert run.data.params["encoders.text_max_length"] == str(config["encoders"]["text_max_length"])
    assert run.data.params["data.kfold"] == "None"
    history = json.loads((run_dir / "comparison.json").read_text())["runs"][0]
    curve = client.get_metric_history(run_id, f"{history['model']}_fold0_seed{history['seed']}_val_macro_f1")
    assert [m.step for m in curve] == [row["epoch"] for row in history["history"]]
    assert [m.value for m in curve] == pytest.approx([row["val_macro_f1"] for row in history["history"]])
    assert {a.path for a in client.list_artifacts(run_id, "models")} == {
        f"models/{name}" for name in json.loads((run_dir / "predictor.json").read_text())["models"]}
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.json", "comparison.md", "predictions.txt", "report.html"} <= artifacts
    assert json.loads((run_dir / "tracking.json").read_text())["run_id"] == run_id
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not in the current folder


@pytest.mark.integration  # a whole run
def test_a_run_on_the_sample_configured_to_track_records_itself(tmp_path):
    from mmsent_testkit import build_tiny_bert, build_tiny_clip

    from mmsent.config import load_config
    from mmsent.pipeline import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(overrides=[  # data.root unset: the bundled sample
        f"cache_dir={tmp_path / 'cache'}", f"encoders.image=hf-clip:{build_tiny_clip(tmp_path / 'clip')}",
        f"encoders.text={build_tiny_bert(tmp_path / 'bert')}", "encoders.device=cpu", "encoders.backend=torch",
        "encoders.text_max_length=16", "training.device=cpu", "training.hidden_dim=16", "training.epochs=1",
        "compare.models=concat", "compare.seeds=0", "compare.workers=1", "compare.zero_shot=off",
        f"tracking.mlflow={uri}", "tracking.experiment=configured",
    ])
    run(cfg, tmp_path / "run", progress=False)
    recorded = json.loads((tmp_path / "run" / "tracking.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    got = client.get_run(recorded["run_id"])
    assert got.data.params["compare.models"] == '["concat"]'
    assert got.data.params["tracking.experiment"] == "configured"
    assert "tracking.mlflow" not in got.data.params  # a URI may carry credentials: never a parameter
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert got.data.metrics["concat_macro_f1_mean"] == pytest.approx(comparison["summary"][0]["macro_f1_mean"])
    assert got.data.tags["mmsent.predictor"] == json.loads((tmp_path / "run" / "metrics.json").read_text())[
        "chosen_model"]


def test_local_means_a_sqlite_store_in_the_current_folder(tiny_run, tmp_path, monkeypatch):
    import shutil

    from mmsent.tracking import log_run

    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    run_id = log_run(run_dir, "local")
    assert (tmp_path / "mlflow.db").is_file()
    assert mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status == \
        "FINISHED"


def test_tracking_a_folder_that_is_not_a_finished_run_says_so(tmp_path):
    from mmsent.tracking import log_run

    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        log_run(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_credentials_in_the_uri_are_kept_out_of_files_and_logs():
    from mmsent.tracking import redact

    assert redact("http://alice:s3cret@mlflow.example:5000/x") == "http://***@mlflow.example:5000/x"
    assert redact("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
