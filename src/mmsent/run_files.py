"""A run folder's layout and its files' reading and writing: the one owner of both (imports no torch).

Every file a run writes is named here, read strictly (a damaged file is an error naming it and the fix) and written
atomically (a killed job never leaves half a file). Loading the run's models and checking its checksums is
:mod:`mmsent.run_folder`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmsent.io import atomic_write_text

CONFIG_FILE = "config.yaml"
DATA_REPORT_FILE = "data_report.json"
SPLIT_FILE = "split.csv"
SPLIT_FOLD_FILES = "split_fold*.csv"  # a cross-validated run's, one per fold (see split_file)
COMPARISON_FILES = {"md": "comparison.md", "json": "comparison.json", "csv": "comparison.csv"}
VALIDATION_FILE = "validation_predictions.csv"
OOF_FILE = "oof_predictions.csv"
PREDICTOR_FILE = "predictor.json"
METRICS_FILE = "metrics.json"
MODELS_DIR = "models"
FINETUNE_RECORD = "finetune.json"
# A fine-tuned encoder's folder: what predicting reads of it (mmsent.finetune.finetuned writes them); cross-fitting
# folds and checkpoints beside them are the fine-tuning's own and never part of a run or an export
FINETUNED_FILES = ("encoder.safetensors", "head.safetensors", "finetuned.json")
PREDICTIONS_FILE = "predictions.txt"
STREAM_FILE = "predictions.jsonl"  # predict --input's default output
PROBABILITIES_FILE = "predictions_proba.csv"
SKIPPED_FILE = "predictions_skipped.csv"
TEST_METRICS_FILE = "test_metrics.json"
REPORT_FILE = "report.html"
REPORT_DIR = "report"
TRACKING_FILE = "tracking.json"
MANIFEST_FILE = "checksums.sha256"
RERUN = "run the job again"

# What a run writes: a rerun into the same folder removes them first, so no file of the earlier run is ever read with
# the new run's (a half-finished rerun then has no predictor.json, and predict/serve say the run did not finish).
RUN_OUTPUTS = (CONFIG_FILE, DATA_REPORT_FILE, SPLIT_FILE, SPLIT_FOLD_FILES, "comparison.*", FINETUNE_RECORD,
               VALIDATION_FILE, OOF_FILE, PREDICTOR_FILE, METRICS_FILE, PREDICTIONS_FILE, PROBABILITIES_FILE,
               SKIPPED_FILE, f"{PREDICTIONS_FILE}.mmsent.json", REPORT_FILE, REPORT_DIR, TRACKING_FILE, MODELS_DIR,
               MANIFEST_FILE, TEST_METRICS_FILE)


def split_file(fold: int | None) -> str:
    """The split's file: ``split.csv``, or ``split_fold{k}.csv`` for fold ``k`` of a cross-validated run."""
    return SPLIT_FILE if fold is None else SPLIT_FOLD_FILES.replace("*", str(fold))


def read_json(path: str | Path, fix: str = RERUN, *, missing_ok: bool = False) -> dict[str, Any]:
    """A JSON object file, read strictly; ``{}`` for a missing file when ``missing_ok``.

    Raises:
        ValueError: for a file that is not a readable JSON object (naming it and ``fix``).
        FileNotFoundError: for a missing file (unless ``missing_ok``).
    """
    path = Path(path)
    if missing_ok and not path.is_file():
        return {}
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:  # '[[[[...' deeper than Python's stack
        raise ValueError(f"{path}: not readable JSON (nested too deeply); {fix}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object; {fix}")
    return data


class RunFolder:
    """One run folder: each file's path by its name above, and JSON and text read strictly and written atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str, fix: str = RERUN, *, missing_ok: bool = False) -> dict[str, Any]:
        return read_json(self.path / name, fix, missing_ok=missing_ok)

    def write_json(self, name: str, data: Any, *, sort_keys: bool = False) -> Path:
        return atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=sort_keys))

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)
