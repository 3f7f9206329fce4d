"""The one training loop, shared by fusion-model training and encoder fine-tuning.

AdamW over decay/no-decay parameter groups, linear warm-up then cosine/linear/constant schedule, class-weighted
cross-entropy, length-grouped mini-batches, macro-F1 early stopping on evaluation rows, and (optionally) resumable
checkpoints. What is trained is a :class:`Task`: the loop only sees row indices, logits and state dicts.

On CPU a run resumed from a checkpoint ends bit-identical to an uninterrupted one: batch orders depend only on
(seed, epoch), and the checkpoint holds the weights, optimizer, scheduler, grad-scaler, every RNG, the best-epoch
snapshot and the partial epoch's loss sum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mmsent.labels import DEFAULT_LABELS, LABELS, LabelSet
from mmsent.training import distributed
from mmsent.training.checkpoint import (
    load_latest_checkpoint,
    load_optimizer_state,
    optimizer_state,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from mmsent.training.metrics import compute_metrics
from mmsent.training.seed import set_seed

logger = logging.getLogger("mmsent.training")

Schedule = Literal["cosine", "linear", "constant"]


class Task(Protocol):
    """What the loop trains, addressed by row index: ``forward`` gives training-mode logits of training rows (with
    gradients), ``evaluate`` eval-mode logits of every evaluation row in order, ``lengths`` each training row's
    sequence length (similar lengths share a batch) or None, and ``state``/``load_state`` the trained tensors that
    the best-epoch snapshot and the checkpoints hold."""

    def forward(self, rows: list[int]) -> torch.Tensor: ...
    def evaluate(self) -> torch.Tensor: ...
    def lengths(self) -> Sequence[int] | None: ...
    def train(self) -> None: ...
    def eval(self) -> None: ...
    def state(self) -> dict[str, torch.Tensor]: ...
    def load_state(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass
class LoopSettings:
    """How to train.

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per optimizer step.
        patience: epochs without a better evaluation macro-F1 before stopping; None never stops early.
        class_weighting: inverse-frequency class weights in the loss (see :func:`class_weights`).
        schedule: learning-rate decay after the linear warm-up.
        warmup_fraction: share of all steps spent warming up.
        grad_clip: max gradient norm; None or 0 disables clipping.
        amp_dtype: autocast dtype for the training forward pass (float16 adds a grad scaler); None is fp32.
        seed: seeds dropout and the batch orders.
        checkpoint_every: optimizer steps between checkpoints (one is also written at every epoch end when a
            checkpoint folder is given); None: epoch ends only.
        labels: the task's classes: the width of the loss weights and the names in the evaluation metrics.
    """

    epochs: int
    batch_size: int
    patience: int | None = None
    class_weighting: bool = True
    schedule: Schedule = "cosine"
    warmup_fraction: float = 0.05
    grad_clip: float | None = 1.0
    amp_dtype: torch.dtype | None = None
    seed: int = 0
    checkpoint_every: int | None = None
    labels: LabelSet = DEFAULT_LABELS


@dataclass
class StepInfo:
    """What a step callback sees after every optimizer step (and after any checkpoint of that step).

    Attributes:
        step: 1-based optimizer step over the whole run.
        epoch: 0-based epoch.
        batch: 0-based batch index within the epoch.
        guids: the ids of the rows this step trained on.
        loss: the step's loss.
    """

    step: int
    epoch: int
    batch: int
    guids: list[str]
    loss: float


StepCallback = Callable[[StepInfo], None]


@dataclass
class FitResult:
    """What :func:`fit` returns; the task holds the kept epoch's weights, in eval mode.

    Attributes:
        history: per epoch ``{"epoch", "train_loss", "lr"}`` plus ``val_loss``, ``val_accuracy``, ``val_macro_f1``
            when there are evaluation rows.
        best_epoch: 1-based epoch whose weights were kept (the last one without evaluation rows).
        metrics: :func:`compute_metrics` of the kept epoch on the evaluation rows plus ``"loss"``, or None.
        probs: ``(N_eval, classes)`` probabilities of the kept epoch, or None.
        steps: optimizer steps in total (including those before a resume).
        stopped_early: whether patience ran out before the last epoch.
        resumed_from_step: the checkpoint step this call resumed from, or None.
        class_weights: the loss weights, or None.
        seconds: wall-clock time of this call.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    metrics: dict[str, Any] | None
    probs: np.ndarray | None
    steps: int
    stopped_early: bool
    resumed_from_step: int | None
    class_weights: list[float] | None
    seconds: float = 0.0


