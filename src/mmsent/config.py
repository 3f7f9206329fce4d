"""Run configuration: nested dataclasses, loaded from YAML, overridable with ``section.key=value`` strings.

:func:`load_config` ends with :func:`validate`, so a typo fails before any data is read, naming the dotted key, the
allowed values and, for a near miss, a "did you mean". Keys that can be switched off or left to the machine take
``null`` or ``auto``; the 0 earlier versions wrote for those still loads from a file or override as ``null``/``auto``.

YAML (a file, a run folder's ``config.yaml`` or an override's value) is read strictly, refusing anchors, aliases,
merge keys and duplicate keys before anything is built; numbers must be finite, integers within what the code takes.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import functools
import importlib.util
import logging
import math
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from mmsent.naming import fusion_key

# "cuda:<index>" (e.g. cuda:1) is accepted as well, for a machine with several GPUs
Device = Literal["auto", "cpu", "cuda"]

# numpy, scikit-learn and torch all take a seed in [0, 2**32)
_SEEDS = "[0, 4294967296)"
# Integers with no upper bound of their own stop here: larger ones overflow the C ints that torch, numpy and the
# tokenizers take (and no count in a config means anything near it).
_INT_LIMIT = 2**31 - 1


def _ranged(default: Any, allowed: str) -> Any:
    """A field whose numbers must lie in ``allowed``: ``>= n``, ``> n`` or an interval such as ``[0, 1)``."""
    return field(default=default, metadata={"range": allowed})


@dataclass
class DataConfig:
    """Where the data is and what to do with bad rows."""

    root: str | None = None  # None: the bundled sample dataset
    # lab: train.txt / test_without_label.txt; mvsa-single / mvsa-multiple: a release's labelResultAll.txt, whose
    # per-annotator labels are fused by the standard rule (see mmsent.data.mvsa); table: root is one CSV / JSONL /
    # Parquet file with id, text or text_path, image or image_path, optional label and split (see mmsent.data.table);
    # splits: train / dev / test files of a published protocol (mmsent.data.split_files); hfm: the HFM sarcasm
    # release (mmsent.data.hfm); tumemo: the TumEmo release with split files (mmsent.data.tumemo)
    format: Literal["lab", "mvsa-single", "mvsa-multiple", "table", "splits", "hfm", "tumemo"] = "lab"
    # the task's classes in the models' output order; None: the order the format fixes, else the sorted training labels
    labels: list[str] | None = None
    # a binary task's class whose F1 is reported beside macro-F1 (e.g. sarcastic); None: none
    positive_label: str | None = None
    on_error: Literal["raise", "skip"] = "raise"
    val_fraction: float = _ranged(0.15, "(0, 1)")
    split_seed: int = _ranged(13, _SEEDS)
    # None: one stratified train/validation split (val_fraction). k >= 2: stratified k-fold cross-validation: every
    # model trains on every fold, each labelled row is scored once by models that never saw it (out-of-fold), and the
    # predictor averages the k fold models (all written as split_fold{i}.csv).
    kfold: int | None = _ranged(None, ">= 2")
    split_file: str | None = None  # reuse a split written by an earlier run (split.csv) instead of making one
    max_image_pixels: int = _ranged(89_478_485, ">= 1")  # PIL's own default decompression-bomb limit


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
    # an offline alias, a Hugging Face hub id or a local model folder; several joined by "+" are used side by side
    text: str = "all-MiniLM-L6-v2+e5+vader"
    image_grid: int = _ranged(3, ">= 0")  # image tokens: the final feature map average-pooled to grid x grid cells
    text_max_length: int = _ranged(64, ">= 2")
    text_pooling: Literal["mean", "cls"] = "mean"
    batch_size: int = _ranged(32, ">= 1")
    device: Device = "auto"
    num_threads: int | Literal["auto"] = _ranged("auto", ">= 1")  # auto: every core the process may use
    # Image inference runtime: auto = OpenVINO fp32 on a CPU (the same features as PyTorch), PyTorch on CUDA;
    # openvino-bf16 is faster still (bf16 above the first blocks) with features a little further from PyTorch's.
    backend: Literal["auto", "torch", "openvino", "openvino-bf16"] = "auto"


@dataclass
class TrainConfig:
    """Fusion-model training."""

    epochs: int = _ranged(40, ">= 1")
    batch_size: int = _ranged(64, ">= 1")
    lr: float = _ranged(1e-3, "> 0")
    weight_decay: float = _ranged(1e-2, ">= 0")
    patience: int | None = _ranged(8, ">= 1")  # None: never stop early; else epochs without a better holdout macro-F1
    # Share of each run's training rows held out to choose its epoch, so no run is early-stopped on the rows that
    # score it (each seed draws its own holdout).
    stop_fraction: float = _ranged(0.1, "(0, 0.5]")
    class_weighting: bool = True
    hidden_dim: int = _ranged(256, ">= 1")
    dropout: float = _ranged(0.3, "[0, 1)")
    num_layers: int = _ranged(1, ">= 1")
    num_heads: int = _ranged(4, ">= 1")
    gate_from: Literal["image", "text"] = "image"
    device: Device = "auto"


@dataclass
class CompareConfig:
    """Which models to compare and over which seeds."""

    models: list[str] = field(
        default_factory=lambda: ["concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"range": _SEEDS})
    # What predicts: "ensemble" (the mean probability of every compared design), "best" (the design with the best mean
    # held-out macro-F1) or one of `models`.
    predict_with: str = "ensemble"
    # A zero-shot baseline scored on the held-out rows beside the trained models (mmsent.zeroshot): "auto" uses the
    # CLIP / SigLIP model of an hf-clip: encoder when there is one, "off" never, hf-clip:<hub id or folder> names one
    zero_shot: str = "auto"
    # CPU processes that train runs side by side, one thread each: auto = one per core; 1 = in-process, no workers
    workers: int | Literal["auto"] = _ranged("auto", ">= 1")
    # Per model: `training` keys (or model constructor arguments) that differ from `training`; entries for models not
    # in `models` are ignored. Token models are slow on a CPU: a smaller hidden_dim and patience keep runs in minutes.
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "single_stream": {"hidden_dim": 128, "patience": 4},
        "dual_stream": {"hidden_dim": 128, "patience": 4},
    })


@dataclass
class EncoderFinetuneConfig:
    """Fine-tuning of one encoder on the sentiment labels, with a small classification head on its pooled vector."""

    # frozen: keep the pretrained weights; last_n: only the last `last_n` layers/blocks train (the frozen part's
    # outputs are computed once and cached, so each epoch runs only the top); full: every layer trains
    mode: Literal["full", "last_n", "frozen"] = "last_n"
    last_n: int = _ranged(2, ">= 0")
    epochs: int = _ranged(3, ">= 1")
    batch_size: int = _ranged(32, ">= 1")
    lr_full: float = _ranged(4e-5, "> 0")  # encoder learning rate when mode=full
    lr_last_n: float = _ranged(1e-4, "> 0")  # encoder learning rate when mode=last_n
    head_lr: float = _ranged(1e-3, "> 0")  # the new, randomly initialised head learns faster than pretrained layers
    weight_decay: float = _ranged(0.01, ">= 0")
    warmup_fraction: float = _ranged(0.1, "[0, 1)")
    grad_clip: float = _ranged(1.0, ">= 0")
    dropout: float = _ranged(0.1, "[0, 1)")
    # K >= 2: out-of-fold features for the training rows: K more fine-tunings, each on K-1 folds, extract the fold
    # they left out, so no row's features come from an encoder that learned its label (finetune.crossfit); None: off
    crossfit_folds: int | None = _ranged(None, ">= 2")


@dataclass
class TextFinetuneConfig(EncoderFinetuneConfig):
    """Text encoder fine-tuning; ``last_n`` counts transformer layers (at least 1 in ``last_n`` mode)."""

    layer_decay: float = _ranged(1.0, "(0, 1]")  # layer k below the top trains at lr * layer_decay**k; 1 = off


@dataclass
class ImageFinetuneConfig(EncoderFinetuneConfig):
    """Image encoder fine-tuning; ``last_n`` counts EfficientNet blocks (the 1x1 head conv always trains with them)."""

    lr_full: float = _ranged(1e-4, "> 0")
    lr_last_n: float = _ranged(3e-4, "> 0")
    # On lab5 the image encoder's own features of its training rows misled the fusion models (image-only macro-F1
    # fell below frozen); out-of-fold features fixed that. Text features did better without (benchmarks/RESULTS.md).
    crossfit_folds: int | None = _ranged(5, ">= 2")


@dataclass
class FinetuneConfig:
    """Unimodal fine-tuning of the encoders on the split's training rows before feature extraction."""

    enabled: bool = False
    seed: int = _ranged(0, _SEEDS)
    # share of the *training* rows held out inside the fine-tuning for early stopping and the best epoch (the run's
    # validation rows never take part); 0: train on every training row for exactly `epochs`, keep the last weights
    holdout_fraction: float = _ranged(0.1, "[0, 1)")
    patience: int | None = _ranged(1, ">= 1")  # None: never stop early; else epochs without a better holdout macro-F1
    class_weighting: bool = True
    # optimizer steps between resumable checkpoints (there is always one at every epoch end); None: epoch ends only
    checkpoint_every: int | None = _ranged(50, ">= 1")
    # mixed precision (autocast): fp16/bf16 on CUDA, bf16 on a CPU with hardware bf16 (AVX512-BF16 or AMX); else or
    # false: float32
    amp: bool = True
    output_dir: str | None = None  # None: {cache_dir}/finetune, keyed by content so reruns reuse the encoders
    text: TextFinetuneConfig = field(default_factory=TextFinetuneConfig)
    image: ImageFinetuneConfig = field(default_factory=ImageFinetuneConfig)


