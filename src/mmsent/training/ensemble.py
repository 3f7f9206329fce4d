"""The run's predictor: a mean of the probabilities of several designs' models, and a macro-F1 decision rule.

Every design's score here comes from rows its models never trained on: the validation rows of a single split, or,
with ``data.kfold``, each labelled row's own fold (out-of-fold probabilities). The decision rule multiplies the
probabilities by one weight per class before the argmax: on 60/30/10 data plain argmax rarely says "neutral", and
macro-F1 counts that class as much as the others. Its weights are fitted on out-of-fold probabilities, and the score
reported for it comes from weights fitted without the fold being scored (nested), never from the rows it was fitted on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsent.labels import LABELS, LabelsLike, as_label_set
from mmsent.training.metrics import compute_metrics

# Candidate weights per class relative to the first (positive) one: 0.5 .. 4, spaced evenly in log scale.
_GRID = np.exp(np.linspace(np.log(0.5), np.log(4.0), 13))


def decide(probs: np.ndarray, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Class indices: the argmax of ``probs`` times ``class_weights`` (plain argmax when None)."""
    probs = np.asarray(probs, dtype=np.float64)
    return (probs * np.asarray(class_weights) if class_weights is not None else probs).argmax(axis=1)


def _macro_f1(labels: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Macro-F1 over all ``k`` classes from one confusion count (the search below calls it thousands of times)."""
    confusion = np.bincount(np.asarray(labels) * k + predicted, minlength=k * k).reshape(k, k)
    return float((2 * np.diag(confusion) / np.maximum(confusion.sum(0) + confusion.sum(1), 1)).mean())


def _rank(probs: np.ndarray, labels: np.ndarray, weights: list[float]) -> tuple[float, float]:
    """(macro-F1, closeness to plain argmax): ties go to the weights that move the rule least."""
    return _macro_f1(labels, decide(probs, weights), probs.shape[1]), -float(np.abs(np.log(weights)).sum())


def fit_class_weights(probs: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per-class weights (the first fixed at 1) that maximise macro-F1 of :func:`decide` on these rows.

    Up to three classes an exhaustive search over a small log-spaced grid (169 candidates for three), ties going to
    the weights closest to plain argmax, so the rule moves only where it gains. With more classes the grid grows as
    13^(k-1), so each class's weight is searched in turn, the others held, until no weight moves (coordinate ascent).
    """
    k = probs.shape[1]
    if k <= 3:
        candidates = ([1.0, *map(float, rest)] for rest in itertools.product(_GRID, repeat=k - 1))
        return max(candidates, key=lambda w: _rank(probs, labels, w))
    weights = [1.0] * k
    for _ in range(10):  # rounds; each one can only raise the score, so this ends long before in practice
        before = list(weights)
        for c in range(1, k):
            weights[c] = max(map(float, _GRID), key=lambda v: _rank(probs, labels, [*weights[:c], v, *weights[c + 1:]]))
        if weights == before:
            break
    return weights


def nested_rule_predictions(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each row's class under weights fitted on the other folds' rows only: an honest score of the decision rule."""
    out = np.empty(len(labels), dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = decide(probs[held], fit_class_weights(probs[~held], labels[~held]))
    return out


@dataclass
class Predictor:
    """What predicts: the mean probability of every model of ``members`` (each design's seeds and fold models), then
    :func:`decide` with ``class_weights``.

    Attributes:
        members: design names whose models are averaged.
        class_weights: the decision rule's weights, or None for plain argmax.
        scores: how the predictor and each design scored on rows they never trained on (see :func:`build_predictor`).
        name: ``ensemble``, or the one member's name.
    """

    members: list[str]
    class_weights: list[float] | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    name: str = "ensemble"

    @property
    def held_out_metrics(self) -> dict[str, Any]:
        """The metrics of what predicts (with the decision rule when there is one) on held-out rows."""
        return self.scores.get("decision_rule") or self.scores.get("argmax") or {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": self.members, "class_weights": self.class_weights,
                "scores": self.scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "predictor.json") -> Predictor:
        """Reads a predictor written by :meth:`to_dict`; ValueError naming ``where``, the key and the fix otherwise."""
        members, weights, name = data.get("members"), data.get("class_weights"), data.get("name")
        name = "ensemble" if name is None else name
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
            raise ValueError(f"{where}: 'members' must be a non-empty list of model names; run the job again")
        repeated = next((m for i, m in enumerate(members) if m in members[:i]), None)
        if repeated is not None:  # a repeated member would count its models twice in the mean
            raise ValueError(f"{where}: 'members' names {repeated} more than once; run the job again")
        # bool is an int to Python, but true/false in the file is an edit, not a weight
        classes = len(data["id2label"]) if isinstance(data.get("id2label"), dict) else len(LABELS)
        if weights is not None and (not isinstance(weights, list) or len(weights) != classes or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w > 0
                for w in weights)):
            raise ValueError(f"{where}: 'class_weights' must be {classes} positive numbers (one per class) or null; "
                             "run the job again")
        if not isinstance(name, str) or (name != "ensemble" and name not in members):
            raise ValueError(f"{where}: 'name' must be a string, 'ensemble' or one of 'members', got {name!r}; run "
                             "the job again")
        scores = data.get("scores", {})
        return cls(list(members), None if weights is None else [float(w) for w in weights],
                   scores if isinstance(scores, dict) else {}, name)


def build_predictor(design_probs: dict[str, np.ndarray], labels: np.ndarray, members: Sequence[str],
                    folds: np.ndarray | None, decision_rule: bool, label_set: LabelsLike | None = None,
                    positive_label: str | None = None) -> Predictor:
    """The predictor and its scores from each design's held-out probabilities.

    Args:
        design_probs: design -> ``(N, classes)`` probabilities of rows its models never trained on (seed mean).
        labels: the rows' class indices.
        members: the designs to average.
        folds: each row's fold (``data.kfold``), or None for a single validation split, where the rule would be fitted
            on the rows it is scored on and so stays off.
        decision_rule: fit class weights (with folds only).
        label_set: the classes (default: the three sentiment classes).
        positive_label: a binary task's class whose F1 is reported too.
    """
    classes = as_label_set(label_set)

    def metrics(predicted: np.ndarray) -> dict[str, Any]:
        return compute_metrics(labels, predicted, classes, positive_label)

    probs = np.mean([design_probs[m] for m in members], axis=0)
    scores: dict[str, Any] = {"designs": {d: metrics(decide(p)) for d, p in design_probs.items()},
                              "argmax": metrics(decide(probs))}
    weights = None
    if decision_rule and folds is not None:
        weights = fit_class_weights(probs, labels)
        scores["decision_rule"] = metrics(nested_rule_predictions(probs, labels, folds))
    return Predictor(list(members), weights, scores, members[0] if len(members) == 1 else "ensemble")
