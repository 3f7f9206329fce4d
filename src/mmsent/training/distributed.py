"""Data-parallel training over several processes (``torchrun``), built on ``torch.distributed``.

Every process holds the whole model and computes the same global batch order; each takes every ``world``-th row of
a batch, and the gradients are summed across processes before the optimizer step. The loss of each shard is
scaled by the *global* batch's weight, so the summed gradient is exactly the one-process gradient of the same
batch: N processes train like one process with the same batch size, up to float summation order (and dropout
masks, which each process draws for its own rows). Only the main process writes files.

Launch: ``torchrun --nproc-per-node N -m mmsent finetune ...`` (gloo on CPUs, NCCL with one GPU per process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched_processes() -> int:
    """How many processes ``torchrun`` started (``WORLD_SIZE``; 1 without it), known before joining the group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env() -> bool:
    """Joins the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    CPU tensors are reduced with gloo and CUDA tensors with NCCL (whichever device the training runs on); with a GPU
    per process, GPU ``LOCAL_RANK`` becomes this process's current device (so ``cuda`` means it). Returns whether
    this process is now part of a group of more than one process.
    """
    if launched_processes() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank < gpus:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl" if gpus else "gloo")
    return world()[1] > 1


def shard(batch: Sequence[int]) -> list[int]:
    """This process's rows of a global batch: every world-th row, from its rank."""
    rank, size = world()
    return list(batch[rank::size])


def sum_across(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over every process (in place; unchanged outside a process group)."""
    if world()[1] > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sums the gradients of ``params`` over every process, in one flat buffer (a parameter that received no
    gradient here counts as zeros, so every process sends the same layout)."""
    if world()[1] <= 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def same_on_all(value: torch.Tensor) -> torch.Tensor:
    """The main process's ``value`` on every process (in place), so that decisions taken from it agree even where
    the processes' own computations differ in the last bits (GPU kernels)."""
    if world()[1] > 1:
        dist.broadcast(value, src=0)
    return value


def on_main(fn: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Runs ``fn`` on the main process only, then waits until every process gets here (so all can read what it
    wrote). Returns ``fn``'s result on the main process, None elsewhere. If ``fn`` raises, every process raises
    (the main one its error, the others a RuntimeError pointing to it) instead of waiting forever."""
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- re-raised below, after telling the other processes
            error = exc
    if world()[1] > 1:
        failed = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(failed)  # also the barrier
        if failed.item() and error is None:
            raise RuntimeError(f"the main process failed in {getattr(fn, '__name__', fn)} (its log says why)")
    if error is not None:
        raise error
    return result
