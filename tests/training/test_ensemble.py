"""The predictor: the argmax of the mean of designs, its held-out scores, and runs of the removed decision rule."""

from __future__ import annotations

import numpy as np
import pytest

from mmsent.training.ensemble import Predictor, build_predictor, decide
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


def test_decide_is_the_argmax_of_each_row():
    probs = np.array([[0.5, 0.3, 0.2], [0.3, 0.35, 0.35], [0.1, 0.2, 0.7]])
    assert decide(probs).tolist() == [0, 1, 2]  # a tie goes to the first class, as numpy's argmax


def test_build_predictor_scores_the_mean_of_its_members_and_each_design():
    probs, y = _under_predicted_neutral()
    designs = {"a": probs, "b": np.roll(probs, 1, axis=0)}
    both = build_predictor(designs, y, ["a", "b"])
    mean = (designs["a"] + designs["b"]) / 2
    assert both.scores["argmax"] == compute_metrics(y, decide(mean)) and both.name == "ensemble"
    assert both.scores["designs"] == {d: compute_metrics(y, decide(p)) for d, p in designs.items()}
    assert both.held_out_metrics == both.scores["argmax"] and set(both.scores) == {"designs", "argmax"}
    one = build_predictor(designs, y, ["b"])
    assert one.name == "b" and one.scores["argmax"] == compute_metrics(y, decide(designs["b"]))


@pytest.mark.parametrize(("data", "words"), [
    ({"members": []}, "members"),
    ({"members": ["gated", "gated"]}, "members"),
    ({"members": ["gated"], "name": ["gated"]}, "name"),
    ({"members": ["gated"], "class_weights": [1, 2, 1]}, "class_weights"),
    ({"members": ["gated"], "class_weights": 2.0}, "class_weights"),
])
def test_a_damaged_predictor_description_names_the_file(data, words):
    with pytest.raises(ValueError, match=f"p.json: '{words}'"):
        Predictor.from_dict(data, "p.json")
    good = Predictor(["gated"], {"argmax": {"accuracy": 0.5}}, "gated")
    assert Predictor.from_dict(good.to_dict()) == good and "class_weights" not in good.to_dict()
    assert Predictor.from_dict({**good.to_dict(), "class_weights": None}) == good  # as runs of earlier versions say


def test_a_run_saved_with_the_removed_decision_rule_is_refused_with_the_reason():
    # Its labels were the argmax of weighted probabilities: plain argmax would answer differently without a word.
    with pytest.raises(ValueError, match=r"p.json: 'class_weights' holds the weights of the decision rule, which "
                                         r"measured below plain argmax and was removed; run the job again"):
        Predictor.from_dict({"members": ["gated"], "class_weights": [1.0, 1.4, 1.0]}, "p.json")
    # weights the rule left equal (nothing gained) label every row as plain argmax: such a run still loads
    assert Predictor.from_dict({"members": ["gated"], "class_weights": [1.0, 1.0, 1.0]}) == Predictor(["gated"])
    for damaged in ([True, True, True], [0.0, 0.0, 0.0], [float("nan")] * 3, [], "1.0"):
        with pytest.raises(ValueError, match="'class_weights' holds the weights of the decision rule"):
            Predictor.from_dict({"members": ["gated"], "class_weights": damaged})
