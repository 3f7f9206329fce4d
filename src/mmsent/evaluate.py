"""Scoring a finished run on labelled rows it never trained or selected on: ``test_metrics.json``.

A published protocol's test split (``data.format=splits``), a table's ``split=test`` rows with labels, or a lab
folder whose test file carries real tags: the run's predictor labels them once, and accuracy, macro-F1, weighted-F1,
per-class precision / recall / F1 and the confusion matrix are computed over them (scikit-learn's definitions, see
:func:`mmsent.training.metrics.compute_metrics`). ``mmsent run`` does this at its end when its test rows are labelled;
``mmsent evaluate RUN --data DIR`` does it for any labelled data afterwards, refusing rows the run trained or
validated on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.data.records import Example, LabDataset
from mmsent.data.splits import load_split
from mmsent.io import write_json
from mmsent.labels import LabelError, LabelSet
from mmsent.run_files import TEST_METRICS_FILE
from mmsent.training.ensemble import decide
from mmsent.training.metrics import compute_metrics

log = logging.getLogger("mmsent.evaluate")


def labelled(examples: Sequence[Example]) -> list[int]:
    """Positions of the rows that carry a label."""
    return [i for i, ex in enumerate(examples) if ex.label is not None]


def score_rows(examples: Sequence[Example], probs: np.ndarray, label_set: LabelSet,
               positive_label: str | None = None) -> dict[str, Any]:
    """The predictor's metrics over the labelled ``examples`` (``probs`` is their probabilities, in order).

    Raises:
        ValueError: for no labelled row, or a label outside ``label_set`` (naming the row and the fix).
    """
    rows = labelled(examples)
    if not rows:
        raise ValueError("no labelled rows to score: give rows with their true labels (a test split, a table's "
                         "split=test rows with a label, or a lab test file with real tags)")
    check_labels(examples, label_set)
    gold = [label_set.index(str(examples[i].label)) for i in rows]
    predicted = decide(np.asarray(probs)[rows])
    return compute_metrics(gold, predicted, label_set, positive_label)


def check_labels(examples: Sequence[Example], label_set: LabelSet) -> None:
    """:class:`~mmsent.labels.LabelError` naming the first labelled row whose label the model does not predict."""
    outside = [ex for ex in examples if ex.label is not None and ex.label not in label_set]
    if outside:
        ex = outside[0]
        raise LabelError(f"{ex.source}: row {ex.guid} has label {ex.label!r}, but the model predicts "
                         f"{list(label_set)}; {len(outside)} such row(s): score it with a model trained on these labels")


def write_test_metrics(run_dir: str | Path, metrics: dict[str, Any], data_root: str | Path) -> Path:
    """``test_metrics.json`` in the run folder: the metrics and where the scored rows came from."""
    path = write_json(Path(run_dir) / TEST_METRICS_FILE, {"data_root": str(data_root), **metrics})
    log.info("test rows: %d scored, accuracy %.4f, macro-F1 %.4f, weighted-F1 %.4f -> %s", metrics["n"],
             metrics["accuracy"], metrics["macro_f1"], metrics["weighted_f1"], path)
    return path


def seen_rows(run_dir: str | Path) -> set[str]:
    """The ids a run trained or selected on: every row of its split files (``split.csv``, ``split_fold{k}.csv``)."""
    run_dir = Path(run_dir)
    seen: set[str] = set()
    for path in sorted(run_dir.glob("split*.csv")):
        split = load_split(path)
        seen.update(split.train, split.val)
    return seen


def refuse_seen_rows(dataset: LabDataset, run_dir: str | Path) -> None:
    """ValueError naming the rows of ``dataset.test`` that the run trained or selected on (their scores would lie)."""
    seen = seen_rows(run_dir)
    if not seen:
        log.warning("%s has no split file: cannot check that the scored rows were never trained on", run_dir)
    leaked = [ex for ex in dataset.test if ex.guid in seen and ex.label is not None]
    if leaked:
        ex = leaked[0]
        raise ValueError(f"{ex.source}: row {ex.guid} trained or validated the run {run_dir} "
                         f"({len(leaked)} such row(s)); scoring on them would overstate the model: score rows the run "
                         "never saw")
