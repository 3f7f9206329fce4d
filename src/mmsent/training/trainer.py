"""Fusion-model training on cached features: the shared loop (:mod:`mmsent.training.loop`) over feature rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from mmsent.config import TrainConfig
from mmsent.device import has_fast_bf16, resolve_device
from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.labels import LabelsLike, as_label_set
from mmsent.training.loop import LoopSettings, fit

Features = FeatureSet | FusionInputs
Labels = np.ndarray | torch.Tensor


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    Attributes:
        model: the trained model with the best epoch's weights loaded, in eval mode.
        best_epoch: 1-based epoch whose weights were kept (``history[best_epoch - 1]``).
        history: per epoch ``{"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr"}``.
        val_metrics: :func:`compute_metrics` on the validation set at the best epoch, plus ``"loss"``.
        val_probs: ``(N_val, 3)`` class probabilities at the best epoch.
        train_seconds: wall-clock time of the whole loop.
        stopped_early: whether patience ran out before ``cfg.epochs``.
        class_weights: the cross-entropy weights used, or None without class weighting.
        amp: whether training ran under bf16 autocast.
    """

    model: FusionModel
    best_epoch: int
    history: list[dict[str, float]]
    val_metrics: dict[str, Any]
    val_probs: np.ndarray
    train_seconds: float
    stopped_early: bool = False
    class_weights: list[float] | None = field(default=None)
    amp: bool = False


def to_inputs(feats: Features, device: torch.device | str) -> FusionInputs:
    """The whole feature set as float32 tensors on ``device``, converted once rather than per batch."""
    if isinstance(feats, FusionInputs):
        return FusionInputs(feats.image_pooled.to(device), feats.image_tokens.to(device), feats.image_mask.to(device),
                            feats.text_pooled.to(device), feats.text_tokens.to(device), feats.text_mask.to(device))
    return FusionInputs.from_features(feats, device=device)