@dataclass
class TrackingConfig:
    """Experiment tracking: each finished run is recorded in MLflow (needs ``pip install 'mmsent[track]'``)."""

    # MLflow tracking URI: local (mlflow.db in the current folder), sqlite:///path.db or http://host:5000; null: off
    mlflow: str | None = None
    experiment: str = "mmsent"


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved next to its outputs."""

    data: DataConfig = field(default_factory=DataConfig)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cache_dir: str = "~/.cache/mmsent"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from mmsent.io import atomic_write_text  # local: config stays the first module to import

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


class ConfigError(ValueError):
    """A bad key, value or name in a config; the message names the dotted key and what it allows."""


# Keys of removed features, still in run folders saved by earlier versions: dropped when the feature was off there,
# refused when it was on. Dotted key -> (its sub-key that must be false, or "" for the value itself; why it is gone).
_RETIRED: dict[str, tuple[str, str]] = {
    "finetune.joint": ("enabled", "end-to-end (joint) fine-tuning was removed; fine-tune the encoders separately"),
    "finetune.image.augment": ("", "pixel augmentation in image fine-tuning was removed"),
    "data.fold": ("", "data.kfold now runs every fold (cross-validation)"),
    "training.refit": ("", "refit on all training rows measured below fold averaging and was removed"),
    "compare.decision_rule": ("", "the macro-F1 decision rule (class weights) measured below plain argmax and was "
                                  "removed"),
}
# Retired keys that a run saved with them on still answers the same without (its predictor.json holds what they did,
# and refuses itself where that differs): on, they are dropped with a warning, not refused.
_IGNORED_WHEN_ON = {"compare.decision_rule"}
log = logging.getLogger("mmsent.config")

# --- strict YAML ---------------------------------------------------------------------------------------------------

class _Refused(yaml.MarkedYAMLError):
    """YAML that :class:`_StrictLoader` refuses although the YAML spec allows it."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no ``!!python`` tags) that also refuses, before building anything, what lets a config
    say one thing and mean another: anchors and aliases (a few lines of them expand to billions of values), merge
    keys, and a key given twice in one mapping (YAML would keep the last without a word)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem="YAML anchors and aliases (&name, *name) are not allowed in a config; "
                                   "write each value out", problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            mark = key_node.start_mark
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(problem="YAML merge keys (<<) are not allowed in a config; write the keys out",
                               problem_mark=mark)
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.setdefault(key, mark)
            except TypeError:  # an unhashable key: the base class refuses it with its own message
                continue
            if seen is not mark:
                raise _Refused(problem=f"duplicate key {key!r} (first at line {seen.line + 1}); merge the two into "
                                       "one", problem_mark=mark)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> Any:
    """``text`` read by :class:`_StrictLoader`; raises ``yaml.YAMLError`` or ``RecursionError`` (deep nesting)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, its line number first (PyYAML's own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}: {exc.problem}{context}" if mark else exc.problem + context
    return " ".join(str(exc).split())


def _read_yaml_file(path: Path) -> Any:
    """The YAML in the file ``path``, read strictly; every way it can fail is a :class:`ConfigError` naming it."""
    try:  # every check inside the try: even asking whether a too-long name is a folder raises OSError
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give the YAML file inside it") from None
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark some editors write is no content
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8 and run again") from None
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read config file {path}: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"cannot read config file {path}: nested too deeply to be a config") from None


_SIMPLE = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string",
           dict: "a mapping"}


# --- values against their annotations and ranges --------------------------------------------------------------------

@functools.cache
def _fields(cls: type) -> dict[str, tuple[Any, str | None]]:
    """Each field's annotation and allowed range, by name."""
    hints = get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata.get("range")) for f in dataclasses.fields(cls)}


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _describe(hint: Any) -> str:
    """What ``hint`` allows, as messages say it."""
    if get_origin(hint) is Literal:
        choices = [*map(str, get_args(hint)), *(["cuda:<index>"] if hint == Device else [])]
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    if _is_union(hint):
        return " or ".join(_describe(m) for m in get_args(hint))
    if get_origin(hint) is list:
        return f"a list of {'integers' if get_args(hint)[0] is int else 'strings'}"
    return _SIMPLE.get(get_origin(hint) or hint, str(hint))


