"""The shared training loop and its checkpoints: kill and resume gives the uninterrupted result, bit for bit."""

from __future__ import annotations

import pytest
import torch

from mmsent.fusion import create_fusion_model
from mmsent.training.checkpoint import load_latest_checkpoint, save_checkpoint
from mmsent.training.loop import LoopSettings, fit, lr_factor
from mmsent.training.seed import set_seed
from mmsent.training.trainer import FusionTask, to_inputs

from .helpers import IMAGE_DIM, TEXT_DIM, make_task, tiny_cfg


class Kill(Exception):
    pass


def _fit(folder, callbacks=()):
    """single_stream (dropout, length-grouped batches) on 60 rows, 8 steps per epoch, 3 epochs, checkpoints every 5."""
    feats, labels = make_task(80, seed=3)
    set_seed(0)
    model = create_fusion_model("single_stream", IMAGE_DIM, TEXT_DIM, tiny_cfg())
    train, val = to_inputs(feats.select(feats.guids[:60]), "cpu"), to_inputs(feats.select(feats.guids[60:]), "cpu")
    y = torch.as_tensor(labels)
    settings = LoopSettings(epochs=3, batch_size=8, patience=None, seed=4, checkpoint_every=5)
    result = fit(FusionTask(model, train, val, group_by_length=True), y[:60], range(60), y[60:],
                 [(list(model.parameters()), 3e-3)], 0.01, settings, device=torch.device("cpu"),
                 checkpoint_dir=folder, run_key="k", callbacks=callbacks)
    return model, result


def test_a_killed_fit_resumes_to_the_same_weights_and_history(tmp_path):
    model, plain = _fit(None)

    def kill(info):
        if info.step == 12:  # mid-epoch 2, after the step-10 checkpoint: steps 11 and 12 are redone
            raise Kill

    with pytest.raises(Kill):
        _fit(tmp_path / "ckpt", [kill])
    assert load_latest_checkpoint(tmp_path / "ckpt")[1]["state"]["step"] == 10
    resumed_model, resumed = _fit(tmp_path / "ckpt")
    assert resumed.resumed_from_step == 10 and resumed.steps == plain.steps == 24
    assert resumed.history == plain.history and resumed.best_epoch == plain.best_epoch
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (resumed.probs == plain.probs).all()


def test_a_checkpoint_of_another_run_is_ignored(tmp_path, caplog):
    _fit(tmp_path / "ckpt")
    feats, labels = make_task(20, seed=1)
    set_seed(0)
    model = create_fusion_model("concat", IMAGE_DIM, TEXT_DIM, tiny_cfg())
    inputs = to_inputs(feats, "cpu")
    result = fit(FusionTask(model, inputs, inputs, True), torch.as_tensor(labels), range(20), None,
                 [(list(model.parameters()), 1e-3)], 0.0, LoopSettings(epochs=1, batch_size=8),
                 device=torch.device("cpu"), checkpoint_dir=tmp_path / "ckpt", run_key="other")
    assert result.resumed_from_step is None and "another run" in caplog.text
    assert result.best_epoch == 1 and result.metrics is None  # no evaluation rows: the last epoch is kept


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))}, {"state": {"step": step}}, keep=2)
    (tmp_path / "step-00000002.safetensors").write_bytes(b"not safetensors")
    tensors, meta = load_latest_checkpoint(tmp_path)
    assert meta["state"]["step"] == 1 and torch.equal(tensors["w"], torch.ones(2))
    save_checkpoint(tmp_path, 3, {"w": torch.zeros(2)}, {"state": {"step": 3}}, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003.json", "step-00000003.safetensors"]


def test_schedule_warms_up_then_decays_to_zero():
    cosine, linear = lr_factor("cosine", 4, 20), lr_factor("linear", 4, 20)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(4) == pytest.approx(1.0) and cosine(20) == pytest.approx(0.0) and linear(12) == pytest.approx(0.5)
    assert lr_factor("constant", 4, 20)(15) == 1.0


def test_a_non_finite_loss_stops_training_with_the_reason():
    feats, labels = make_task(20, seed=1)
    feats.image.pooled[0, 0] = float("nan")
    set_seed(0)
    model = create_fusion_model("concat", IMAGE_DIM, TEXT_DIM, tiny_cfg())
    inputs = to_inputs(feats, "cpu")
    with pytest.raises(FloatingPointError, match="loss became nan"):
        fit(FusionTask(model, inputs, inputs, True), torch.as_tensor(labels), range(20), None,
            [(list(model.parameters()), 1e-3)], 0.0, LoopSettings(epochs=1, batch_size=20),
            device=torch.device("cpu"))