def _take_tokens(tokens: torch.Tensor, mask: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``idx``, with the trailing columns that are padding in every one of those rows cut off.

    Models ignore padding, so this changes no output, only the work spent on short tweets.
    """
    m = mask[idx]
    real_cols = m.any(dim=0).nonzero()
    length = int(real_cols.max()) + 1 if real_cols.numel() else 0
    return tokens[idx, :length], m[:, :length]


def take_batch(inputs: FusionInputs, idx: torch.Tensor, with_tokens: bool = True) -> FusionInputs:
    """Rows ``idx`` of ``inputs``; without tokens, empty ``(B, 0, D)`` sequences stand in for pooled-only models."""
    if with_tokens:
        image_tokens, image_mask = _take_tokens(inputs.image_tokens, inputs.image_mask, idx)
        text_tokens, text_mask = _take_tokens(inputs.text_tokens, inputs.text_mask, idx)
    else:
        b = int(idx.numel())
        image_tokens = inputs.image_tokens.new_zeros((b, 0, inputs.image_tokens.shape[-1]))
        text_tokens = inputs.text_tokens.new_zeros((b, 0, inputs.text_tokens.shape[-1]))
        image_mask = inputs.image_mask.new_zeros((b, 0))
        text_mask = inputs.text_mask.new_zeros((b, 0))
    return FusionInputs(inputs.image_pooled[idx], image_tokens, image_mask,
                        inputs.text_pooled[idx], text_tokens, text_mask)


def padded_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Per row, one past the last real position: the length a batch of that row alone would be trimmed to."""
    if mask.shape[1] == 0:
        return torch.zeros(mask.shape[0], dtype=torch.long)
    last_from_end = mask.flip(1).int().argmax(dim=1)
    return torch.where(mask.any(dim=1), mask.shape[1] - last_from_end, 0).cpu()


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: FusionModel, feats: Features, batch_size: int = 256,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits ``(N, num_classes)`` in eval mode, on the model's device (moved to ``device`` first when given)."""
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    inputs = to_inputs(feats, dev)
    model.eval()
    n = len(inputs)
    if n == 0:
        return torch.empty((0, model.num_classes), device=dev)
    # Token models: run rows in length order so each batch is trimmed tightly, then put them back.
    order = (torch.argsort(padded_lengths(inputs.text_mask), stable=True) if model.uses_tokens
             else torch.arange(n)).to(dev)
    logits = torch.cat([model(take_batch(inputs, idx, model.uses_tokens)) for idx in order.split(batch_size)])
    return torch.empty_like(logits).index_copy_(0, order, logits)


def predict_proba(model: FusionModel, feats: Features, batch_size: int = 256,
                  device: torch.device | str | None = None) -> np.ndarray:
    """Class probabilities ``(N, num_classes)`` as float32 numpy, in the task's label order, in eval mode."""
    return torch.softmax(predict_logits(model, feats, batch_size, device), dim=-1).cpu().numpy()


def mean_proba(models: Sequence[FusionModel], feats: Features, device: torch.device | str | None = None) -> np.ndarray:
    """An ensemble's class probabilities: the mean of its models' :func:`predict_proba`."""
    return np.mean([predict_proba(m, feats, device=device) for m in models], axis=0)


def _as_label_tensor(labels: Labels, n: int, what: str, device: torch.device, num_classes: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().flatten()
    if y.numel() != n:
        raise ValueError(f"{what} has {y.numel()} labels for {n} feature rows")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{what} must hold class indices 0..{num_classes - 1} (see mmsent.labels.LabelSet.index)")
    return y.to(device)


class FusionTask:
    """A fusion model over feature rows already on the device, as :func:`~mmsent.training.loop.fit` trains it."""

    def __init__(self, model: FusionModel, train: FusionInputs, val: FusionInputs, group_by_length: bool) -> None:
        self.model, self.train_inputs, self.val_inputs = model, train, val
        self.group_by_length = group_by_length

    def forward(self, rows: list[int]) -> torch.Tensor:
        idx = torch.as_tensor(rows, device=self.train_inputs.image_pooled.device)
        return self.model(take_batch(self.train_inputs, idx, self.model.uses_tokens))

    def evaluate(self) -> torch.Tensor:
        return predict_logits(self.model, self.val_inputs)

    def lengths(self) -> list[int] | None:
        if not (self.model.uses_tokens and self.group_by_length):
            return None
        return padded_lengths(self.train_inputs.text_mask).tolist()

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


def train_model(model: FusionModel, train: Features, train_labels: Labels, val: Features, val_labels: Labels,
                cfg: TrainConfig, seed: int, progress: bool = False, *,
                schedule: Literal["cosine", "linear", "constant"] = "cosine", warmup_fraction: float = 0.05,
                grad_clip: float | None = 1.0, group_by_length: bool = True,
                amp: bool | None = None, label_set: LabelsLike | None = None) -> TrainResult:
    """Trains ``model`` with early stopping on validation macro-F1 and returns it with the best weights loaded.

    The model's initial weights are the caller's: call :func:`set_seed` before building it for a seeded init
    (:func:`mmsent.training.compare.compare_models` does). ``seed`` here re-seeds the global RNGs (dropout) and
    the batch order; on CPU the same model init, data and seed give bit-identical results.

    Args:
        model: an untrained fusion model.
        train: training features (a FeatureSet, or FusionInputs already on the device).
        train_labels: class indices ``(N_train,)``.
        val: validation features.
        val_labels: class indices ``(N_val,)``.
        cfg: epochs, batch size, lr, weight decay, patience (None: no early stopping), class weighting, device.
        seed: seeds shuffling and dropout.
        progress: a progress bar per epoch.
        schedule: LR after a linear warm-up over ``warmup_fraction`` of all steps.
        warmup_fraction: share of the ``cfg.epochs`` steps spent warming up.
        grad_clip: max gradient norm; None to disable.
        group_by_length: for token models, batch texts of similar length together.
        amp: bf16 autocast for the training forward pass; None: on for token models where bf16 is native
            (:func:`~mmsent.device.has_fast_bf16`), where it makes their matmuls ~2.5x faster. Evaluation runs in fp32.
        label_set: the task's classes (default: the three sentiment classes); as many as the model's outputs.
    """
    labels = as_label_set(label_set)
    if len(labels) != model.num_classes:
        raise ValueError(f"the model predicts {model.num_classes} classes but the task has {len(labels)}: "
                         f"{list(labels)}; build it with num_classes={len(labels)}")
    device = resolve_device(cfg.device)
    model.to(device)
    train_in, val_in = to_inputs(train, device), to_inputs(val, device)
    if len(train_in) == 0 or len(val_in) == 0:
        raise ValueError(f"need training and validation rows, got {len(train_in)} and {len(val_in)}")
    y_train = _as_label_tensor(train_labels, len(train_in), "train_labels", device, len(labels))
    y_val = _as_label_tensor(val_labels, len(val_in), "val_labels", device, len(labels))
    use_amp = (model.uses_tokens and has_fast_bf16(device)) if amp is None else amp
    settings = LoopSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, patience=cfg.patience,
                            class_weighting=cfg.class_weighting, schedule=schedule, warmup_fraction=warmup_fraction,
                            grad_clip=grad_clip, amp_dtype=torch.bfloat16 if use_amp else None, seed=seed,
                            labels=labels)
    task = FusionTask(model, train_in, val_in, group_by_length)
    result = fit(task, y_train, range(len(train_in)), y_val, [(list(model.parameters()), cfg.lr)], cfg.weight_decay,
                 settings, device=device, progress=progress, desc=type(model).__name__)
    assert result.metrics is not None and result.probs is not None  # there are validation rows
    return TrainResult(model=model, best_epoch=result.best_epoch, history=result.history, val_metrics=result.metrics,
                       val_probs=result.probs, train_seconds=result.seconds, stopped_early=result.stopped_early,
                       class_weights=result.class_weights, amp=use_amp)
