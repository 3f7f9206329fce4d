"""Run configuration: nested dataclasses, loaded from YAML, overridable with ``section.key=value`` strings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml


@dataclass
class DataConfig:
    """Where the data is and what to do with bad rows."""

    root: str | None = None  # None: the bundled sample dataset
    on_error: Literal["raise", "skip"] = "raise"
    val_fraction: float = 0.15
    split_seed: int = 13
    kfold: int = 0  # >1: stratified k folds (all written as split_fold{i}.csv); this run validates on `fold`
    fold: int = 0
    split_file: str | None = None  # reuse a split written by an earlier run (split.csv) instead of making one
    max_image_pixels: int = 89_478_485  # PIL's own default decompression-bomb limit


@dataclass
class CleaningConfig:
    """Text cleaning; the defaults follow the original design minus its bugs."""

    strip_retweet: bool = True
    strip_mentions: bool = True
    strip_urls: bool = True
    hashtags: Literal["strip_symbol", "drop", "keep"] = "strip_symbol"
    lowercase: bool = False
    normalize_whitespace: bool = True


@dataclass
class EncoderConfig:
    """Which encoders, and how their outputs are shaped."""

    image: str = "efficientnet-lite2"
    text: str = "all-MiniLM-L6-v2"
    image_grid: int = 3  # image tokens: the final feature map average-pooled to grid x grid cells
    text_max_length: int = 64
    text_pooling: Literal["mean", "cls"] = "mean"
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # 0: every core


@dataclass
class TrainConfig:
    """Fusion-model training."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 8
    class_weighting: bool = True
    hidden_dim: int = 256
    dropout: float = 0.3
    num_layers: int = 1
    num_heads: int = 4
    gate_from: Literal["image", "text"] = "image"
    device: str = "auto"


@dataclass
class CompareConfig:
    """Which models to compare and over which seeds."""

    models: list[str] = field(
        default_factory=lambda: ["concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    predict_with: str = "best"  # "best" (highest mean validation macro-F1) or a model name
    workers: int = 0  # CPU processes training runs side by side, one thread each (0 = one per core, 1 = none)
    # Per model: any `training` key (or a model constructor argument) that differs from the `training` section.
    # The token models are the slow ones on a CPU: a narrower width and shorter patience keep a run within minutes.
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "single_stream": {"hidden_dim": 128, "patience": 4},
        "dual_stream": {"hidden_dim": 128, "patience": 4},
    })


@dataclass
class EncoderFinetuneConfig:
    """Fine-tuning of one encoder on the sentiment labels, with a small classification head on its pooled vector.

    ``mode``: ``frozen`` (keep the pretrained weights), ``last_n`` (only the last ``last_n`` layers/blocks train; the
    frozen part's outputs are computed once and cached, so each epoch runs only the top) or ``full``.
    """

    mode: Literal["full", "last_n", "frozen"] = "last_n"
    last_n: int = 2
    epochs: int = 3
    batch_size: int = 32
    lr_full: float = 4e-5  # encoder learning rate when mode=full
    lr_last_n: float = 1e-4  # encoder learning rate when mode=last_n
    head_lr: float = 1e-3  # the new, randomly initialised head learns faster than the pretrained layers
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.1
    crossfit_folds: int = 0  # >= 2: out-of-fold features for the training rows (K more fine-tunings); 0 = off


@dataclass
class TextFinetuneConfig(EncoderFinetuneConfig):
    """Text encoder fine-tuning; ``last_n`` counts transformer layers."""

    layer_decay: float = 1.0  # layer-wise lr decay: layer k below the top trains at lr * layer_decay**k; 1 = off


@dataclass
class ImageFinetuneConfig(EncoderFinetuneConfig):
    """Image encoder fine-tuning; ``last_n`` counts EfficientNet blocks (the 1x1 head conv always trains with them)."""

    lr_full: float = 1e-4
    lr_last_n: float = 3e-4
    augment: bool = False  # mode=full only: random resized crop + flip per training image and step (GPU recipe)
    # On lab5 the image encoder's own features of its training rows misled the fusion models (image-only macro-F1
    # fell below frozen); out-of-fold features fixed that. Text features did better without (benchmarks/RESULTS.md).
    crossfit_folds: int = 5


