"""Run configuration: nested dataclasses, loaded from YAML, overridable with ``section.key=value`` strings.

The configuration is checked completely when it is loaded (:func:`load_config` ends with :func:`validate`): every
value against its field's annotation (fixed choices included), ranges, contradictions between keys, and the fusion
model and image encoder names against their registries. A typo therefore fails at once, before any data is read,
with the key's dotted name, the allowed values and, where one is close, a "did you mean".

Keys that can be switched off or left to the machine say so explicitly: ``null`` (``data.kfold``, the patiences,
``crossfit_folds``, ``finetune.checkpoint_every``) or ``auto`` (``compare.workers``, ``encoders.num_threads``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

# "cuda:<index>" (e.g. cuda:1) is accepted as well, for a machine with several GPUs
Device = Literal["auto", "cpu", "cuda"]


@dataclass
class DataConfig:
    """Where the data is and what to do with bad rows."""

    root: str | None = None  # None: the bundled sample dataset
    on_error: Literal["raise", "skip"] = "raise"
    val_fraction: float = 0.15
    split_seed: int = 13
    # None: one stratified train/validation split. k >= 2: stratified k folds (all written as split_fold{i}.csv);
    # this run validates on fold `fold` (0 <= fold < k; fold stays 0 without kfold).
    kfold: int | None = None
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

    image: str = "efficientnet-lite2"  # a registered name or alias, optionally with :/path/to/weights.pth
    text: str = "all-MiniLM-L6-v2"  # an offline alias, a Hugging Face hub id or a local model folder
    image_grid: int = 3  # image tokens: the final feature map average-pooled to grid x grid cells
    text_max_length: int = 64
    text_pooling: Literal["mean", "cls"] = "mean"
    batch_size: int = 32
    device: Device = "auto"
    num_threads: int | Literal["auto"] = "auto"  # auto: every core the process may use


@dataclass
class TrainConfig:
    """Fusion-model training."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int | None = 8  # epochs without a better validation macro-F1 before stopping; None: never stop early
    class_weighting: bool = True
    hidden_dim: int = 256
    dropout: float = 0.3
    num_layers: int = 1
    num_heads: int = 4
    gate_from: Literal["image", "text"] = "image"
    device: Device = "auto"