def class_weights(labels: np.ndarray | torch.Tensor, num_classes: int = len(LABELS)) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * n_c)``: the mean weight over the given examples is 1.

    A class absent from ``labels`` gets weight 0 (it never appears as a target anyway).
    """
    y = torch.as_tensor(labels, dtype=torch.long).cpu()
    counts = torch.bincount(y, minlength=num_classes).double()
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = y.numel() / (int(present.sum()) * counts[present])
    return weights.float()


def param_groups(groups: Sequence[tuple[Sequence[torch.nn.Parameter], float]], weight_decay: float
                 ) -> list[dict[str, Any]]:
    """AdamW groups from ``(parameters, lr)`` pairs; biases and norm gains (1-d) are not decayed.

    Decaying LayerNorm gains and biases pulls them toward 0, which only hurts; matrices and embeddings decay.
    """
    out: list[dict[str, Any]] = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decay]
            if chosen:
                out.append({"params": chosen, "lr": lr, "weight_decay": weight_decay if decay else 0.0})
    return out


def lr_factor(schedule: Schedule, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier per step: linear warm-up to 1, then the schedule's decay to 0 at the end."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def epoch_batches(rows: Sequence[int], batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Shuffled batches of ``rows`` for one epoch, reproducible from (seed, epoch) alone (so a resume rebuilds them).

    With ``lengths`` (indexed by row), rows are sorted by length within random chunks of 16 batches and the batches
    then shuffled, as Hugging Face's ``group_by_length`` does: tweets are short, but a random batch usually holds one
    long text that the whole batch would be padded to.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    perm = rows_t[torch.randperm(len(rows_t), generator=gen)]
    if lengths is None:
        return [b.tolist() for b in perm.split(batch_size)]
    lengths_t = torch.as_tensor(list(lengths), dtype=torch.long)
    batches: list[torch.Tensor] = []
    for chunk in perm.split(16 * batch_size):
        order = torch.argsort(lengths_t[chunk], descending=True, stable=True)
        batches.extend(chunk[order].split(batch_size))
    return [batches[i].tolist() for i in torch.randperm(len(batches), generator=gen).tolist()]


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in state.items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss.detach()):
        raise FloatingPointError(f"{where}: the loss became {loss.item()}; lower the learning rate or check the "
                                 "features for non-finite values")


def _shard_loss(task: Task, batch: list[int], labels: torch.Tensor, weights: torch.Tensor | None,
                autocast: Callable[[], contextlib.AbstractContextManager]) -> torch.Tensor:
    """This process's part of the global batch's class-weighted mean loss: its rows' weighted loss sum divided by
    the whole batch's weight, so that the parts (and their gradients) sum to the one-process loss."""
    target = labels[batch]
    total = weights[target].sum() if weights is not None else torch.tensor(float(len(batch)), device=labels.device)
    rows = distributed.shard(batch)
    if not rows:  # a last batch smaller than the number of processes: nothing to add here
        return torch.zeros((), device=labels.device)
    with autocast():
        logits = task.forward(rows)
    return F.cross_entropy(logits.float(), labels[rows], weight=weights, reduction="sum") / total


def fit(task: Task, labels: torch.Tensor, train_rows: Sequence[int], eval_labels: torch.Tensor | None,
        groups: Sequence[tuple[Sequence[torch.nn.Parameter], float]], weight_decay: float, settings: LoopSettings,
        *, device: torch.device, checkpoint_dir: str | Path | None = None, run_key: str = "",
        callbacks: Sequence[StepCallback] = (), row_ids: Sequence[str] | None = None, progress: bool = False,
        desc: str = "train") -> FitResult:
    """Trains ``task`` on ``train_rows`` and keeps the epoch with the best evaluation macro-F1.

    Args:
        task: what to train.
        labels: class index of every row :meth:`Task.forward` can be asked for (on ``device``).
        train_rows: the rows to train on.
        eval_labels: class index of every row :meth:`Task.evaluate` returns; None trains for exactly
            ``settings.epochs`` epochs and keeps the last weights.
        groups: ``(parameters, learning rate)`` pairs (see :func:`param_groups`).
        weight_decay: AdamW weight decay of the matrices.
        settings: epochs, batch size, patience, schedule, ...
        device: where the task's tensors live.
        checkpoint_dir: where resumable checkpoints go; None disables checkpointing and resuming.
        run_key: identifies the run; a checkpoint with another key is ignored instead of resumed.
        callbacks: called after every step (an exception from one stops the run, as a kill would).
        row_ids: names of the rows for the callbacks (default: their indices).
        progress: a progress bar per epoch (on the main process).
        desc: the progress bar's and log lines' label.

    Inside a ``torch.distributed`` process group (see :mod:`mmsent.training.distributed`) every process runs this
    with the same arguments; each trains on its share of every batch, the gradients are summed, and only the main
    process writes checkpoints.

    Raises:
        ValueError: for no training rows, or epochs / batch size below 1.
        FloatingPointError: when the loss stops being finite.
    """
    if settings.epochs < 1 or settings.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {settings.epochs} and {settings.batch_size}")
    train_rows = list(train_rows)
    if not train_rows:
        raise ValueError(f"{desc}: no rows to train on")
    start_time = time.perf_counter()
    set_seed(settings.seed)
    run = _FitRun(task, labels, train_rows, eval_labels, groups, weight_decay, settings, device=device,
                  checkpoint_dir=checkpoint_dir, run_key=run_key, desc=desc)
    resumed_from = run.restore()
    progress = progress and distributed.is_main()
    while not run.state.done and run.state.epoch < settings.epochs:
        run.train_epoch(callbacks, row_ids, progress)
        run.end_epoch()
    if run.best:  # the kept epoch's weights; without evaluation rows the last epoch's are already in place
        task.load_state(run.best)
    task.eval()
    st = run.state
    return FitResult(history=st.history, best_epoch=st.best_epoch, metrics=st.best_metrics, probs=run.best_probs,
                     steps=st.step, stopped_early=st.stopped_early, resumed_from_step=resumed_from,
                     class_weights=run.weights.cpu().tolist() if run.weights is not None else None,
                     seconds=time.perf_counter() - start_time)


