"""The fine-tuning loop: class-weighted cross-entropy through a small head, AdamW with linear warm-up and decay,
early stopping on rows held out from the *training* rows, resumable from checkpoints."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmsent.config import EncoderFinetuneConfig, FinetuneConfig, JointFinetuneConfig
from mmsent.device import autocast_dtype
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.batching import epoch_batches, length_sorted_batches
from mmsent.finetune.checkpoint import (
    load_latest_checkpoint,
    load_optimizer_state,
    optimizer_state,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from mmsent.labels import LABELS
from mmsent.training.metrics import compute_metrics
from mmsent.training.seed import set_seed
from mmsent.training.trainer import class_weights

logger = logging.getLogger("mmsent.finetune")

# What the loop reads from a settings section: epochs, batch_size, head_lr, weight_decay, warmup_fraction, grad_clip,
# dropout (the encoder learning rates are the adapter's business, see TuningAdapter.lr_groups).
TrainSettings = EncoderFinetuneConfig | JointFinetuneConfig


@dataclass
class StepInfo:
    """What a step callback sees: called after every optimizer step (and after any checkpoint of that step).

    Attributes:
        step: 1-based optimizer step over the whole run.
        epoch: 0-based epoch.
        batch: 0-based batch index within the epoch.
        guids: the guids of the rows this step trained on.
        loss: the step's loss.
    """

    step: int
    epoch: int
    batch: int
    guids: list[str]
    loss: float


StepCallback = Callable[[StepInfo], None]


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns; the adapter's encoder holds the kept weights.

    Attributes:
        head: the trained classification head (dropout + linear on the pooled vector).
        history: per epoch ``{"epoch", "train_loss", "holdout_loss", "holdout_macro_f1", "holdout_accuracy", "lr"}``.
        best_epoch: 1-based epoch whose weights were kept (the last one without a holdout).
        holdout_metrics: metrics of the kept epoch on the internal holdout rows, or None without one.
        steps: optimizer steps taken in total (including those before a resume).
        resumed_from_step: the checkpoint step this call resumed from, or None.
    """

    head: torch.nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    holdout_metrics: dict[str, Any] | None
    steps: int
    train_rows: int
    holdout_rows: int
    seconds: float
    resumed_from_step: int | None = None
    class_weights: list[float] | None = None
    amp: str | None = None
    adapter: dict[str, Any] = field(default_factory=dict)


