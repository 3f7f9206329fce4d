"""Data-parallel training: two gloo processes train like one process with the same global batch."""

from __future__ import annotations

import datetime
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmsent.fusion import create_fusion_model
from mmsent.training import distributed
from mmsent.training.loop import LoopSettings, fit
from mmsent.training.seed import set_seed
from mmsent.training.trainer import FusionTask, to_inputs

from .helpers import IMAGE_DIM, TEXT_DIM, make_task, tiny_cfg

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

# 41 training rows in batches of 8: the last batch holds one row, so the second process gets none of it.
ROWS, BATCH = 41, 8
TOLERANCE = 1e-5  # float summation order is all that differs


def _train(folder) -> tuple[dict[str, torch.Tensor], list[dict]]:
    feats, labels = make_task(ROWS + 15, seed=5)
    set_seed(0)
    model = create_fusion_model("concat", IMAGE_DIM, TEXT_DIM, tiny_cfg(dropout=0.0))
    train = to_inputs(feats.select(feats.guids[:ROWS]), "cpu")
    val = to_inputs(feats.select(feats.guids[ROWS:]), "cpu")
    y = torch.as_tensor(labels)
    settings = LoopSettings(epochs=3, batch_size=BATCH, patience=None, seed=2, checkpoint_every=4)
    result = fit(FusionTask(model, train, val, group_by_length=False), y[:ROWS], range(ROWS), y[ROWS:],
                 [(list(model.parameters()), 3e-3)], 0.01, settings, device=torch.device("cpu"),
                 checkpoint_dir=folder, run_key="k")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, result.history


def _worker(rank: int, world: int, port: int, folder: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))  # a desynchronised collective fails, not hangs
    try:
        assert distributed.world() == (rank, world)
        state, history = _train(os.path.join(folder, "ckpt"))
        torch.save({"state": state, "history": history}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_takes_every_world_th_row(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: (1, 3))
    assert distributed.shard([10, 11, 12, 13, 14, 15, 16]) == [11, 14]
    monkeypatch.setattr(distributed, "world", lambda: (0, 1))
    assert distributed.shard([10, 11]) == [10, 11]


def test_two_processes_train_like_one(tmp_path):
    one_state, one_history = _train(None)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for rank in ranks:  # both processes end with the one-process weights, and saw the same losses
        for name, value in one_state.items():
            torch.testing.assert_close(rank["state"][name], value, atol=TOLERANCE, rtol=TOLERANCE)
        assert [h["epoch"] for h in rank["history"]] == [h["epoch"] for h in one_history]
        for got, want in zip(rank["history"], one_history, strict=True):
            assert got["train_loss"] == pytest.approx(want["train_loss"], abs=TOLERANCE)
            assert got["val_macro_f1"] == want["val_macro_f1"]
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())  # the main process wrote the checkpoints
    assert saved and all(name.startswith("step-") for name in saved), saved


def test_a_failure_on_the_main_process_stops_every_process(tmp_path):
    mp.spawn(_failing_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.txt", "rank1.txt"]
    assert (tmp_path / "rank0.txt").read_text() == "OSError: disk full"
    assert (tmp_path / "rank1.txt").read_text() == "RuntimeError: the main process failed in write (its log says why)"


def _failing_worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))

    def write() -> None:
        raise OSError("disk full")

    try:
        distributed.on_main(write)
    except Exception as exc:  # noqa: BLE001 -- what each process saw is the test's result
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
            fh.write(f"{type(exc).__name__}: {exc}")
    finally:
        dist.destroy_process_group()