def _did_you_mean(value: Any, choices: Sequence[Any]) -> str:
    """``; did you mean 'x'?`` when the string ``value`` is close to one of ``choices``, else ``""``."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1) if isinstance(value, str) else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _not_allowed(head: str, value: Any, choices: Sequence[Any], sep: str = "; allowed: ", tail: str = "") -> ConfigError:
    """The error for a value that is not among ``choices``: ``head``, the choices, ``tail`` and a "did you mean"."""
    return ConfigError(f"{head}{sep}{', '.join(map(str, choices))}{tail}{_did_you_mean(value, choices)}")


def _parse(text: str, where: str) -> Any:
    """A command-line string as YAML reads it (``5`` -> 5, ``true`` -> True); the string itself if it is no YAML.

    Raises:
        ConfigError: naming ``where``, for what :class:`_StrictLoader` refuses (an override's value may hold a whole
            mapping, so an alias bomb or a duplicate key can come this way too).
    """
    try:
        return _load_yaml(text)
    except _Refused as exc:
        raise ConfigError(f"{where}: {exc.problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config value") from None
    except yaml.YAMLError:
        return text


def _coerce(value: Any, hint: Any, where: str, parse: bool = True) -> Any:
    """``value`` checked against the annotation ``hint`` and converted; :class:`ConfigError` naming ``where`` if bad.

    ``parse``: the value comes from YAML or the command line, so a string may stand for a number, a boolean, null or
    a list (``a,b`` or ``[a, b]``). Without it (a config built in code) the value must have the right type already.
    """
    if _is_union(hint):
        members = get_args(hint)
        if type(None) in members and (value is None or (parse and isinstance(value, str)
                                                         and value.strip().lower() in ("null", "~"))):
            return None
        # text-like members (str, Literal) take a string as it is; the others may parse it
        others = [m for m in members if m is not type(None)]
        for member in sorted(others, key=lambda m: not (m is str or get_origin(m) is Literal)):
            with contextlib.suppress(ConfigError):
                return _coerce(value, member, where, parse)
        literals = [c for m in members if get_origin(m) is Literal for c in get_args(m)]
        raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}{_did_you_mean(value, literals)}")
    if get_origin(hint) is Literal:
        if isinstance(value, str) and (value in get_args(hint) or (hint == Device and re.fullmatch(r"cuda:\d+", value))):
            return value
        raise _not_allowed(f"{where}: {value!r}", value, get_args(hint), " is not one of ",
                           ", cuda:<index>" if hint == Device else "")
    if get_origin(hint) is list:
        if parse and isinstance(value, str):  # "[a, b]", or "a,b" / a single item from the command line
            text = value.strip()
            items = [v.strip() for v in text.split(",") if v.strip()]
            value = _parse(text, where) if text.startswith("[") else items
        elif parse and value is not None and not isinstance(value, (list, dict)):
            value = [value]  # a single item
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}")
        return [_coerce(v, get_args(hint)[0], f"{where}[{i}]", parse) for i, v in enumerate(value)]
    if parse and isinstance(value, str) and hint is not str:
        value = _parse(value, where)
        if hint is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
    python_type = (int, float) if hint is float else get_origin(hint) or hint
    if not isinstance(value, python_type) or (isinstance(value, bool) and hint is not bool):
        quote = " (quote it in YAML)" if hint is str else ""
        raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}{quote}")
    return _to_float(value) if parse and hint is float else value


def _to_float(value: float) -> float:
    """``float(value)``, with an integer too large for a float as infinity (which the range check then refuses)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _in_range(value: float, allowed: str) -> bool:
    """Whether ``value`` lies in ``allowed`` (see :func:`_ranged`); NaN lies in no range."""
    if allowed.startswith(">"):
        low = float(allowed.lstrip(">= "))
        return value >= low if allowed.startswith(">=") else value > low
    low, high = (float(bound) for bound in allowed[1:-1].split(","))
    above = value >= low if allowed.startswith("[") else value > low
    below = value <= high if allowed.endswith("]") else value < high
    return above and below


