"""Classification metrics over a task's label order; macro-F1 always beside accuracy (classes are rarely balanced)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from mmsent.labels import LabelsLike, LabelSet, as_label_set


def _as_indices(y: Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor, what: str, labels: LabelSet) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.dtype.kind == "S":  # bytes labels: str() would give "b'positive'"
        arr = np.char.decode(arr, "utf-8")
    if arr.dtype.kind in ("U", "O"):
        arr = np.array([v if isinstance(v, (int, np.integer)) else labels.index(str(v)) for v in arr.ravel()],
                       dtype=np.int64)
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= len(labels)):
        raise ValueError(f"{what} holds class indices outside 0..{len(labels) - 1}")
    return arr


def compute_metrics(y_true: Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor,
                    y_pred: Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor,
                    labels: LabelsLike | None = None, positive_label: str | None = None) -> dict[str, Any]:
    """Accuracy, macro- and weighted-F1, per-class scores and the confusion matrix.

    Args:
        y_true: class indices or label names.
        y_pred: class indices or label names.
        labels: the task's label set (default: the three sentiment classes).
        positive_label: for a binary task, the class whose F1 is also reported as ``positive_f1``.

    Returns:
        ``{"n", "accuracy", "macro_f1", "weighted_f1", "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "confusion_matrix": [[...]] (rows true, columns predicted, label order), "labels"}``, plus
        ``"positive_f1"`` when ``positive_label`` is given.
        Every label counts in the macro average even when absent (scoring 0), so values stay comparable.
    """
    names = as_label_set(labels)
    yt, yp = _as_indices(y_true, "y_true", names), _as_indices(y_pred, "y_pred", names)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} entries, y_pred {yp.size}")
    if yt.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    idx = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(yt, yp, labels=idx, zero_division=0)
    result = {
        "n": int(yt.size),
        "accuracy": float(accuracy_score(yt, yp)),
        "macro_f1": float(f1_score(yt, yp, labels=idx, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(yt, yp, labels=idx, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(yt, yp, labels=idx).tolist(),
        "labels": list(names),
    }
    if positive_label is not None:
        names.index(positive_label)  # a name outside the set is an error, not a KeyError below
        result["positive_label"] = positive_label
        result["positive_f1"] = result["per_class"][positive_label]["f1"]
    return result


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line: ``acc 0.712 | macro-F1 0.601 | weighted-F1 0.700 | F1 positive 0.80 neutral 0.21 negative 0.66``."""
    line = (f"acc {metrics['accuracy']:.3f} | macro-F1 {metrics['macro_f1']:.3f} "
            f"| weighted-F1 {metrics['weighted_f1']:.3f}")
    per_class = metrics.get("per_class")
    if per_class:
        line += " | F1 " + " ".join(f"{name} {v['f1']:.2f}" for name, v in per_class.items())
    return line
