"""Comparing models over seeds, end to end on a tiny task."""

from __future__ import annotations

import csv
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from mmsent.labels import LABELS
from mmsent.training import compare_models

from .helpers import make_task, tiny_cfg


@pytest.fixture(scope="module")
def task():
    feats, labels = make_task(90, seed=3, signal=1.0)
    names = {g: LABELS[y] for g, y in zip(feats.guids, labels, strict=True)}
    return feats, names, SimpleNamespace(train=feats.guids[:60], val=feats.guids[60:])


def test_two_models_two_seeds(task, tmp_path) -> None:
    feats, labels, split = task
    comparison = compare_models(feats, labels, split, ["concat", "text_only"], [0, 1], tiny_cfg(epochs=3),
                                progress=False)
    assert [(r.model, r.seed) for r in comparison.runs] == [("concat", 0), ("concat", 1), ("text_only", 0),
                                                           ("text_only", 1)]
    assert set(comparison.models) == {("concat", 0), ("concat", 1), ("text_only", 0), ("text_only", 1)}
    # another seed: another init and batch order, so other validation probabilities
    assert not np.array_equal(comparison.runs[0].val_probs, comparison.runs[1].val_probs)

    summary = {row["model"]: row for row in comparison.summary()}
    assert summary["concat"]["n_seeds"] == 2 and 0 <= summary["concat"]["macro_f1_std"]
    best = comparison.best_model()
    assert summary[best]["macro_f1_mean"] == max(row["macro_f1_mean"] for row in summary.values())
    assert all(r.val_probs.shape == (30, 3) for r in comparison.runs)

    paths = comparison.save(tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("| model | accuracy | macro-F1 | weighted-F1 | train s |")
    assert len(re.findall(r"\| \d\.\d{3} ± \d\.\d{3} ", md)) == 6
    data = json.loads(paths["json"].read_text())
    assert data["best_model"] == best and len(data["runs"]) == 4
    assert data["runs"][0]["history"] and "confusion_matrix" in data["runs"][0]["metrics"]
    with paths["csv"].open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 4 and table[0]["model"] == "concat" and float(table[0]["macro_f1"]) >= 0


def test_model_overrides_reach_the_model(task) -> None:
    feats, labels, split = task
    comparison = compare_models(feats, labels, split, ["gated"], [0], tiny_cfg(epochs=1), progress=False,
                                model_overrides={"gated": {"gate_from": "text", "hidden_dim": 8}})
    model = comparison.models[("gated", 0)]
    assert model.gate_from == "text" and model.gate.out_features == 8
    with pytest.raises(ValueError, match="not being compared"):
        compare_models(feats, labels, split, ["concat"], [0], tiny_cfg(epochs=1), progress=False,
                       model_overrides={"dual_stream": {"hidden_dim": 8}})


def test_overlapping_split_is_refused(task) -> None:
    feats, labels, split = task
    leaky = SimpleNamespace(train=split.train, val=split.val + split.train[:1])
    with pytest.raises(ValueError, match="both train and val"):
        compare_models(feats, labels, leaky, ["concat"], [0], tiny_cfg(epochs=1), progress=False)


def test_missing_label_is_named(task) -> None:
    feats, labels, split = task
    partial = {g: v for g, v in labels.items() if g != split.val[0]}
    with pytest.raises(KeyError, match=split.val[0]):
        compare_models(feats, partial, split, ["concat"], [0], tiny_cfg(epochs=1), progress=False)


def test_overrides_split_into_training_settings_and_model_arguments():
    from mmsent.config import TrainConfig
    from mmsent.training.compare import split_overrides

    cfg = TrainConfig()
    run_cfg, ctor = split_overrides(cfg, {"hidden_dim": 32, "patience": 2, "attn_dropout": 0.0})
    assert (run_cfg.hidden_dim, run_cfg.patience, run_cfg.lr) == (32, 2, cfg.lr)
    assert ctor == {"attn_dropout": 0.0}
    assert cfg.hidden_dim == 256  # the shared config is untouched


def test_worker_processes_give_the_same_runs_in_the_same_order(task) -> None:
    import numpy as np

    from mmsent.device import torch_threads

    feats, labels, split = task
    models, seeds = ["concat", "gated", "single_stream"], [0, 1]
    with torch_threads(1):  # the workers train single-threaded; match that for a like-for-like comparison
        serial = compare_models(feats, labels, split, models, seeds, tiny_cfg(epochs=3), progress=False, workers=1)
    parallel = compare_models(feats, labels, split, models, seeds, tiny_cfg(epochs=3), progress=False, workers=2)
    assert [(r.model, r.seed) for r in parallel.runs] == [(r.model, r.seed) for r in serial.runs]
    for a, b in zip(serial.runs, parallel.runs, strict=True):
        np.testing.assert_allclose(a.val_probs, b.val_probs, atol=1e-4)
        assert a.best_epoch == b.best_epoch
    # the trained models came back from the workers: each one reproduces its run's validation probabilities
    from mmsent.training.trainer import predict_proba

    val = feats.select(parallel.val_guids)
    for run in parallel.runs:
        np.testing.assert_allclose(predict_proba(parallel.models[(run.model, run.seed)], val), run.val_probs,
                                   atol=1e-5)


def test_each_run_chooses_its_epoch_on_its_own_rows_and_is_scored_on_the_validation_rows(task) -> None:
    from mmsent.training.compare import stop_holdout

    labels = np.array([0] * 60 + [1] * 10 + [2] * 30)
    fit, stop = stop_holdout(labels, 0.1, seed=0)
    assert len(stop) == 10 and not set(fit) & set(stop) and sorted([*fit, *stop]) == list(range(100))
    assert sorted(np.bincount(labels[stop])) == [1, 3, 6]  # stratified
    assert not np.array_equal(stop, stop_holdout(labels, 0.1, seed=1)[1])
    # a class too rare to stratify: a plain draw, still at least one row each side
    fit, stop = stop_holdout(np.array([0, 0, 0, 1]), 0.5, seed=0)
    assert len(fit) == 2 and len(stop) == 2

    feats, names, split = task
    comparison = compare_models(feats, names, split, ["concat"], [0], tiny_cfg(epochs=2), progress=False)
    run = comparison.runs[0]
    # history scores the early-stopping rows; the run's metrics score the validation rows with the kept weights
    y_val = np.array([LABELS.index(names[g]) for g in split.val])
    assert run.metrics["n"] == len(split.val)
    assert run.metrics["accuracy"] == pytest.approx(float((run.val_probs.argmax(1) == y_val).mean()))
