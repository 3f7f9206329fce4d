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


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved next to its outputs."""

    data: DataConfig = field(default_factory=DataConfig)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
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


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key '{where}'; known keys here: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
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