def _check_range(value: Any, hint: Any, allowed: str | None, where: str) -> None:
    """Refuses a number outside ``allowed``, a non-finite one, and an integer beyond :data:`_INT_LIMIT` where
    ``allowed`` sets no upper bound; ``value`` already has a type ``hint`` takes (a list: each item is checked)."""
    if isinstance(value, list):
        item = get_args(hint)[0] if get_origin(hint) is list else Any
        for i, v in enumerate(value):
            _check_range(v, item, allowed, f"{where}[{i}]")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    members = get_args(hint) if _is_union(hint) else (hint,)
    integer = int in members
    if not integer:  # an int where a float is taken stands for that float, and may be too large for one
        value = _to_float(value)
    open_top = allowed is None or allowed.startswith(">")
    too_large = integer and open_top and abs(value) > _INT_LIMIT
    finite = integer or math.isfinite(value)
    if finite and not too_large and (allowed is None or _in_range(value, allowed)):
        return
    kind = "an integer" if integer else "a number" if finite else "a finite number"
    if allowed is None:
        bounds = f" in [{-_INT_LIMIT - 1}, {_INT_LIMIT}]" if integer else ""
    elif open_top:
        bounds = f" {allowed}" + (f" and <= {_INT_LIMIT}" if integer else "")
    else:
        bounds = f" in {allowed}"
    options = [*(_describe(m) for m in members if m not in (int, float, Any)), f"{kind}{bounds}"]
    raise ConfigError(f"{where}: {value!r} is out of range; allowed: {' or '.join(options)}")