@dataclass
class JointFinetuneConfig:
    """End-to-end training: one fusion model trained together with the top of both encoders.

    The tops start from the pretrained weights (each encoder's ``mode``/``last_n`` decide what trains, at its own
    learning rate) and learn through the fusion model; a linear head per encoder adds its own loss, weighted by
    ``aux_weight``, so that the weaker image branch keeps learning instead of leaving the work to the text branch.
    The fused model then joins the comparison as ``joint_{fusion}``; the other models train on the features of the
    jointly tuned encoders. Early stopping uses the shared ``holdout_fraction`` / ``patience`` of the training rows.
    """

    enabled: bool = False
    fusion: str = "gated"  # any fusion model name; token models (single/dual stream) train on the tops' tokens
    epochs: int = 3
    batch_size: int = 32
    head_lr: float = 1e-3  # the fusion model and the per-encoder heads
    aux_weight: float = 1.0  # 0 = the fused loss alone
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    dropout: float = 0.1  # of the per-encoder heads; the fusion model takes training.dropout


@dataclass
class FinetuneConfig:
    """Unimodal fine-tuning of the encoders on the split's training rows before feature extraction.

    Early stopping and the choice of the best epoch use ``holdout_fraction`` of the *training* rows, held out inside
    the fine-tuning (the run's validation rows never take part); 0 trains on every training row for exactly
    ``epochs`` epochs and keeps the last weights.

    Each encoder's ``crossfit_folds`` (K >= 2) gives the fusion models out-of-fold features for the training rows:
    K more copies of the encoder are fine-tuned on K-1 folds of the training rows and extract the fold they left out,
    so no training row's features come from an encoder that learned its label (see :mod:`mmsent.finetune.crossfit`).

    ``joint.enabled`` replaces the two separate fine-tunings with one end-to-end training of both tops and a fusion
    model (see :class:`JointFinetuneConfig`).
    """

    enabled: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    patience: int = 1  # epochs without a better holdout macro-F1 before stopping; 0 = never stop early
    class_weighting: bool = True
    checkpoint_every: int = 50  # optimizer steps between resumable checkpoints (and one at every epoch end); 0 = epochs
    amp: bool = True  # mixed precision (autocast) on CUDA; the CPU always trains in float32
    output_dir: str | None = None  # None: {cache_dir}/finetune, keyed by content so reruns reuse the encoders
    text: TextFinetuneConfig = field(default_factory=TextFinetuneConfig)
    image: ImageFinetuneConfig = field(default_factory=ImageFinetuneConfig)
    joint: JointFinetuneConfig = field(default_factory=JointFinetuneConfig)


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved next to its outputs."""

    data: DataConfig = field(default_factory=DataConfig)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    cache_dir: str = "~/.cache/mmsent"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


class ConfigError(ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Converts a YAML/CLI value to the type of the field's current value."""
    if isinstance(current, list) and isinstance(value, str) and not value.strip().startswith("["):
        # "a,b" or a single item: a comma-separated list from the command line
        value = [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
    elif isinstance(value, str) and not isinstance(current, str) and current is not None:
        value = yaml.safe_load(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    return value


def _merge_dict(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merges a nested mapping (config file or ``a.b.c=v`` override) into a free-form dict field."""
    merged = dict(current)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = _merge_dict(merged.get(key) or {}, value)
        else:
            merged[key] = yaml.safe_load(value) if isinstance(value, str) else value
    return merged


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key '{where}'; known keys here: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if isinstance(current, dict) and isinstance(value, dict):
            setattr(obj, key, _merge_dict(current, value))
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' is a section; give it a mapping, not {value!r}")
            _apply(current, value, prefix=f"{where}.")
        else:
            setattr(obj, key, _coerce(value, current, where))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Builds a :class:`RunConfig` from defaults, an optional YAML file, then ``section.key=value`` overrides.

    Raises:
        ConfigError: for unknown keys, wrong types or malformed overrides, naming the key.
    """
    cfg = RunConfig()
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        _apply(cfg, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value (e.g. training.lr=0.0005)")
        dotted, raw = item.split("=", 1)
        nested: dict[str, Any] = {}
        node = nested
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = raw
        _apply(cfg, nested)
    return cfg
