"""Records a finished run in MLflow: its config as parameters, its held-out scores and timings as metrics, and its
outputs (comparison, metrics, report, predictions) as artifacts. Everything is read back from the run folder, so a run
recorded later (``mmsent track RUN``) gives the same MLflow run as one recorded at its end."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mmsent.config import load_config
from mmsent.run_files import (
    COMPARISON_FILES,
    CONFIG_FILE,
    DATA_REPORT_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PREDICTOR_FILE,
    REPORT_FILE,
    TEST_METRICS_FILE,
    TRACKING_FILE,
    RunFolder,
)
from mmsent.io import write_json

log = logging.getLogger("mmsent.tracking")

ARTIFACTS = (CONFIG_FILE, DATA_REPORT_FILE, METRICS_FILE, *COMPARISON_FILES.values(), PREDICTOR_FILE, PREDICTIONS_FILE,
             REPORT_FILE, TEST_METRICS_FILE)
_TEST_SCORES = ("accuracy", "macro_f1", "weighted_f1", "positive_f1")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def metric_key(name: str) -> str:
    """A class name as a part of an MLflow metric key, which allows only letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", name, flags=re.ASCII)


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The numbers MLflow gets: the predictor's held-out scores (and its test scores, when the run scored labelled
    test rows: ``test_accuracy``, ``test_macro_f1``, ...), each design's mean scores, the timings."""
    files = RunFolder(run_dir)
    metrics, comparison = files.read_json(METRICS_FILE), files.read_json(COMPARISON_FILES["json"])
    held = metrics.get("ensemble_validation_metrics") or {}
    out = {f"predictor_{k}": held[k] for k in ("accuracy", "macro_f1", "weighted_f1") if k in held}
    for name, scores in (held.get("per_class") or {}).items():
        out[f"predictor_f1_{metric_key(name)}"] = scores["f1"]
    test = files.read_json(TEST_METRICS_FILE, missing_ok=True)
    out.update({f"test_{k}": test[k] for k in _TEST_SCORES if isinstance(test.get(k), (int, float))})
    for name, scores in (test.get("per_class") or {}).items():
        out[f"test_f1_{metric_key(name)}"] = scores["f1"]
    for row in comparison.get("summary", []):
        for score in ("accuracy", "macro_f1", "weighted_f1"):
            out[f"{row['model']}_{score}_mean"] = row[f"{score}_mean"]
            out[f"{row['model']}_{score}_std"] = row[f"{score}_std"]
    for row in comparison.get("baselines") or []:
        out[f"{row['name'].replace(' ', '_').replace('+', '_')}_macro_f1"] = row["macro_f1"]
    out.update({k: v for k, v in (metrics.get("timings") or {}).items() if isinstance(v, (int, float))})
    return {k: float(v) for k, v in out.items()}


def redact(uri: str) -> str:
    """The URI without a ``user:password@`` part (for files and logs; pass credentials as MLFLOW_TRACKING_USERNAME /
    MLFLOW_TRACKING_PASSWORD instead)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store (``<db folder>/mlartifacts``); None lets
    a server decide. MLflow's own default, ``./mlruns`` in whatever folder the process runs in, would scatter them."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def learning_curves(run_dir: Path) -> list[tuple[str, int, float]]:
    """Every run's per-epoch curves as ``(metric key, epoch, value)``: ``{model}_fold{k}_seed{s}_{train_loss,
    val_loss, val_macro_f1, ...}`` (the validation side is the run's own early-stopping holdout)."""
    comparison = RunFolder(run_dir).read_json(COMPARISON_FILES["json"])
    curves = []
    for run in comparison.get("runs", []):
        prefix = f"{run['model']}_fold{run.get('fold', 0)}_seed{run['seed']}"
        for row in run.get("history", []):
            curves += [(f"{prefix}_{k}", int(row["epoch"]), float(v)) for k, v in row.items()
                       if k != "epoch" and isinstance(v, (int, float))]
    return curves


def log_run(run_dir: str | Path, uri: str, experiment: str = "mmsent") -> str:
    """Records the finished run in ``run_dir`` under ``experiment`` at tracking URI ``uri`` (``local``: ``mlflow.db``
    in the current folder); returns the MLflow run id (also written to ``tracking.json`` in the run folder)."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param
    except ImportError as exc:
        raise ImportError("experiment tracking needs MLflow: pip install 'mmsent[track]' (or mlflow-skinny)") from exc
    run_dir = Path(run_dir)
    if uri == "local":  # MLflow 3 refuses a plain ./mlruns folder by default; a SQLite file is its local store now
        uri = f"sqlite:///{Path('mlflow.db').resolve()}"
    if not (run_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS_FILE}; track a run folder that `mmsent run` finished")
    config = load_config(run_dir / CONFIG_FILE).to_dict()  # strict: refused before an MLflow run is opened
    config.get("tracking", {}).pop("mlflow", None)  # the URI may hold credentials; it is in tracking.json
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=artifact_location(uri))
    chosen = RunFolder(run_dir).read_json(METRICS_FILE).get("chosen_model", "")
    run = client.create_run(experiment_id, run_name=run_dir.resolve().name,
                            tags={"mmsent.run_dir": str(run_dir.resolve()), "mmsent.predictor": str(chosen)})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(key, value[:6000]) for key, value in _flatten(config).items()]  # MLflow's value limit
        metrics = [Metric(key, value, now, 0) for key, value in run_metrics(run_dir).items()]
        metrics += [Metric(key, value, now, step) for key, step, value in learning_curves(run_dir)]
        for start in range(0, len(params), 100):  # MLflow takes up to 100 parameters per call
            client.log_batch(run_id, params=params[start:start + 100])
        for start in range(0, len(metrics), 1000):  # and up to 1000 metrics
            client.log_batch(run_id, metrics=metrics[start:start + 1000])
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))
        if (run_dir / "models").is_dir():  # the predictor's fusion models (safetensors + JSON)
            client.log_artifacts(run_id, str(run_dir / "models"), artifact_path="models")
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    shown = redact(uri)
    write_json(run_dir / TRACKING_FILE, {"mlflow_uri": shown, "experiment": experiment, "run_id": run_id})
    log.info("recorded the run in MLflow (%s, experiment %r, run %s)", shown, experiment, run_id)
    return run_id
