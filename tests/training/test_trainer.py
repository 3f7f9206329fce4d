"""The training loop: learning, early stopping, class weighting, determinism, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsent.fusion import create_fusion_model
from mmsent.training import class_weights, compute_metrics, predict_proba, set_seed, train_model
from mmsent.training.loop import epoch_batches

from .helpers import IMAGE_DIM, TEXT_DIM, make_task, tiny_cfg


def _build(name: str, seed: int, cfg) -> torch.nn.Module:
    set_seed(seed)
    return create_fusion_model(name, IMAGE_DIM, TEXT_DIM, cfg)


@pytest.mark.parametrize("name", ["concat", "single_stream"])
def test_learns_a_separable_task(name: str) -> None:
    feats, labels = make_task(330, seed=0)
    train, val = feats.select(feats.guids[:240]), feats.select(feats.guids[240:])
    y_train, y_val = labels[:240], labels[240:]
    cfg = tiny_cfg(epochs=12)
    result = train_model(_build(name, 0, cfg), train, y_train, val, y_val, cfg, seed=0)
    assert result.val_metrics["macro_f1"] > 0.9
    assert result.val_probs.shape == (90, 3)
    assert set(result.history[0]) >= {"train_loss", "val_loss", "val_accuracy", "val_macro_f1"}
    assert result.train_seconds > 0


def _noise_task():
    feats, _ = make_task(200, seed=1, signal=0.0)
    labels = np.random.default_rng(1).choice(3, size=200, p=[0.6, 0.1, 0.3])
    ids = feats.guids
    return feats.select(ids[:140]), labels[:140], feats.select(ids[140:]), labels[140:]


def test_early_stopping_restores_the_best_epoch() -> None:
    train, y_train, val, y_val = _noise_task()
    cfg = tiny_cfg(epochs=60, patience=2, lr=1e-2)
    result = train_model(_build("concat", 0, cfg), train, y_train, val, y_val, cfg, seed=0)
    assert result.stopped_early and len(result.history) < cfg.epochs
    assert len(result.history) == result.best_epoch + cfg.patience
    f1s = [h["val_macro_f1"] for h in result.history]
    assert result.val_metrics["macro_f1"] == max(f1s) == f1s[result.best_epoch - 1]
    probs = predict_proba(result.model, val)
    np.testing.assert_allclose(probs, result.val_probs, atol=1e-6)
    fresh = compute_metrics(y_val, probs.argmax(axis=1))
    assert {k: v for k, v in result.val_metrics.items() if k != "loss"} == fresh


def test_class_weights_are_inverse_frequency() -> None:
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]))
    torch.testing.assert_close(w, torch.tensor([6 / 9, 6 / 3, 6 / 6]))
    assert class_weights(np.array([0, 0, 2]))[1] == 0  # absent class


def test_class_weighting_changes_the_loss() -> None:
    train, y_train, val, y_val = _noise_task()
    runs = {}
    for weighting in (True, False):
        cfg = tiny_cfg(epochs=2, patience=None, class_weighting=weighting)
        runs[weighting] = train_model(_build("concat", 0, cfg), train, y_train, val, y_val, cfg, seed=0)
    expected = class_weights(y_train).tolist()
    assert runs[True].class_weights == pytest.approx(expected) and runs[False].class_weights is None
    assert expected[1] > expected[2] > expected[0]  # neutral rarest
    assert runs[True].history[0]["train_loss"] != runs[False].history[0]["train_loss"]


def test_same_seed_same_result_other_seed_differs() -> None:
    train, y_train, val, y_val = _noise_task()
    cfg = tiny_cfg(epochs=3, patience=None)
    results = {}
    for key, seed in (("a", 5), ("b", 5), ("c", 6)):
        model = _build("dual_stream", seed, cfg)
        init = [p.detach().clone() for p in model.parameters()]
        results[key] = (init, train_model(model, train, y_train, val, y_val, cfg, seed=seed))
    (init_a, a), (init_b, b), (init_c, c) = results["a"], results["b"], results["c"]
    assert all(torch.equal(x, y) for x, y in zip(init_a, init_b, strict=True))
    assert a.history == b.history and np.array_equal(a.val_probs, b.val_probs)
    states = zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in states)
    assert not all(torch.equal(x, y) for x, y in zip(init_a, init_c, strict=True))
    assert not np.array_equal(a.val_probs, c.val_probs)


def test_predict_proba_does_not_depend_on_batch_size() -> None:
    feats, _labels = make_task(50, seed=2)
    model = _build("single_stream", 0, tiny_cfg())
    big = predict_proba(model, feats, batch_size=256)
    small = predict_proba(model, feats, batch_size=7)  # each batch trimmed to its own longest text
    assert big.shape == (50, 3) and big.dtype == np.float32
    np.testing.assert_allclose(big.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(small, big, atol=1e-6)


def test_rejects_bad_labels() -> None:
    train, y_train, val, y_val = _noise_task()
    cfg = tiny_cfg(epochs=1)
    with pytest.raises(ValueError, match="labels"):
        train_model(_build("concat", 0, cfg), train, y_train[:-1], val, y_val, cfg, seed=0)
    with pytest.raises(ValueError, match="class indices"):
        train_model(_build("concat", 0, cfg), train, y_train + 3, val, y_val, cfg, seed=0)


@pytest.mark.parametrize("amp", [False, True])
def test_bf16_autocast_is_optional(amp: bool) -> None:
    train, y_train, val, y_val = _noise_task()
    cfg = tiny_cfg(epochs=1)
    result = train_model(_build("single_stream", 0, cfg), train, y_train, val, y_val, cfg, seed=0, amp=amp)
    assert result.amp is amp and np.isfinite(result.history[0]["train_loss"])
    assert result.val_probs.dtype == np.float32  # evaluation stays fp32


def test_length_grouped_batches_cover_every_row_once() -> None:
    lengths = torch.randint(1, 65, (1000,), generator=torch.Generator().manual_seed(0))
    batches = epoch_batches(range(1000), 64, seed=1, epoch=0, lengths=lengths.tolist())
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    plain = sum(int(lengths[b].max()) * len(b) for b in epoch_batches(range(1000), 64, seed=1, epoch=0))
    assert padded < 0.7 * plain
    assert batches == epoch_batches(range(1000), 64, seed=1, epoch=0, lengths=lengths.tolist())
    assert batches != epoch_batches(range(1000), 64, seed=1, epoch=1, lengths=lengths.tolist())