@dataclass
class FitState:
    """Where a fit stands: saved as ``state`` in every checkpoint's meta (``best_metrics`` only once there is one)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_f1: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    done: bool = False
    stopped_early: bool = False
    best_metrics: dict[str, Any] | None = None

    def to_meta(self) -> dict[str, Any]:
        meta = dataclasses.asdict(self)
        if meta["best_metrics"] is None:
            del meta["best_metrics"]
        return meta


class _FitRun:
    """One fit's optimizer, schedule, state and best snapshot, and the steps :func:`fit` takes with them: restore,
    train an epoch, evaluate it, checkpoint."""

    def __init__(self, task: Task, labels: torch.Tensor, train_rows: list[int], eval_labels: torch.Tensor | None,
                 groups: Sequence[tuple[Sequence[torch.nn.Parameter], float]], weight_decay: float,
                 settings: LoopSettings, *, device: torch.device, checkpoint_dir: str | Path | None, run_key: str,
                 desc: str) -> None:
        self.task, self.labels, self.train_rows, self.eval_labels = task, labels, train_rows, eval_labels
        self.settings, self.checkpoint_dir, self.run_key, self.desc = settings, checkpoint_dir, run_key, desc
        self.weights = (class_weights(labels[train_rows], len(settings.labels)).to(device)
                        if settings.class_weighting else None)
        self.optimizer = torch.optim.AdamW(param_groups(groups, weight_decay))
        total_steps = settings.epochs * math.ceil(len(train_rows) / settings.batch_size)
        warmup = max(1, int(settings.warmup_fraction * total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_factor(settings.schedule, warmup, total_steps))
        self.scaler = torch.amp.GradScaler("cuda") if settings.amp_dtype == torch.float16 else None
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.lengths = task.lengths()
        self.autocast = ((lambda: torch.autocast(device.type, dtype=settings.amp_dtype))
                         if settings.amp_dtype is not None else contextlib.nullcontext)
        self.data_parallel = distributed.world()[1] > 1
        self.state = FitState()
        self.best: dict[str, torch.Tensor] = {}
        self.best_probs: np.ndarray | None = None

    def restore(self) -> int | None:
        """Continues from the latest checkpoint of this run, if any; the step it resumed from."""
        ckpt = load_latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if ckpt is not None and ckpt[1].get("run_key") != self.run_key:
            logger.warning("%s: ignoring a checkpoint of another run (different data or settings)",
                           self.checkpoint_dir)
            ckpt = None
        if ckpt is None:
            return None
        tensors, meta = ckpt
        self.task.load_state(_strip(tensors, "model."))
        load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        restore_rng(tensors, meta["rng"])
        self.best = _strip(tensors, "best.")
        self.best_probs = tensors["best_probs"].numpy() if "best_probs" in tensors else None
        self.state = FitState(**meta["state"])
        st = self.state
        logger.info("%s: resuming from step %d (epoch %d, batch %d)", self.desc, st.step, st.epoch + 1, st.batch)
        return st.step

    def checkpoint(self) -> None:
        """Saves everything a resume needs (on the main process, where checkpointing is on)."""
        if self.checkpoint_dir is None or not distributed.is_main():
            return
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        rng_tensors, rng_meta = rng_state()
        extra = {"best_probs": torch.from_numpy(self.best_probs)} if self.best_probs is not None else {}
        tensors = {**_prefixed(self.task.state(), "model."), **opt_tensors, **rng_tensors,
                   **_prefixed(self.best, "best."), **extra}
        meta = {"run_key": self.run_key, "state": self.state.to_meta(), "optimizer": opt_meta,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None, "rng": rng_meta}
        save_checkpoint(self.checkpoint_dir, self.state.step, tensors, meta)

    def train_epoch(self, callbacks: Sequence[StepCallback], row_ids: Sequence[str] | None, progress: bool) -> None:
        """The rest of the current epoch's batches (all of them unless resumed mid-epoch)."""
        from tqdm.auto import tqdm

        st, settings = self.state, self.settings
        epoch = st.epoch
        batches = epoch_batches(self.train_rows, settings.batch_size, settings.seed, epoch, self.lengths)
        self.task.train()
        bar = tqdm(total=len(batches), initial=st.batch, disable=not progress, unit="step", dynamic_ncols=True,
                   desc=f"{self.desc} {epoch + 1}/{settings.epochs}", leave=False)
        for b in range(st.batch, len(batches)):
            batch = batches[b]
            loss_value = self._step(batch)
            st.batch, st.step = b + 1, st.step + 1
            st.loss_sum, st.loss_count = st.loss_sum + loss_value * len(batch), st.loss_count + len(batch)
            bar.update(1)
            if settings.checkpoint_every and st.step % settings.checkpoint_every == 0 and b + 1 < len(batches):
                self.checkpoint()
            for callback in callbacks:
                ids = [str(row_ids[i]) for i in batch] if row_ids is not None else [str(i) for i in batch]
                callback(StepInfo(st.step, epoch, b, ids, loss_value))
        bar.close()

    def _step(self, batch: list[int]) -> float:
        """One optimizer step on ``batch``; its loss."""
        if self.data_parallel:
            loss = _shard_loss(self.task, batch, self.labels, self.weights, self.autocast)
            batch_loss = distributed.sum_across(loss.detach().clone())  # every process sees (and checks) it
        else:
            with self.autocast():
                logits = self.task.forward(batch)
            loss = F.cross_entropy(logits.float(), self.labels[batch], weight=self.weights)
            batch_loss = loss.detach()
        _check_finite(batch_loss, self.desc)
        self.optimizer.zero_grad(set_to_none=True)
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss  # scaled even when empty: every
        if scaled.requires_grad:  # process's scaler then steps alike (a shard with no rows has nothing to backprop)
            scaled.backward()
        distributed.sum_gradients(self.trainable)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.settings.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return float(batch_loss)

    def end_epoch(self) -> None:
        """Records the finished epoch (evaluated, when there are evaluation rows), decides on stopping, checkpoints."""
        st, settings = self.state, self.settings
        record: dict[str, Any] = {"epoch": st.epoch + 1, "train_loss": st.loss_sum / max(1, st.loss_count),
                                  "lr": self.optimizer.param_groups[0]["lr"]}
        if self.eval_labels is not None:
            self._evaluate(record)
        else:
            st.best_epoch = st.epoch + 1
        st.history.append(record)
        st.epoch, st.batch, st.loss_sum, st.loss_count = st.epoch + 1, 0, 0.0, 0
        if self.eval_labels is not None and settings.patience is not None and settings.patience <= st.bad_epochs:
            st.done = True
            st.stopped_early = st.epoch < settings.epochs
        self.checkpoint()

    def _evaluate(self, record: dict[str, Any]) -> None:
        """Scores the epoch on the evaluation rows into ``record``; keeps its weights when its macro-F1 is the best."""
        st, task = self.state, self.task
        assert self.eval_labels is not None
        task.eval()
        with torch.no_grad():
            eval_logits = task.evaluate().float()
        if self.data_parallel:  # every process keeps the same epoch and stops at the same time
            eval_logits = distributed.same_on_all(eval_logits.contiguous())
        # Same weighting as the training loss, so the two curves are comparable.
        eval_loss = float(F.cross_entropy(eval_logits, self.eval_labels, weight=self.weights))
        probs = torch.softmax(eval_logits, dim=-1).cpu().numpy()
        metrics = {**compute_metrics(self.eval_labels.cpu().numpy(), probs.argmax(axis=1), self.settings.labels),
                   "loss": eval_loss}
        record.update(val_loss=eval_loss, val_accuracy=metrics["accuracy"], val_macro_f1=metrics["macro_f1"])
        if st.best_f1 is None or metrics["macro_f1"] > st.best_f1:
            st.best_f1, st.best_epoch, st.bad_epochs, st.best_metrics = metrics["macro_f1"], st.epoch + 1, 0, metrics
            self.best = {k: v.detach().clone() for k, v in task.state().items()}
            self.best_probs = probs
        else:
            st.bad_epochs += 1
        task.train()
        logger.debug("%s epoch %d: train loss %.4f, evaluation macro-F1 %.3f (best %.3f @ %d)", self.desc,
                     st.epoch + 1, record["train_loss"], metrics["macro_f1"], st.best_f1, st.best_epoch)