def holdout_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified ``(train, holdout)`` row indices; ``fraction=0`` keeps every row for training."""
    n = len(labels)
    if fraction <= 0:
        return list(range(n)), []
    if not 0 < fraction < 1:
        raise ValueError(f"finetune.holdout_fraction must be in [0, 1), got {fraction}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    try:
        train, hold = train_test_split(idx, test_size=fraction, random_state=seed, stratify=np.asarray(labels))
    except ValueError:  # a class too rare to stratify: an unstratified holdout still serves early stopping
        logger.warning("too few rows of some label to stratify the fine-tuning holdout; drawing it at random")
        train, hold = train_test_split(idx, test_size=fraction, random_state=seed)
    return sorted(int(i) for i in train), sorted(int(i) for i in hold)


def make_head(dim: int, dropout: float) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(dim, len(LABELS)))


def _param_groups(adapter: TuningAdapter, head: torch.nn.Module, ecfg: TrainSettings) -> list[dict[str, Any]]:
    # Biases and norm gains are not decayed; the adapter decides each of its groups' lr (layer-wise decay, per encoder).
    groups: list[dict[str, Any]] = []
    for params, group_lr in adapter.lr_groups(ecfg) + [(list(head.parameters()), ecfg.head_lr)]:
        params = [p for p in params if p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": group_lr, "weight_decay": ecfg.weight_decay if decay else 0.0})
    return groups


def split_outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A head's output -> ``(logits, auxiliary logits)``; heads return a tuple only for auxiliary losses."""
    if isinstance(out, tuple):
        return out[0], tuple(out[1:])
    return out, ()


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in state.items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_tuned_state(network: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Loads a partial state dict, refusing keys the network does not have."""
    missing_from_net = sorted(set(state) - set(network.state_dict()))
    if missing_from_net:
        raise ValueError(f"tuned weights name {len(missing_from_net)} tensors the encoder lacks, e.g. "
                         f"{missing_from_net[:3]}; was it made from another encoder?")
    network.load_state_dict(state, strict=False)


@torch.no_grad()
def _evaluate(adapter: TuningAdapter, head: torch.nn.Module, rows: list[torch.Tensor], y: torch.Tensor,
              idx: list[int], weights: torch.Tensor | None, lengths: list[int] | None) -> dict[str, Any]:
    adapter.eval()
    head.eval()
    logits = torch.empty(len(rows), len(LABELS), device=y.device)
    for batch in length_sorted_batches(idx, 64, lengths):
        logits[batch] = split_outputs(head(adapter.forward([rows[i] for i in batch])))[0].float()
    sel = torch.as_tensor(idx, device=y.device)
    loss = float(F.cross_entropy(logits[sel], y[sel], weight=weights))
    metrics = compute_metrics(y[sel].cpu().numpy(), logits[sel].argmax(1).cpu().numpy())
    return {**metrics, "loss": loss}


def finetune(adapter: TuningAdapter, items: Sequence, labels: Sequence[int], guids: Sequence[str],
             ecfg: TrainSettings, fcfg: FinetuneConfig, checkpoint_dir: str | Path | None, *,
             run_key: str = "", progress: bool = False, callbacks: Sequence[StepCallback] = (),
             prepare_batch_size: int = 32, desc: str = "fine-tune",
             rows: Sequence[Any] | None = None, head: torch.nn.Module | None = None) -> FinetuneResult:
    """Fine-tunes ``adapter``'s encoder on ``items`` (rows of the run's training split only) and keeps the best epoch.

    On CPU, an interrupted call resumed from its checkpoint ends with weights bit-identical to an uninterrupted one:
    batch orders depend only on (seed, epoch), and the checkpoint holds the weights, the optimizer, scheduler and
    grad-scaler state, every RNG, the best-epoch snapshot and the partial epoch's loss sum.

    Args:
        adapter: the encoder's trunk/top view; its encoder is changed in place.
        items: what the adapter prepares (cleaned texts / image paths), one per guid.
        labels: class indices, one per item.
        guids: row ids, reported to ``callbacks``.
        ecfg: this encoder's settings (epochs, batch size, learning rates, ...), or the joint section when
            ``adapter`` is a :class:`~mmsent.finetune.joint.JointAdapter`.
        fcfg: shared settings (seed, holdout fraction, patience, class weighting, checkpoint interval, amp).
        checkpoint_dir: where resumable checkpoints go; None disables checkpointing and resuming.
        run_key: identifies the run; a checkpoint with another key is ignored instead of resumed.
        progress: tqdm bars with ETA and the running loss.
        callbacks: called after every step with a :class:`StepInfo` (an exception from one stops the run, as a kill
            would; the next call resumes from the last checkpoint).
        prepare_batch_size: batch size of the one-off trunk pass.
        desc: progress bar label.
        rows: ``adapter.prepare(items)`` when the caller already has it (cross-fitting shares one trunk pass among
            its folds); None prepares here.
        head: what maps ``adapter.forward`` to logits; None builds the default (dropout + linear on the pooled
            vector). In training mode a head may return ``(logits, *auxiliary_logits)``: each auxiliary term adds
            ``head.aux_weight`` times its (class-weighted) cross-entropy to the loss.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    n = len(items)
    if not n == len(labels) == len(guids):
        raise ValueError(f"finetune: {n} items, {len(labels)} labels, {len(guids)} guids")
    if ecfg.epochs < 1 or ecfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {ecfg.epochs} and {ecfg.batch_size}")
    start_time = time.perf_counter()
    device = adapter.device
    seed = fcfg.seed
    set_seed(seed)
    train_idx, hold_idx = holdout_split(list(labels), fcfg.holdout_fraction, seed)
    if not train_idx:
        raise ValueError("no rows left to fine-tune on")
    if rows is None:
        rows = adapter.prepare(list(items), batch_size=prepare_batch_size, progress=progress)
    elif len(rows) != n:
        raise ValueError(f"finetune: {len(rows)} prepared rows for {n} items")
    rows = list(rows)
    lengths = adapter.lengths(rows)
    y = torch.as_tensor(list(labels), dtype=torch.long, device=device)
    weights = class_weights(y[train_idx].cpu()).to(device) if fcfg.class_weighting else None

    head = (head if head is not None else make_head(adapter.dim, ecfg.dropout)).to(device)
    aux_weight = float(getattr(head, "aux_weight", 0.0))
    optimizer = torch.optim.AdamW(_param_groups(adapter, head, ecfg))
    steps_per_epoch = math.ceil(len(train_idx) / ecfg.batch_size)
    total_steps = ecfg.epochs * steps_per_epoch
    scheduler = get_linear_schedule_with_warmup(optimizer, int(ecfg.warmup_fraction * total_steps), total_steps)
    amp_dtype = autocast_dtype(device) if fcfg.amp else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    trainable = [p for g in optimizer.param_groups for p in g["params"]]

    st: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_count": 0, "history": [],
                          "best_f1": None, "best_epoch": 0, "bad_epochs": 0, "done": False}
    best: dict[str, torch.Tensor] = {}
    resumed_from = None
    ckpt = load_latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and ckpt[1].get("run_key") != run_key:
        logger.warning("%s: ignoring a checkpoint of another run (different data or settings)", checkpoint_dir)
        ckpt = None
    if ckpt is not None:
        tensors, meta = ckpt
        load_tuned_state(adapter.network, _strip(tensors, "model."))
        head.load_state_dict(_strip(tensors, "head."))
        load_optimizer_state(optimizer, tensors, meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        restore_rng(tensors, meta["rng"])
        best = _strip(tensors, "best.")
        st = meta["state"]
        resumed_from = st["step"]
        logger.info("%s: resuming from step %d (epoch %d, batch %d)", desc, st["step"], st["epoch"] + 1, st["batch"])

    def checkpoint() -> None:
        if checkpoint_dir is None:
            return
        opt_tensors, opt_meta = optimizer_state(optimizer)
        rng_tensors, rng_meta = rng_state()
        tensors = {**_prefixed(adapter.tuned_state(), "model."), **_prefixed(head.state_dict(), "head."),
                   **opt_tensors, **rng_tensors, **_prefixed(best, "best.")}
        meta = {"run_key": run_key, "state": st, "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_meta}
        save_checkpoint(checkpoint_dir, st["step"], tensors, meta)

    def snapshot() -> dict[str, torch.Tensor]:
        return {**_prefixed(adapter.tuned_state(), "model."), **_prefixed(head.state_dict(), "head.")}

    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext)
    while not st["done"] and st["epoch"] < ecfg.epochs:
        epoch = st["epoch"]
        batches = epoch_batches(train_idx, ecfg.batch_size, seed, epoch, lengths)
        adapter.train()
        head.train()
        bar = tqdm(total=len(batches), initial=st["batch"], disable=not progress, unit="step", dynamic_ncols=True,
                   desc=f"{desc} {epoch + 1}/{ecfg.epochs}", leave=False)
        for b in range(st["batch"], len(batches)):
            batch = batches[b]
            with autocast():
                logits, aux_logits = split_outputs(head(adapter.forward([rows[i] for i in batch])))
            loss = F.cross_entropy(logits.float(), y[batch], weight=weights)
            for aux in aux_logits:
                loss = loss + aux_weight * F.cross_entropy(aux.float(), y[batch], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if ecfg.grad_clip and ecfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, ecfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            loss_value = float(loss.detach())
            st.update(batch=b + 1, step=st["step"] + 1, loss_sum=st["loss_sum"] + loss_value * len(batch),
                      loss_count=st["loss_count"] + len(batch))
            bar.update(1)
            bar.set_postfix(loss=f"{st['loss_sum'] / st['loss_count']:.4f}")
            if fcfg.checkpoint_every > 0 and st["step"] % fcfg.checkpoint_every == 0 and b + 1 < len(batches):
                checkpoint()
            for callback in callbacks:
                callback(StepInfo(st["step"], epoch, b, [str(guids[i]) for i in batch], loss_value))
        bar.close()

        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / max(1, st["loss_count"]),
                                  "lr": optimizer.param_groups[0]["lr"]}
        if hold_idx:
            metrics = _evaluate(adapter, head, rows, y, hold_idx, weights, lengths)
            record.update(holdout_loss=metrics["loss"], holdout_macro_f1=metrics["macro_f1"],
                          holdout_accuracy=metrics["accuracy"])
            if st["best_f1"] is None or metrics["macro_f1"] > st["best_f1"]:
                st.update(best_f1=metrics["macro_f1"], best_epoch=epoch + 1, bad_epochs=0, best_metrics=metrics)
                best = {k: v.detach().clone() for k, v in snapshot().items()}
            else:
                st["bad_epochs"] += 1
            logger.info("%s epoch %d: train loss %.4f, holdout macro-F1 %.3f (best %.3f @ %d)", desc, epoch + 1,
                        record["train_loss"], metrics["macro_f1"], st["best_f1"], st["best_epoch"])
        else:
            st["best_epoch"] = epoch + 1
            logger.info("%s epoch %d: train loss %.4f", desc, epoch + 1, record["train_loss"])
        st["history"].append(record)
        st.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_count=0)
        if hold_idx and 0 < fcfg.patience <= st["bad_epochs"]:
            st["done"] = True
        checkpoint()

    if best:  # the kept epoch's weights (holdout runs); otherwise the last epoch's are already in place
        load_tuned_state(adapter.network, _strip(best, "model."))
        head.load_state_dict(_strip(best, "head."))
    adapter.eval()
    head.eval()
    return FinetuneResult(
        head=head, history=st["history"], best_epoch=st["best_epoch"], holdout_metrics=st.get("best_metrics"),
        steps=st["step"], train_rows=len(train_idx), holdout_rows=len(hold_idx),
        seconds=time.perf_counter() - start_time, resumed_from_step=resumed_from,
        class_weights=weights.cpu().tolist() if weights is not None else None,
        amp=str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None, adapter=adapter.describe(),
    )
