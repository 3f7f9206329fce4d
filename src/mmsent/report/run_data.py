"""Reading what a finished run wrote (comparison, metrics, validation and test scores) into one object."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.run_files import (
    COMPARISON_FILES,
    DATA_REPORT_FILE,
    METRICS_FILE,
    OOF_FILE,
    TEST_METRICS_FILE,
    VALIDATION_FILE,
    RunFolder,
)
from mmsent.labels import DEFAULT_LABELS, LabelSet
from mmsent.run_folder import saved_labels


@dataclass
class ModelValidation:
    """Validation probabilities of one design: ``probs (S, N, classes)`` over seeds, rows in ``guids`` order."""

    seeds: list[int]
    probs: np.ndarray

    @property
    def ensemble(self) -> np.ndarray:
        """Mean over seeds ``(N, classes)``: what a seed ensemble of this design predicts."""
        return self.probs.mean(0)


@dataclass
class RunData:
    """The parts of a run directory the report draws on. Missing files leave their field empty."""

    run_dir: Path
    comparison: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    guids: list[str] = field(default_factory=list)
    gold: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    validation: dict[str, ModelValidation] = field(default_factory=dict)
    labels: LabelSet = DEFAULT_LABELS  # the class names of the probabilities and gold indices, in order
    test_metrics: dict[str, Any] = field(default_factory=dict)  # test_metrics.json: the predictor on labelled test rows

    @property
    def chosen_model(self) -> str | None:
        return self.metrics.get("chosen_model") or self.comparison.get("best_model")

    @property
    def data_root(self) -> Path | None:
        root = self.metrics.get("data_root") or self.data_report.get("root")
        return Path(root) if root else None


def read_validation_predictions(path: Path, labels: LabelSet = DEFAULT_LABELS
                                ) -> tuple[list[str], np.ndarray, dict[str, ModelValidation]]:
    """Parses the long-form ``validation_predictions.csv`` (a ``p_<label>`` column per class of ``labels``) into
    guids, gold indices and per-model probabilities.

    Raises:
        ValueError: if a class has no column, models disagree on the validation rows or a row's gold label is unknown.
    """
    runs: dict[tuple[str, int], dict[str, list[float]]] = {}  # (model, seed) -> guid -> probabilities
    gold: dict[str, str] = {}
    columns = [f"p_{n}" for n in labels]
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} for the run's classes {list(labels)}; "
                             "run the job again")
        for rec in reader:
            runs.setdefault((rec["model"], int(rec["seed"])), {})[rec["guid"]] = [float(rec[c]) for c in columns]
            gold[rec["guid"]] = rec["gold"]
    if not runs:
        return [], np.zeros(0, dtype=int), {}
    guids = list(next(iter(runs.values())))
    if any(by_guid.keys() != set(guids) for by_guid in runs.values()):
        raise ValueError(f"{path}: runs were scored on different validation rows")
    unknown = set(gold.values()) - set(labels)
    if unknown:
        raise ValueError(f"{path}: unknown gold labels {sorted(unknown)}")
    validation = {}
    for model in dict.fromkeys(m for m, _ in runs):
        seeds = sorted(s for m, s in runs if m == model)
        validation[model] = ModelValidation(seeds, np.array([[runs[model, s][g] for g in guids] for s in seeds]))
    return guids, np.array([labels.index(gold[g]) for g in guids], dtype=int), validation


def load_run_data(run_dir: str | Path) -> RunData:
    """Reads ``comparison.json``, ``metrics.json``, ``data_report.json``, ``test_metrics.json``, the run's classes
    (``predictor.json``'s ``id2label``; runs before it: the three sentiment classes) and the held-out probabilities
    (``validation_predictions.csv``, or ``oof_predictions.csv`` for a cross-validated run).

    Raises:
        FileNotFoundError: if the folder holds none of them (not a run directory).
    """
    run_dir = Path(run_dir)
    names = (COMPARISON_FILES["json"], METRICS_FILE, VALIDATION_FILE, OOF_FILE)
    if not any((run_dir / n).is_file() for n in names):
        raise FileNotFoundError(f"{run_dir}: not a run directory (none of {', '.join(names)} found)")
    files = RunFolder(run_dir)
    comparison, metrics, data_report, test = (files.read_json(n, missing_ok=True) for n in (
        COMPARISON_FILES["json"], METRICS_FILE, DATA_REPORT_FILE, TEST_METRICS_FILE))
    data = RunData(run_dir, comparison, metrics, data_report, labels=saved_labels(run_dir) or DEFAULT_LABELS,
                   test_metrics=test)
    for name in (OOF_FILE, VALIDATION_FILE):  # cross-validated runs write the first
        if (run_dir / name).is_file():
            data.guids, data.gold, data.validation = read_validation_predictions(run_dir / name, data.labels)
            break
    return data