@dataclass
class CompareConfig:
    """Which models to compare and over which seeds."""

    models: list[str] = field(
        default_factory=lambda: ["concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    predict_with: str = "best"  # "best" (highest mean validation macro-F1) or one of `models`
    # CPU processes that train runs side by side, one thread each: auto = one per core; 1 = in-process, no workers
    workers: int | Literal["auto"] = "auto"
    # Per model: any `training` key (or a model constructor argument) that differs from the `training` section.
    # The token models are the slow ones on a CPU: a narrower width and shorter patience keep a run within minutes.
    # Entries for models not in `models` are allowed (and ignored).
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
    # K >= 2: out-of-fold features for the training rows (K more fine-tunings); None: off
    crossfit_folds: int | None = None


@dataclass
class TextFinetuneConfig(EncoderFinetuneConfig):
    """Text encoder fine-tuning; ``last_n`` counts transformer layers (at least 1 in ``last_n`` mode)."""

    layer_decay: float = 1.0  # layer-wise lr decay: layer k below the top trains at lr * layer_decay**k; 1 = off


@dataclass
class ImageFinetuneConfig(EncoderFinetuneConfig):
    """Image encoder fine-tuning; ``last_n`` counts EfficientNet blocks (the 1x1 head conv always trains with them)."""

    lr_full: float = 1e-4
    lr_last_n: float = 3e-4
    # On lab5 the image encoder's own features of its training rows misled the fusion models (image-only macro-F1
    # fell below frozen); out-of-fold features fixed that. Text features did better without (benchmarks/RESULTS.md).
    crossfit_folds: int | None = 5


@dataclass
class FinetuneConfig:
    """Unimodal fine-tuning of the encoders on the split's training rows before feature extraction.

    Early stopping and the choice of the best epoch use ``holdout_fraction`` of the *training* rows, held out inside
    the fine-tuning (the run's validation rows never take part); 0 trains on every training row for exactly
    ``epochs`` epochs and keeps the last weights.

    Each encoder's ``crossfit_folds`` (K >= 2; None = off) gives the fusion models out-of-fold features for the
    training rows: K more copies of the encoder are fine-tuned on K-1 folds of the training rows and extract the fold
    they left out, so no training row's features come from an encoder that learned its label (see
    :mod:`mmsent.finetune.crossfit`).
    """

    enabled: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    patience: int | None = 1  # epochs without a better holdout macro-F1 before stopping; None: never stop early
    class_weighting: bool = True
    # optimizer steps between resumable checkpoints (there is always one at every epoch end); None: epoch ends only
    checkpoint_every: int | None = 50
    amp: bool = True  # mixed precision (autocast) on CUDA; the CPU always trains in float32
    output_dir: str | None = None  # None: {cache_dir}/finetune, keyed by content so reruns reuse the encoders
    text: TextFinetuneConfig = field(default_factory=TextFinetuneConfig)
    image: ImageFinetuneConfig = field(default_factory=ImageFinetuneConfig)


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
    """A config file or override names an unknown key, gives a value of the wrong type or out of range, names an
    unknown model or encoder, or contradicts another key; the message names the key and what it allows."""


# Run folders saved by earlier versions spelled "off" / "every core" as 0. Those zeros still load (from a file or an
# override) and become the explicit spelling; validate() on a config built in code refuses them as out of range.
# compare.model_overrides.<model>.patience follows training.patience.
_LEGACY_ZEROS: dict[str, Any] = {
    "data.kfold": None,
    "encoders.num_threads": "auto",
    "training.patience": None,
    "compare.workers": "auto",
    "finetune.patience": None,
    "finetune.checkpoint_every": None,
    "finetune.text.crossfit_folds": None,
    "finetune.image.crossfit_folds": None,
}

# Keys of features that were removed from the package. Run folders saved by earlier versions still hold them; they
# load when the feature was off there (the key is dropped) and are refused, with the reason, when it was on.
_RETIRED: dict[str, tuple[str, str]] = {
    # dotted key -> (sub-key that must be false, or "" for the value itself; why it is gone)
    "finetune.joint": ("enabled", "end-to-end (joint) fine-tuning was removed; fine-tune the encoders separately"),
    "finetune.image.augment": ("", "pixel augmentation in image fine-tuning was removed"),
}

_NULL_WORDS = ("null", "~")  # YAML's spellings of None, as they arrive from the command line


# --- value checks driven by the field annotations -------------------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _choices(hint: Any) -> list[str]:
    """The allowed values of a Literal, as shown in messages."""
    choices = [str(c) for c in get_args(hint)]
    return [*choices, "cuda:<index>"] if hint == Device else choices


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    simple = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if hint in simple:
        return simple[hint]
    origin = get_origin(hint)
    if origin is Literal:
        choices = _choices(hint)
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    if _is_union(hint):
        return " or ".join(_describe(m) for m in get_args(hint))
    if origin is list:
        item = get_args(hint)[0]
        return {int: "a list of integers", str: "a list of strings"}.get(item, f"a list of {_describe(item)}")
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _did_you_mean(value: Any, choices: Sequence[Any]) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _literals(hint: Any) -> list[str]:
    """Every fixed choice a hint allows (for "did you mean")."""
    if get_origin(hint) is Literal:
        return [str(c) for c in get_args(hint)]
    if _is_union(hint):
        return [c for m in get_args(hint) for c in _literals(m)]
    return []


def _parse(text: str) -> Any:
    """A command-line string as YAML reads it (``5`` -> 5, ``true`` -> True); the string itself if it is no YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _takes_text(hint: Any) -> bool:
    return hint is str or get_origin(hint) is Literal


def _coerce(value: Any, hint: Any, where: str, parse: bool = True) -> Any:
    """Checks ``value`` against the annotation ``hint`` and returns it converted.

    ``parse``: the value comes from YAML or the command line, so strings may stand for numbers, booleans, lists
    (``a,b`` or ``[a, b]``) or null. Without it (a config built in code) the value must have the right type already.

    Raises:
        ConfigError: naming ``where``, the value and what is allowed.
    """
    origin = get_origin(hint)
    if _is_union(hint):
        members = get_args(hint)
        if type(None) in members and (value is None or (parse and isinstance(value, str)
                                                         and value.strip().lower() in _NULL_WORDS)):
            return None
        # text-like members (str, Literal) take a string as it is; the others may parse it
        for member in sorted((m for m in members if m is not type(None)), key=lambda m: not _takes_text(m)):
            try:
                return _coerce(value, member, where, parse)
            except ConfigError:
                pass
        suggestion = _did_you_mean(value, _literals(hint)) if isinstance(value, str) else ""
        raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}{suggestion}")
    if origin is Literal:
        if isinstance(value, str) and (value in get_args(hint)
                                       or (hint == Device and re.fullmatch(r"cuda:\d+", value))):
            return value
        suggestion = _did_you_mean(value, get_args(hint)) if isinstance(value, str) else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(_choices(hint))}{suggestion}")
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r} (quote it in YAML)")
        return value
    if hint is bool:
        if parse and isinstance(value, str):
            value = _parse(value)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if parse and isinstance(value, str):
            value = _parse(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if parse and isinstance(value, str):
            value = _parse(value)
            if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value) if parse else value
    if origin is list:
        item = get_args(hint)[0]
        if parse and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = _parse(text)
                if not isinstance(value, list):
                    raise ConfigError(f"{where}: expected {_describe(hint)}, got {text!r}")
            else:  # "a,b" or a single item: a comma-separated list from the command line
                value = [v.strip() for v in text.split(",") if v.strip()]
        elif parse and value is not None and not isinstance(value, (list, dict)):
            value = [value]  # a single item
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]", parse) for i, v in enumerate(value)]
    if origin is dict:
        if parse and isinstance(value, str):
            value = _parse(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    return value


def _legacy(where: str, value: Any) -> Any:
    """A legacy 0 (see :data:`_LEGACY_ZEROS`) in its new spelling; any other value unchanged."""
    if where in _LEGACY_ZEROS and not isinstance(value, bool) and (
            (isinstance(value, (int, float)) and value == 0) or (isinstance(value, str) and value.strip() == "0")):
        return _LEGACY_ZEROS[where]
    return value


# --- ranges ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < x (else low <= x)
    high_open: bool = True  # x < high (else x <= high)

    def contains(self, x: float) -> bool:
        # written as "inside" tests, so that NaN (every comparison False) is in no range
        above = self.low is None or (x > self.low if self.low_open else x >= self.low)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def text(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


def _at_least(n: float) -> _Range:
    return _Range(n)


_POSITIVE = _Range(0, low_open=True)
_FRACTION = _Range(0, 1)  # [0, 1)

_RANGES: dict[type, dict[str, _Range]] = {
    DataConfig: {"val_fraction": _Range(0, 1, low_open=True), "kfold": _at_least(2), "fold": _at_least(0),
                 "max_image_pixels": _at_least(1)},
    EncoderConfig: {"image_grid": _at_least(0), "text_max_length": _at_least(2), "batch_size": _at_least(1),
                    "num_threads": _at_least(1)},
    TrainConfig: {"epochs": _at_least(1), "batch_size": _at_least(1), "lr": _POSITIVE, "weight_decay": _at_least(0),
                  "patience": _at_least(1), "hidden_dim": _at_least(1), "dropout": _FRACTION,
                  "num_layers": _at_least(1), "num_heads": _at_least(1)},
    CompareConfig: {"workers": _at_least(1)},
    EncoderFinetuneConfig: {"last_n": _at_least(0), "epochs": _at_least(1), "batch_size": _at_least(1),
                            "lr_full": _POSITIVE, "lr_last_n": _POSITIVE, "head_lr": _POSITIVE,
                            "weight_decay": _at_least(0), "warmup_fraction": _FRACTION, "grad_clip": _at_least(0),
                            "dropout": _FRACTION, "crossfit_folds": _at_least(2)},
    TextFinetuneConfig: {"layer_decay": _Range(0, 1, low_open=True, high_open=False)},
    FinetuneConfig: {"holdout_fraction": _FRACTION, "patience": _at_least(1), "checkpoint_every": _at_least(1)},
}


def _range_of(cls: type, name: str) -> _Range | None:
    for klass in cls.__mro__:
        if name in _RANGES.get(klass, {}):
            return _RANGES[klass][name]
    return None


def _check_range(value: Any, hint: Any, rng: _Range | None, where: str) -> None:
    """``value`` already has the type ``hint`` allows; None/"auto" need no range."""
    if rng is None or isinstance(value, (bool, str)) or value is None:
        return
    if not rng.contains(value):
        integer = int in ((hint,) if not _is_union(hint) else get_args(hint))
        others = [_describe(m) for m in (get_args(hint) if _is_union(hint) else ()) if m not in (int, float)]
        allowed = " or ".join([*others, rng.text(integer)])
        raise ConfigError(f"{where}: {value!r} is out of range; allowed: {allowed}")


# --- loading --------------------------------------------------------------------------------------------------------

def _merge_dict(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merges a nested mapping (config file or ``a.b.c=v`` override) into a free-form dict field."""
    merged = dict(current)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = _merge_dict(merged.get(key) or {}, value)
        else:
            merged[key] = _parse(value) if isinstance(value, str) else value
    return merged


def _coerce_model_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Each model's entries that are ``training`` keys get that key's type (and legacy zeros their new spelling);
    model constructor arguments stay as they are (the model checks them when it is built)."""
    hints = _hints(TrainConfig)
    out: dict[str, Any] = {}
    for model, args in overrides.items():
        where = f"compare.model_overrides.{model}"
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: expected a mapping of training keys (or model arguments) to values, "
                              f"got {args!r}")
        out[model] = {k: _coerce(_legacy(f"training.{k}", v), hints[k], f"{where}.{k}") if k in hints else v
                      for k, v in args.items()}
    return out


def _drop_retired(where: str, value: Any) -> None:
    """Accepts a retired key (see :data:`_RETIRED`) when it leaves its feature off; refuses it otherwise."""
    sub, why = _RETIRED[where]
    if sub:
        flag = value.get(sub, False) if isinstance(value, dict) else value
        shown = f"{where}.{sub}"
    else:
        flag, shown = value, where
    if isinstance(flag, str):
        flag = _parse(flag)
    if flag is not False and flag is not None:
        raise ConfigError(f"{shown}: {flag!r} is no longer supported: {why}; remove the key")


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = _hints(type(obj))
    known = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        where = f"{prefix}{key}"
        if where in _RETIRED:
            _drop_retired(where, value)
            continue
        if key not in known:
            raise ConfigError(f"unknown config key '{where}'; known keys here: {', '.join(sorted(known))}"
                              f"{_did_you_mean(key, known)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' is a section; give it a mapping, not {value!r}")
            _apply(current, value, prefix=f"{where}.")
        elif get_origin(hints[key]) is dict:
            merged = _merge_dict(current, _coerce(value, hints[key], where))
            setattr(obj, key, _coerce_model_overrides(merged) if where == "compare.model_overrides" else merged)
        else:
            setattr(obj, key, _coerce(_legacy(where, value), hints[key], where))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Builds a :class:`RunConfig` from defaults, an optional YAML file, then ``section.key=value`` overrides, and
    checks the result with :func:`validate`.

    Raises:
        ConfigError: for unknown keys, wrong types, values out of range or not among the allowed choices, unknown
            model or encoder names, contradicting keys, or malformed overrides; the message names the key.
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
    return validate(cfg)


# --- validation -----------------------------------------------------------------------------------------------------

def _check_section(obj: Any, prefix: str) -> None:
    """Types, fixed choices and ranges of every key of a section and its subsections."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        where, hint, value = f"{prefix}{f.name}", hints[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, hint):
                raise ConfigError(f"'{where}' is a section; expected a {hint.__name__}, got {value!r}")
            _check_section(value, f"{where}.")
            continue
        _coerce(value, hint, where, parse=False)
        _check_range(value, hint, _range_of(type(obj), f.name), where)


def _fusion_key(name: str) -> str:
    """The fusion registry's own forgiveness: case, surrounding spaces, ``-`` for ``_``."""
    return name.strip().lower().replace("-", "_")


def _check_contradictions(cfg: RunConfig) -> None:
    data = cfg.data
    if data.kfold is None and data.fold != 0:
        raise ConfigError(f"data.fold: {data.fold} needs data.kfold; with data.kfold null there is one split and "
                          "fold must be 0")
    if data.kfold is not None and data.fold >= data.kfold:
        raise ConfigError(f"data.fold: {data.fold} is out of range for data.kfold={data.kfold}; "
                          f"allowed: 0..{data.kfold - 1}")
    if data.split_file is not None and data.kfold is not None:
        raise ConfigError(f"data.split_file and data.kfold contradict each other: the split file "
                          f"{data.split_file!r} fixes the split, so data.kfold must be null (or drop data.split_file)")
    text = cfg.finetune.text
    if text.mode == "last_n" and text.last_n < 1:
        raise ConfigError(f"finetune.text.last_n: {text.last_n} is out of range with finetune.text.mode=last_n; "
                          "allowed: an integer >= 1 (layers that train)")
    if not cfg.encoders.text.strip():
        raise ConfigError("encoders.text: empty; give an offline alias (minilm, mpnet), a hub id or a model folder")
    seeds = cfg.compare.seeds
    if not seeds:
        raise ConfigError("compare.seeds: empty; give at least one seed, e.g. compare.seeds=0,1,2")
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            raise ConfigError(f"compare.seeds: {seed} is listed twice")


def _check_names(cfg: RunConfig) -> None:
    """Model and encoder names against their registries (imported here: they are heavy, and they import this module)."""
    from mmsent.encoders.registry import IMAGE_ALIASES, IMAGE_ENCODERS
    from mmsent.fusion.registry import list_fusion_models

    known = list_fusion_models()
    allowed = ", ".join(known)
    compare = cfg.compare
    if not compare.models:
        raise ConfigError(f"compare.models: empty; allowed: {allowed}")
    seen: list[str] = []
    for name in compare.models:
        key = _fusion_key(name)
        if key not in known:
            raise ConfigError(f"compare.models: unknown model {name!r}; allowed: {allowed}{_did_you_mean(key, known)}")
        if key in seen:
            raise ConfigError(f"compare.models: {name!r} is listed twice")
        seen.append(key)
    choice = _fusion_key(compare.predict_with)
    if choice != "best" and choice not in seen:
        options = ["best", *compare.models]
        why = "is not among compare.models" if choice in known else "is not a model name"
        raise ConfigError(f"compare.predict_with: {compare.predict_with!r} {why}; allowed: {', '.join(options)}"
                          f"{_did_you_mean(choice, options)}")
    train_hints = _hints(TrainConfig)
    for model, args in compare.model_overrides.items():
        where = f"compare.model_overrides.{model}"
        if _fusion_key(str(model)) not in known:
            raise ConfigError(f"compare.model_overrides: unknown model {model!r}; allowed: {allowed}"
                              f"{_did_you_mean(_fusion_key(str(model)), known)}")
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: expected a mapping of training keys (or model arguments) to values, "
                              f"got {args!r}")
        for k, v in args.items():  # model constructor arguments are the model's to check
            if k in train_hints:
                _coerce(v, train_hints[k], f"{where}.{k}", parse=False)
                _check_range(v, train_hints[k], _range_of(TrainConfig, k), f"{where}.{k}")

    name = cfg.encoders.image
    base, sep, weights = name.partition(":")
    key = IMAGE_ALIASES.get(base.strip().lower(), base.strip().lower())
    if key not in IMAGE_ENCODERS:
        names = [*IMAGE_ENCODERS, *IMAGE_ALIASES]
        raise ConfigError(f"encoders.image: unknown image encoder {name!r}; allowed: {', '.join(names)} "
                          f"(each optionally with :/path/to/weights.pth){_did_you_mean(base.strip().lower(), names)}")
    if sep and not weights.strip():
        raise ConfigError(f"encoders.image: {name!r} has no weights file after ':'; "
                          f"give {base}:/path/to/weights.pth or just {base}")


def validate(cfg: RunConfig) -> RunConfig:
    """Checks a whole configuration; :func:`load_config` calls it, and a :class:`RunConfig` built in code may too.

    Checks every value's type and fixed choices (``Literal``), ranges, contradictions between keys
    (``data.split_file`` with ``data.kfold``, ``data.fold`` outside ``data.kfold``, ...), and the names in
    ``compare.models`` / ``compare.predict_with`` / ``compare.model_overrides`` and ``encoders.image`` against the
    fusion model and image encoder registries. The cheap checks run first: only names need the registries imported.

    Returns:
        ``cfg`` itself, unchanged.

    Raises:
        ConfigError: naming the dotted key, the bad value, what is allowed and, for a near miss, a "did you mean".
    """
    _check_section(cfg, "")
    _check_contradictions(cfg)
    _check_names(cfg)
    return cfg
