"""Encoder fine-tuning through the shared loop: a small head on the pooled vector, early stopping on rows held out
from the *training* rows, resumable from checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmsent.config import EncoderFinetuneConfig, FinetuneConfig, TextFinetuneConfig
from mmsent.data.splits import holdout_rows
from mmsent.device import training_autocast_dtype
from mmsent.finetune.base import TuningAdapter
from mmsent.labels import LABELS, LabelsLike, as_label_set
from mmsent.training.loop import LoopSettings, StepCallback, fit
from mmsent.training.seed import set_seed

logger = logging.getLogger("mmsent.finetune")


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns (recorded in ``finetuned.json``); the adapter's encoder holds the kept weights.

    ``history`` holds per epoch ``epoch``, ``train_loss`` and ``lr``, plus ``val_loss``/``val_macro_f1``/
    ``val_accuracy`` on the holdout rows; ``best_epoch`` is the kept 1-based epoch (the last without a holdout),
    ``holdout_metrics`` its metrics (None without a holdout) and ``steps`` counts steps from before a resume too.
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
    if fraction <= 0:
        return list(range(len(labels))), []
    if not 0 < fraction < 1:
        raise ValueError(f"finetune.holdout_fraction must be in [0, 1), got {fraction}")
    try:
        return holdout_rows(labels, fraction, seed)
    except ValueError:  # a class too rare to stratify: an unstratified holdout still serves early stopping
        logger.warning("too few rows of some label to stratify the fine-tuning holdout; drawing it at random")
        return holdout_rows(labels, fraction, seed, stratify=False)


def make_head(dim: int, dropout: float, num_classes: int = len(LABELS)) -> torch.nn.Module:
    """The classification head fine-tuning trains on the pooled vector (discarded afterwards)."""
    return torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(dim, num_classes))


class EncoderTask:
    """An encoder's trainable top plus a head over prepared rows, as :func:`~mmsent.training.loop.fit` trains it."""

    def __init__(self, adapter: TuningAdapter, head: torch.nn.Module, rows: Sequence[torch.Tensor],
                 eval_rows: Sequence[int], num_classes: int = len(LABELS)) -> None:
        self.adapter, self.head, self.rows, self.eval_rows = adapter, head, rows, list(eval_rows)
        self.num_classes = num_classes
        self._lengths = adapter.lengths(rows)

    def forward(self, rows: list[int]) -> torch.Tensor:
        return self.head(self.adapter.forward([self.rows[i] for i in rows]))

    def evaluate(self) -> torch.Tensor:
        # Longest first in batches of 64, then back in order: each batch pads only to its own longest row.
        order = sorted(self.eval_rows, key=lambda i: self._lengths[i] if self._lengths else 0, reverse=True)
        position = {row: k for k, row in enumerate(self.eval_rows)}
        logits = torch.empty(len(order), self.num_classes, device=self.adapter.device)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            logits[[position[i] for i in batch]] = self.forward(batch).float()
        return logits

    def lengths(self) -> list[int] | None:
        return self._lengths

    def train(self) -> None:
        self.adapter.train()
        self.head.train()

    def eval(self) -> None:
        self.adapter.eval()
        self.head.eval()

    def state(self) -> dict[str, torch.Tensor]:
        return {**{f"encoder.{k}": v for k, v in self.adapter.tuned_state().items()},
                **{f"head.{k}": v for k, v in self.head.state_dict().items()}}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.adapter.load_tuned_state({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})


def finetune(adapter: TuningAdapter, items: Sequence, labels: Sequence[int], guids: Sequence[str],
             ecfg: EncoderFinetuneConfig, fcfg: FinetuneConfig, checkpoint_dir: str | Path | None, *,
             run_key: str = "", progress: bool = False, callbacks: Sequence[StepCallback] = (),
             desc: str = "fine-tune", rows: Sequence[Any] | None = None,
             label_set: LabelsLike | None = None) -> FinetuneResult:
    """Fine-tunes ``adapter``'s encoder in place on ``items`` (training-split rows only), keeping the best epoch.

    ``ecfg`` holds this encoder's settings, ``fcfg`` the shared ones (seed, holdout fraction, patience, class
    weighting, checkpoint interval, amp). Checkpoints go to ``checkpoint_dir`` (None: none) and are resumed only
    under the same ``run_key``; an exception from a step callback stops the run as a kill would. ``rows`` passes
    ``adapter.prepare(items)`` when the caller has it (cross-fitting shares one trunk pass among its folds).
    ``labels`` are class indices of ``label_set`` (the task's classes; default the three sentiment classes), which
    sizes the head and names the holdout's per-class scores.
    """
    n = len(items)
    if not n == len(labels) == len(guids):
        raise ValueError(f"finetune: {n} items, {len(labels)} labels, {len(guids)} guids")
    device = adapter.device
    train_idx, hold_idx = holdout_split(list(labels), fcfg.holdout_fraction, fcfg.seed)
    if rows is None:
        rows = adapter.prepare(list(items), progress=progress)
    elif len(rows) != n:
        raise ValueError(f"finetune: {len(rows)} prepared rows for {n} items")
    y = torch.as_tensor(list(labels), dtype=torch.long, device=device)
    set_seed(fcfg.seed)  # the head's init, so that a run and its resumed copy start alike
    classes = as_label_set(label_set)
    head = make_head(adapter.dim, ecfg.dropout, len(classes)).to(device)
    amp_dtype = training_autocast_dtype(device) if fcfg.amp else None
    settings = LoopSettings(epochs=ecfg.epochs, batch_size=ecfg.batch_size, patience=fcfg.patience,
                            class_weighting=fcfg.class_weighting, schedule="linear",
                            warmup_fraction=ecfg.warmup_fraction, grad_clip=ecfg.grad_clip, amp_dtype=amp_dtype,
                            seed=fcfg.seed, checkpoint_every=fcfg.checkpoint_every, labels=classes)
    task = EncoderTask(adapter, head, list(rows), hold_idx, len(classes))
    lr = ecfg.lr_full if adapter.mode == "full" else ecfg.lr_last_n
    layer_decay = ecfg.layer_decay if isinstance(ecfg, TextFinetuneConfig) else 1.0
    groups = adapter.lr_groups(lr, layer_decay) + [(list(head.parameters()), ecfg.head_lr)]
    result = fit(task, y, train_idx, y[hold_idx] if hold_idx else None, groups, ecfg.weight_decay, settings,
                 device=device, checkpoint_dir=checkpoint_dir, run_key=run_key, callbacks=callbacks, row_ids=guids,
                 progress=progress, desc=desc)
    return FinetuneResult(
        head=head, history=result.history, best_epoch=result.best_epoch, holdout_metrics=result.metrics,
        steps=result.steps, train_rows=len(train_idx), holdout_rows=len(hold_idx), seconds=result.seconds,
        resumed_from_step=result.resumed_from_step, class_weights=result.class_weights,
        amp=str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None, adapter=adapter.describe(),
    )
