"""Training loop for fusion models on cached features: AdamW, class weighting, early stopping on macro-F1."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmsent.config import TrainConfig
from mmsent.device import resolve_device
from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.labels import LABELS
from mmsent.training.metrics import compute_metrics
from mmsent.training.seed import set_seed

Features = FeatureSet | FusionInputs
Labels = np.ndarray | torch.Tensor
_FIELDS = ("image_pooled", "image_tokens", "image_mask", "text_pooled", "text_tokens", "text_mask")


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


def class_weights(labels: Labels, num_classes: int = len(LABELS)) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * n_c)``: the mean weight over the given examples is 1.

    A class absent from ``labels`` gets weight 0 (it never appears as a target anyway).
    """
    y = torch.as_tensor(labels, dtype=torch.long).cpu()
    counts = torch.bincount(y, minlength=num_classes).double()
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = y.numel() / (int(present.sum()) * counts[present])
    return weights.float()


def to_inputs(feats: Features, device: torch.device | str) -> FusionInputs:
    """The whole feature set as float32 tensors on ``device``, converted once rather than per batch."""
    if isinstance(feats, FusionInputs):
        return FusionInputs(*(getattr(feats, f).to(device) for f in _FIELDS))
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


def _padded_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Per row, one past the last real position: the length a batch of that row alone would be trimmed to."""
    if mask.shape[1] == 0:
        return torch.zeros(mask.shape[0], dtype=torch.long)
    last_from_end = mask.flip(1).int().argmax(dim=1)
    return torch.where(mask.any(dim=1), mask.shape[1] - last_from_end, 0).cpu()


def _batches(n: int, batch_size: int, generator: torch.Generator,
             lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Shuffled mini-batch indices; with ``lengths``, rows of similar length share a batch.

    Grouping sorts within random chunks of 16 batches and then shuffles the batches, as Hugging Face's
    ``group_by_length`` does: tweets average ~23 of 64 tokens but a random batch of 64 usually holds one near
    the limit, so grouping roughly halves the token models' work at the price of slightly less random batches.
    """
    perm = torch.randperm(n, generator=generator)
    if lengths is None:
        return list(perm.split(batch_size))
    batches: list[torch.Tensor] = []
    for chunk in perm.split(16 * batch_size):
        order = torch.argsort(lengths[chunk], descending=True, stable=True)
        batches.extend(chunk[order].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def has_fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (CUDA with bf16, or a CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Private probes, hence getattr: on CPUs without them bf16 is emulated and slower than fp32.
        probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(p()) for p in probes if p is not None)
    return False


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: FusionModel, feats: Features, batch_size: int = 256,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits ``(N, 3)`` in eval mode, on the model's device (moved to ``device`` first when given)."""
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    inputs = to_inputs(feats, dev)
    model.eval()
    with_tokens = getattr(model, "uses_tokens", True)
    n = len(inputs)
    if n == 0:
        return torch.empty((0, len(LABELS)), device=dev)
    # Token models: run rows in length order so each batch is trimmed tightly, then put them back.
    order = (torch.argsort(_padded_lengths(inputs.text_mask), stable=True) if with_tokens
             else torch.arange(n)).to(dev)
    logits = torch.cat([model(take_batch(inputs, idx, with_tokens)) for idx in order.split(batch_size)])
    return torch.empty_like(logits).index_copy_(0, order, logits)


def predict_proba(model: FusionModel, feats: Features, batch_size: int = 256,
                  device: torch.device | str | None = None) -> np.ndarray:
    """Class probabilities ``(N, 3)`` as float32 numpy, in :data:`LABELS` order, computed in eval mode."""
    return torch.softmax(predict_logits(model, feats, batch_size, device), dim=-1).cpu().numpy()


def _as_label_tensor(labels: Labels, n: int, what: str, device: torch.device) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().flatten()
    if y.numel() != n:
        raise ValueError(f"{what} has {y.numel()} labels for {n} feature rows")
    if n and (int(y.min()) < 0 or int(y.max()) >= len(LABELS)):
        raise ValueError(f"{what} must hold class indices 0..{len(LABELS) - 1} (see mmsent.labels.label_to_index)")
    return y.to(device)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decaying LayerNorm gains and biases pulls them toward 0, which only hurts; decay matrices and embeddings.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def train_model(model: FusionModel, train: Features, train_labels: Labels, val: Features, val_labels: Labels,
                cfg: TrainConfig, seed: int, progress: bool = False, *,
                schedule: Literal["cosine", "linear", "constant"] = "cosine", warmup_fraction: float = 0.05,
                grad_clip: float | None = 1.0, group_by_length: bool = True,
                amp: bool | None = None) -> TrainResult:
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
        cfg: epochs, batch size, lr, weight decay, patience (0: no early stopping), class weighting, device.
        seed: seeds shuffling and dropout.
        progress: show a per-epoch progress bar.
        schedule: LR after a linear warm-up over ``warmup_fraction`` of all steps: cosine or linear decay to 0
            at ``cfg.epochs``, or constant.
        warmup_fraction: share of the ``cfg.epochs`` steps spent warming up.
        grad_clip: max gradient norm; None to disable.
        group_by_length: for token models, batch texts of similar length together (see :func:`_batches`).
        amp: bf16 autocast for the training forward pass; None: on for token models where bf16 is native
            (:func:`has_fast_bf16`), where it makes their matmuls ~2.5x faster. Evaluation always runs in fp32.

    Returns:
        A :class:`TrainResult`.
    """
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")
    if schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"schedule must be cosine, linear or constant, got {schedule!r}")
    device = resolve_device(cfg.device)
    set_seed(seed)
    model.to(device)
    train_in, val_in = to_inputs(train, device), to_inputs(val, device)
    n_train, n_val = len(train_in), len(val_in)
    if n_train == 0 or n_val == 0:
        raise ValueError(f"need training and validation rows, got {n_train} and {n_val}")
    y_train = _as_label_tensor(train_labels, n_train, "train_labels", device)
    y_val = _as_label_tensor(val_labels, n_val, "val_labels", device)
    y_val_np = y_val.cpu().numpy()

    weights = class_weights(y_train).to(device) if cfg.class_weighting else None
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = max(1, int(warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(schedule, warmup_steps, total_steps))
    generator = torch.Generator().manual_seed(seed)
    with_tokens = getattr(model, "uses_tokens", True)
    lengths = _padded_lengths(train_in.text_mask) if with_tokens and group_by_length else None
    use_amp = (with_tokens and has_fast_bf16(device)) if amp is None else amp

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"f1": -math.inf}
    epochs_without_gain = 0
    stopped_early = False
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=type(model).__name__, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for idx in _batches(n_train, cfg.batch_size, generator, lengths):
            idx = idx.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(take_batch(train_in, idx, with_tokens))
            loss = F.cross_entropy(logits.float(), y_train[idx], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * idx.numel()

        val_logits = predict_logits(model, val_in)
        # Same weighting as the training loss, so the two curves are comparable.
        val_loss = float(F.cross_entropy(val_logits, y_val, weight=weights))
        val_probs = torch.softmax(val_logits, dim=-1).cpu().numpy()
        metrics = compute_metrics(y_val_np, val_probs.argmax(axis=1))
        history.append({"epoch": epoch, "train_loss": float(loss_sum) / n_train, "val_loss": val_loss,
                        "val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"],
                        "lr": optimizer.param_groups[0]["lr"]})
        if metrics["macro_f1"] > best["f1"]:
            best = {"f1": metrics["macro_f1"], "epoch": epoch, "metrics": {**metrics, "loss": val_loss},
                    "probs": val_probs, "state": copy.deepcopy(model.state_dict())}
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", val_f1=f"{metrics['macro_f1']:.3f}",
                        best=f"{best['f1']:.3f}@{best['epoch']}")
        if 0 < cfg.patience <= epochs_without_gain and epoch < cfg.epochs:
            stopped_early = True
            break
    bar.close()

    model.load_state_dict(best["state"])
    model.eval()
    return TrainResult(model=model, best_epoch=best["epoch"], history=history, val_metrics=best["metrics"],
                       val_probs=best["probs"], train_seconds=time.perf_counter() - start,
                       stopped_early=stopped_early,
                       class_weights=weights.cpu().tolist() if weights is not None else None, amp=use_amp)
