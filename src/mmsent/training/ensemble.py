"""The run's predictor: the argmax of the mean probability of several designs' models.

Every design's score here comes from rows its models never trained on: the validation rows of a single split, or,
with ``data.kfold``, each labelled row's own fold (out-of-fold probabilities). A macro-F1 decision rule (per-class
weights on the probabilities, fitted on out-of-fold rows) scored below plain argmax in every measured variant and was
removed (benchmarks/RESULTS.md); runs saved with its weights are refused rather than answered differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsent.labels import LabelsLike, as_label_set
from mmsent.training.metrics import compute_metrics

def decide(probs: np.ndarray) -> np.ndarray:
    """Class indices: the argmax of each row of ``probs``."""
    return np.asarray(probs, dtype=np.float64).argmax(axis=1)


def _argmax_weights(weights: Any) -> bool:
    """Whether a saved decision rule's ``class_weights`` leave every label as plain argmax: none, or one positive
    number for every class (the rule kept argmax where nothing gained)."""
    return weights is None or (isinstance(weights, list) and bool(weights) and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w > 0 for w in weights)
        and len(set(weights)) == 1)


@dataclass
class Predictor:
    """What predicts: the mean probability of every model of ``members`` (each design's seeds and fold models), then
    its argmax.

    Attributes:
        members: design names whose models are averaged.
        scores: how the predictor and each design scored on rows they never trained on (see :func:`build_predictor`).
        name: ``ensemble``, or the one member's name.
    """

    members: list[str]
    scores: dict[str, Any] = field(default_factory=dict)
    name: str = "ensemble"

    @property
    def held_out_metrics(self) -> dict[str, Any]:
        """The metrics of what predicts on held-out rows."""
        return self.scores.get("argmax") or {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": self.members, "scores": self.scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "predictor.json") -> Predictor:
        """Reads a predictor written by :meth:`to_dict`; ValueError naming ``where``, the key and the fix otherwise."""
        members, name = data.get("members"), data.get("name")
        name = "ensemble" if name is None else name
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
            raise ValueError(f"{where}: 'members' must be a non-empty list of model names; run the job again")
        repeated = next((m for i, m in enumerate(members) if m in members[:i]), None)
        if repeated is not None:  # a repeated member would count its models twice in the mean
            raise ValueError(f"{where}: 'members' names {repeated} more than once; run the job again")
        if not _argmax_weights(data.get("class_weights")):  # without them the run would answer differently, unannounced
            raise ValueError(f"{where}: 'class_weights' holds the weights of the decision rule, which measured below "
                             "plain argmax and was removed; run the job again with this version")
        if not isinstance(name, str) or (name != "ensemble" and name not in members):
            raise ValueError(f"{where}: 'name' must be a string, 'ensemble' or one of 'members', got {name!r}; run "
                             "the job again")
        scores = data.get("scores", {})
        return cls(list(members), scores if isinstance(scores, dict) else {}, name)


def build_predictor(design_probs: dict[str, np.ndarray], labels: np.ndarray, members: Sequence[str],
                    label_set: LabelsLike | None = None, positive_label: str | None = None) -> Predictor:
    """The predictor and its scores from each design's held-out probabilities.

    Args:
        design_probs: design -> ``(N, classes)`` probabilities of rows its models never trained on (seed mean).
        labels: the rows' class indices.
        members: the designs to average.
        label_set: the classes (default: the three sentiment classes).
        positive_label: a binary task's class whose F1 is reported too.
    """
    classes = as_label_set(label_set)

    def metrics(predicted: np.ndarray) -> dict[str, Any]:
        return compute_metrics(labels, predicted, classes, positive_label)

    probs = np.mean([design_probs[m] for m in members], axis=0)
    scores: dict[str, Any] = {"designs": {d: metrics(decide(p)) for d, p in design_probs.items()},
                              "argmax": metrics(decide(probs))}
    return Predictor(list(members), scores, members[0] if len(members) == 1 else "ensemble")
