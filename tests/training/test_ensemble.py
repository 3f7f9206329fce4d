"""The predictor: mean of designs, the macro-F1 decision rule, and its honest (nested) score."""

from __future__ import annotations

import numpy as np
import pytest

from mmsent.training import ensemble
from mmsent.training.ensemble import Predictor, build_predictor, decide, fit_class_weights, nested_rule_predictions
from mmsent.training.metrics import compute_metrics


def _under_predicted_neutral(n: int = 600, seed: int = 0):
    """Probabilities that rank the classes right but rarely put neutral (class 1) on top."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.1, 0.3])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    logits[:, 1] -= 1.2  # neutral scored too low, as on the lab data
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, y


def test_decide_weights_the_probabilities():
    probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
    assert decide(probs).tolist() == [0, 0]
    assert decide(probs, [1.0, 2.0, 1.0]).tolist() == [1, 1]


def test_fitted_weights_raise_macro_f1_and_favour_the_under_predicted_class():
    probs, y = _under_predicted_neutral()
    weights = fit_class_weights(probs, y)
    assert weights[0] == 1.0 and weights[1] > 1.0
    plain = compute_metrics(y, decide(probs))["macro_f1"]
    assert compute_metrics(y, decide(probs, weights))["macro_f1"] > plain + 0.02


def test_plain_argmax_is_kept_when_nothing_gains():
    y = np.array([0, 1, 2] * 20)
    probs = np.eye(3)[y] * 0.9 + 0.05  # already perfect
    assert fit_class_weights(probs, y) == [1.0, 1.0, 1.0]


def test_the_rules_score_never_uses_weights_fitted_on_the_scored_fold(monkeypatch):
    probs, y = _under_predicted_neutral()
    folds = np.arange(len(y)) % 5
    seen: list[set[int]] = []
    real = ensemble.fit_class_weights

    def spy(p, labels):
        rows = {int(np.flatnonzero((probs == row).all(1))[0]) for row in p}
        seen.append(rows)
        return real(p, labels)

    monkeypatch.setattr(ensemble, "fit_class_weights", spy)
    out = nested_rule_predictions(probs, y, folds)
    assert len(seen) == 5 and out.shape == y.shape
    for k, rows in enumerate(seen):
        assert rows == set(np.flatnonzero(folds != k))  # fitted on the other folds' rows only


def test_build_predictor_scores_members_and_fits_the_rule_only_with_folds():
    probs, y = _under_predicted_neutral()
    designs = {"a": probs, "b": np.roll(probs, 1, axis=0)}
    single = build_predictor(designs, y, ["a", "b"], folds=None, decision_rule=True)
    assert single.class_weights is None and "decision_rule" not in single.scores
    mean = (designs["a"] + designs["b"]) / 2
    assert single.scores["argmax"] == compute_metrics(y, decide(mean))
    assert set(single.scores["designs"]) == {"a", "b"} and single.held_out_metrics == single.scores["argmax"]
    folded = build_predictor(designs, y, ["a"], folds=np.arange(len(y)) % 5, decision_rule=True)
    assert folded.class_weights == fit_class_weights(probs, y)
    assert folded.held_out_metrics is folded.scores["decision_rule"]
    assert build_predictor(designs, y, ["a"], folds=np.arange(len(y)) % 5, decision_rule=False).class_weights is None


@pytest.mark.parametrize(("data", "words"), [
    ({"members": []}, "members"),
    ({"members": ["gated"], "class_weights": [1, 2]}, "class_weights"),
    ({"members": ["gated"], "class_weights": [1, float("nan"), 1]}, "class_weights"),
    ({"members": ["gated"], "class_weights": 2.0}, "class_weights"),
])
def test_a_damaged_predictor_description_names_the_file(data, words):
    with pytest.raises(ValueError, match=f"p.json: '{words}'"):
        Predictor.from_dict(data, "p.json")
    good = Predictor(["gated"], [1.0, 1.5, 1.0], {}, "gated")
    assert Predictor.from_dict(good.to_dict()) == good