def _legacy(value: Any, hint: Any, allowed: str | None) -> Any:
    """Null/auto for a 0 that earlier versions wrote for it: a key taking an integer or null/auto whose range refuses 0."""
    members = get_args(hint) if _is_union(hint) else ()
    zero = not isinstance(value, bool) and (value == 0 or (isinstance(value, str) and value.strip() == "0"))
    if zero and int in members and allowed is not None and not _in_range(0, allowed):
        return None if type(None) in members else "auto"
    return value


def _value(value: Any, hint: Any, allowed: str | None, where: str, parse: bool) -> Any:
    """A key's value typed; from a file or override (``parse``) with legacy zeros converted, else range-checked."""
    if parse:
        return _coerce(_legacy(value, hint, allowed), hint, where)
    _check_range(_coerce(value, hint, where, parse=False), hint, allowed, where)
    return value


def _model_overrides(overrides: dict[Any, Any], parse: bool) -> dict[Any, Any]:
    """Each model's ``training`` keys typed as :func:`_value` does, and its constructor arguments by their
    annotations (:func:`_model_arguments`); :func:`_check_model_overrides` refuses the keys that are neither."""
    train = _fields(TrainConfig)
    arguments = _model_arguments()
    typed: dict[Any, Any] = {}
    for model, args in overrides.items():
        where = f"compare.model_overrides.{model}"
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: expected a mapping of training keys (or model arguments) to values, "
                              f"got {args!r}")
        own = {k: (hint, _MODEL_ARGUMENT_RANGES.get(k)) for k, hint in
               arguments.get(fusion_key(str(model)), {}).items() if hint is not Any}
        typed[model] = {k: _value(v, *(train.get(k) or own[k]), f"{where}.{k}", parse) if k in train or k in own
                        else v for k, v in args.items()}
    return typed


# --- loading --------------------------------------------------------------------------------------------------------

def _merge_dict(current: dict[str, Any], update: dict[str, Any], where: str) -> dict[str, Any]:
    """Merges a nested mapping (config file or ``a.b.c=v`` override) into the free-form dict field ``where``."""
    merged = dict(current)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = _merge_dict(merged.get(key) or {}, value, f"{where}.{key}")
        else:
            merged[key] = _parse(value, f"{where}.{key}") if isinstance(value, str) else value
    return merged


def _drop_retired(where: str, value: Any) -> None:
    """Accepts a retired key (see :data:`_RETIRED`) when it leaves its feature off; refuses it otherwise."""
    sub, why = _RETIRED[where]
    if sub:
        value = value.get(sub, False) if isinstance(value, dict) else value
        where = f"{where}.{sub}"
    flag = _parse(value, where) if isinstance(value, str) else value
    if flag not in (False, None, 0) and where in _IGNORED_WHEN_ON:
        log.warning("%s: %r is ignored: %s; the labels are the argmax of the probabilities", where, flag, why)
    elif flag not in (False, None, 0):  # 0: data.fold's default
        raise ConfigError(f"{where}: {flag!r} is no longer supported: {why}; remove the key")


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    """Sets the keys of ``data`` (a config file's or an override's) on the section ``obj``."""
    fields = _fields(type(obj))
    for key, value in data.items():
        where = f"{prefix}{key}"
        if where in _RETIRED:
            _drop_retired(where, value)
        elif key not in fields:
            raise _not_allowed(f"unknown config key '{where}'", str(key), sorted(fields), "; known keys here: ")
        elif dataclasses.is_dataclass(getattr(obj, key)):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' is a section; give it a mapping, not {value!r}")
            _apply(getattr(obj, key), value, prefix=f"{where}.")
        elif get_origin(fields[key][0]) is dict:
            merged = _merge_dict(getattr(obj, key), _coerce(value, fields[key][0], where), where)
            setattr(obj, key, _model_overrides(merged, parse=True) if where == "compare.model_overrides" else merged)
        else:
            setattr(obj, key, _value(value, *fields[key], where, parse=True))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Builds a :class:`RunConfig` from defaults, an optional YAML file, then ``section.key=value`` overrides.

    Raises:
        ConfigError: naming the key: an unreadable file, a bad override or key, or what :func:`validate` refuses.
    """
    return validate(_overlay(RunConfig(), path, overrides))


def _overlay(cfg: RunConfig, path: str | Path | None, overrides: Sequence[str]) -> RunConfig:
    """``cfg`` with the YAML file ``path`` and then the ``section.key=value`` overrides applied (not validated)."""
    if path is not None:
        p = Path(path)
        data = _read_yaml_file(p) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        _apply(cfg, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value (e.g. training.lr=0.0005)")
        dotted, raw = item.split("=", 1)
        nested: Any = raw
        for part in reversed(dotted.strip().split(".")):
            nested = {part: nested}
        _apply(cfg, nested)
    return cfg


# How a finished run runs, never what it answers: the only keys --config / --set may change for one.
RUNTIME_KEYS = ("encoders.device", "encoders.num_threads", "encoders.batch_size", "training.device",
                "data.max_image_pixels", "cache_dir", "tracking.mlflow", "tracking.experiment")


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf setting of a config by dotted key (a mapping such as ``model_overrides`` is one leaf)."""
    if not dataclasses.is_dataclass(obj):
        return {prefix.rstrip("."): obj}
    return {k: v for f in dataclasses.fields(obj) for k, v in _flat(getattr(obj, f.name), f"{prefix}{f.name}.").items()}


def load_run_config(run_config: str | Path, path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A finished run's saved config with a user's ``--config`` file and ``--set`` overrides applied, where they only
    change how the run runs (:data:`RUNTIME_KEYS`: device, threads, batch size, limits, tracking).

    A key the file or an override sets to the value the run already has is fine, so the config a run was trained
    with may be given again. The ``data`` section may differ too: a finished run predicts
    from its models, and ``evaluate`` / ``predict --data`` read the user's data.

    Raises:
        ConfigError: for a setting that would change the run's answers (naming the key, both values and the fix), and
            for everything :func:`load_config` refuses.
    """
    saved = load_config(run_config)
    if path is None and not overrides:
        return saved
    cfg = validate(_overlay(load_config(run_config), path, overrides))
    before = _flat(saved)
    free = (*RUNTIME_KEYS, "data.")
    changed = [k for k, v in _flat(cfg).items() if v != before[k] and not k.startswith(free)]
    if changed:
        key = changed[0]
        raise ConfigError(f"{key}: the run was trained with {before[key]!r}, not {_flat(cfg)[key]!r}; a finished run's "
                          f"answers depend on it ({run_config}), so it cannot be changed here. Train a new run for "
                          f"that; here only {', '.join(free)} may be set")
    return cfg


# --- validation -----------------------------------------------------------------------------------------------------

def _check_section(obj: Any, prefix: str) -> None:
    """Types, fixed choices and ranges of every key of a section and its subsections."""
    for name, (hint, allowed) in _fields(type(obj)).items():
        where, value = f"{prefix}{name}", getattr(obj, name)
        if not dataclasses.is_dataclass(hint):
            _value(value, hint, allowed, where, parse=False)
        elif isinstance(value, hint):
            _check_section(value, f"{where}.")
        else:
            raise ConfigError(f"'{where}' is a section; expected a {hint.__name__}, got {value!r}")


def _check_labels(data: DataConfig) -> None:
    """``data.labels`` is a usable label set and ``data.positive_label`` one of its classes."""
    from mmsent.labels import LabelError, LabelSet  # torch-free

    try:
        labels = None if data.labels is None else LabelSet(tuple(data.labels))
    except LabelError as exc:
        raise ConfigError(f"data.labels: {exc}") from None
    if data.positive_label is not None and labels is not None and data.positive_label not in labels:
        raise ConfigError(f"data.positive_label: {data.positive_label!r} is not one of data.labels {data.labels}")


def _check_kfold_crossfitting(cfg: RunConfig) -> None:
    """With ``data.kfold`` every fine-tuned encoder is cross-fitted over the run's own folds (an encoder that learned a
    row's label must not make the features that score it), so another number of cross-fitting folds contradicts."""
    for name in ("image", "text"):
        ecfg = getattr(cfg.finetune, name)
        if ecfg.mode != "frozen" and ecfg.crossfit_folds not in (None, cfg.data.kfold):
            raise ConfigError(f"finetune.{name}.crossfit_folds={ecfg.crossfit_folds} contradicts data.kfold="
                              f"{cfg.data.kfold}: with k-fold the encoders are cross-fitted over the run's own folds; "
                              f"set finetune.{name}.crossfit_folds={cfg.data.kfold} (or null)")


def _check_contradictions(cfg: RunConfig) -> None:
    data = cfg.data
    _check_labels(data)
    cache = Path(cfg.cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():  # checked here, not after minutes of work where the first feature goes
        raise ConfigError(f"cache_dir: {cfg.cache_dir} is a file, not a folder; name a folder (it is created)")
    if data.kfold is not None and cfg.finetune.enabled:
        _check_kfold_crossfitting(cfg)
    if data.split_file is not None and data.kfold is not None:
        raise ConfigError(f"data.split_file and data.kfold contradict each other: the split file "
                          f"{data.split_file!r} fixes the split, so data.kfold must be null (or drop data.split_file)")
    text = cfg.finetune.text
    if text.mode == "last_n" and text.last_n < 1:
        raise ConfigError(f"finetune.text.last_n: {text.last_n} is out of range with finetune.text.mode=last_n; "
                          "allowed: an integer >= 1 (layers that train)")
    if not cfg.encoders.text.strip():
        raise ConfigError("encoders.text: empty; give an offline alias (minilm, mpnet), a hub id or a model folder")
    _check_text_parts(cfg)
    zero_shot = cfg.compare.zero_shot
    if zero_shot not in ("auto", "off") and not (zero_shot.startswith("hf-clip:") and zero_shot[8:].strip()):
        raise _not_allowed(f"compare.zero_shot: {zero_shot!r} is not allowed", zero_shot,
                           ["auto", "off", "hf-clip:<hub id or folder>"])
    seeds = cfg.compare.seeds
    if not seeds:
        raise ConfigError("compare.seeds: empty; give at least one seed, e.g. compare.seeds=0,1,2")
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            raise ConfigError(f"compare.seeds: {seed} is listed twice")


def _check_text_parts(cfg: RunConfig) -> None:
    """``encoders.text`` split as the registry splits it: no empty part, and a fine-tuned first part that can train."""
    from mmsent.encoders.names import SIGNAL_ALIASES, text_encoder_parts  # torch-free

    name, text = cfg.encoders.text, cfg.finetune.text
    parts = text_encoder_parts(name, Path(name).expanduser().exists())
    if not all(parts):
        raise ConfigError(f"encoders.text={name!r}: an empty part between '+' signs; join encoder names with single "
                          "'+' signs, e.g. mpnet+e5+vader")
    first = parts[0].strip()  # the registry strips the names it builds
    if cfg.finetune.enabled and text.mode != "frozen" and first.lower() in SIGNAL_ALIASES:
        raise ConfigError(f"encoders.text={name!r} and finetune.text.mode={text.mode} contradict each "
                          f"other: fine-tuning trains the first text encoder, and {first!r} is a frozen signal; "
                          "put a Hugging Face encoder first (e.g. mpnet+e5+vader) or set finetune.text.mode=frozen")


def _fusion_names() -> list[str]:
    """The fusion model names: from the live registry once it is loaded (it knows models registered in code too),
    else read from the ``register_fusion_model("name")`` calls in the package's files, without importing torch."""
    registry = sys.modules.get("mmsent.fusion.registry")
    if registry is not None:
        return registry.list_fusion_models()
    calls = [node for tree in _fusion_sources() for node in ast.walk(tree) if _is_registration(node)]
    names = [fusion_key(str(c.args[0].value)) for c in calls if c.args and isinstance(c.args[0], ast.Constant)]
    return list(dict.fromkeys(names))


def _fusion_sources() -> list[ast.Module]:
    """The parsed modules of the ``mmsent.fusion`` package folder(s), read without importing them (nor torch)."""
    folders = importlib.util.find_spec("mmsent.fusion").submodule_search_locations  # imports nothing below it
    files = sorted(path for folder in folders for path in Path(folder).glob("*.py"))
    return [ast.parse(path.read_text(encoding="utf-8")) for path in files]


def _is_registration(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_fusion_model"


# Ranges of the built-in models' own constructor arguments, whose annotations give only the type.
_TASK_ARGUMENTS = {"num_classes"}  # the task's label set sets these; a config never does
_MODEL_ARGUMENT_RANGES = {"attn_dropout": "[0, 1)", "max_image_tokens": ">= 1", "max_text_tokens": ">= 1"}
_PLAIN_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _annotation(node: ast.expr | None) -> Any:
    """The type an annotation names when it is a plain type or a Literal of constants; ``Any`` (unchecked) else."""
    if isinstance(node, ast.Name):
        return _PLAIN_TYPES.get(node.id, Any)
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if all(isinstance(item, ast.Constant) for item in items):
            return Literal[tuple(item.value for item in items)]
    return Any


@functools.cache  # read once per process, as the registry imports the package's modules once
def _model_arguments() -> dict[str, dict[str, Any]]:
    """Per fusion model the package's files register by decorator: its constructor arguments after ``image_dim``
    and ``text_dim`` (an inherited ``__init__`` included) with their types. Read from the source as
    :func:`_fusion_names` does, so checking the model overrides imports no torch; a model registered in code is
    missing here, and its overrides are the constructor's to check."""
    classes: dict[str, ast.ClassDef] = {}
    registered: list[tuple[str, str]] = []
    for tree in _fusion_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node
                registered += [(fusion_key(str(d.args[0].value)), node.name) for d in node.decorator_list
                               if _is_registration(d) and d.args and isinstance(d.args[0], ast.Constant)]
    found: dict[str, dict[str, Any]] = {}
    for name, cls in registered:
        while cls in classes:
            node = classes[cls]
            init = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            if init is not None:
                arguments = [*init.args.args[3:], *init.args.kwonlyargs]  # after self, image_dim, text_dim
                found[name] = {a.arg: _annotation(a.annotation) for a in arguments if a.arg not in _TASK_ARGUMENTS}
                break
            cls = next((b.id for b in node.bases if isinstance(b, ast.Name)), "")
    return found


def _check_names(cfg: RunConfig) -> None:
    """Model and encoder names against their registries, and the models' training overrides."""
    known = _fusion_names()
    compare = cfg.compare
    if not compare.models:
        raise ConfigError(f"compare.models: empty; allowed: {', '.join(known)}")
    seen: list[str] = []
    for name in compare.models:
        key = fusion_key(name)
        if key not in known:
            raise _not_allowed(f"compare.models: unknown model {name!r}", key, known)
        if key in seen:
            raise ConfigError(f"compare.models: {name!r} is listed twice")
        seen.append(key)
    compare.models = seen  # as the registry names them: "Concat" is saved, and names its models, as "concat"
    choice = fusion_key(compare.predict_with)
    if choice not in ("ensemble", "best") and choice not in seen:
        why = "is not among compare.models" if choice in known else "is not a model name"
        raise _not_allowed(f"compare.predict_with: {compare.predict_with!r} {why}", choice,
                           ["ensemble", "best", *compare.models])
    compare.predict_with = choice
    merged: dict[Any, Any] = {}
    for name, values in compare.model_overrides.items():  # in order: a later spelling of a name overrides an earlier
        key = fusion_key(name) if isinstance(name, str) else name  # a non-string name is refused just below
        merged[key] = {**merged.get(key, {}), **values} if isinstance(values, dict) else values
    compare.model_overrides = merged
    _check_model_overrides(cfg, known)

    from mmsent.encoders.names import UnknownEncoderError, parse_image_encoder  # torch-free

    try:
        parse_image_encoder(cfg.encoders.image)
    except UnknownEncoderError as exc:
        raise ConfigError(f"encoders.image: {exc}") from None


def _check_model_overrides(cfg: RunConfig, known: list[str]) -> None:
    """Each model override: a registered model; training keys typed and ranged as under ``training``; other keys
    among the model's constructor arguments, typed by their annotations; and, for each compared token model,
    num_heads dividing hidden_dim."""
    overrides = cfg.compare.model_overrides
    for model in overrides:
        if fusion_key(str(model)) not in known:
            raise _not_allowed(f"compare.model_overrides: unknown model {model!r}", fusion_key(str(model)), known)
    _model_overrides(overrides, parse=False)  # first: each a mapping (a config built in code may hold anything)
    train = _fields(TrainConfig)
    arguments = _model_arguments()
    for model, args in overrides.items():
        own = arguments.get(fusion_key(str(model)))
        for key in args if own is not None else ():  # a model registered in code checks its own arguments
            if key not in train and key not in own:
                raise _not_allowed(f"unknown config key 'compare.model_overrides.{model}.{key}'", str(key),
                                   sorted({*train, *own}), "; known keys here: ")
    for model in cfg.compare.models:  # only these are built (the defaults' overrides cannot be removed)
        if "num_heads" in arguments.get(fusion_key(model), {}):
            _check_heads(cfg, model, overrides.get(model, {}))


def _check_heads(cfg: RunConfig, model: str, overrides: dict[str, Any]) -> None:
    """A token model's attention splits hidden_dim into num_heads parts; torch asserts it only when the model is built,
    deep in a run."""
    (width, width_key), (heads, heads_key) = (
        (overrides[name], f"compare.model_overrides.{model}.{name}") if name in overrides
        else (getattr(cfg.training, name), f"training.{name}") for name in ("hidden_dim", "num_heads"))
    if width % heads:
        raise ConfigError(f"{width_key}={width} and {heads_key}={heads} contradict each other: {model} needs "
                          "num_heads to divide hidden_dim")


def validate(cfg: RunConfig) -> RunConfig:
    """Checks a whole configuration and returns it unchanged; :func:`load_config` calls it, code may too.

    Types and fixed choices, ranges, contradictions between keys, then the model and image encoder names (only these
    import a registry).

    Raises:
        ConfigError: naming the dotted key, the bad value, what is allowed and, for a near miss, a "did you mean".
    """
    _check_section(cfg, "")
    _check_contradictions(cfg)
    _check_names(cfg)
    return cfg
