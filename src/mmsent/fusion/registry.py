"""Fusion models by name, and saving/loading trained ones (safetensors weights + ``model.json``, no pickle).

:func:`register_fusion_model` adds a model. The first query imports every module in the ``mmsent.fusion`` package
folder, so a new model is one new file there. Imports nothing from :mod:`mmsent.config` (whose validation imports
this module): a training config is read by attribute or as a mapping.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import pkgutil
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mmsent.fusion.base import FusionModel
from mmsent.io import atomic_write_text, save_tensors
from mmsent.labels import LABELS, LabelError, LabelsLike, LabelSet, as_label_set
from mmsent.naming import fusion_key  # re-exported: callers find it beside the registry

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
_FORMAT = "mmsent-fusion"

M = TypeVar("M", bound=FusionModel)


class _Entry(NamedTuple):
    cls: type[FusionModel]
    fixed: dict[str, Any]  # arguments the name fixes (``gated_text`` -> gate_from="text")

    @property
    def arguments(self) -> list[str]:
        """Constructor arguments after ``image_dim`` and ``text_dim``."""
        return list(inspect.signature(self.cls).parameters)[2:]


_REGISTRY: dict[str, _Entry] = {}  # in registration order: the built-ins (``import mmsent.fusion``) first
_discovered = False  # whether every module of the package folder(s) has been imported


def register_fusion_model(name: str, **fixed: Any) -> Callable[[type[M]], type[M]]:
    """Class decorator: ``create_fusion_model(name, ...)`` builds the class, always with the ``fixed`` arguments.

    Stack it to offer one class under several names. The constructor takes ``image_dim, text_dim``, then named
    arguments (including ``fixed`` and ``config_fields``), all saved with the weights.

    Raises:
        ValueError: for a name that is not lowercase letters, digits and ``_``, or is taken by another class.
        TypeError: for a class that is not a FusionModel with such a constructor.
    """
    key = fusion_key(name)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        raise ValueError(f"fusion model name {name!r}: use lowercase letters, digits and '_', starting with a letter")

    def register(cls: type[M]) -> type[M]:
        if not (isinstance(cls, type) and issubclass(cls, FusionModel)):
            raise TypeError(f"register_fusion_model({key!r}): {cls!r} must be a FusionModel subclass")
        params = list(inspect.signature(cls).parameters.values())
        needed = ["image_dim", "text_dim", *fixed, *cls.config_fields]
        if ([p.name for p in params[:2]] != needed[:2]
                or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
                or not {p.name for p in params}.issuperset(needed)):
            raise TypeError(f"{cls.__qualname__} must be a FusionModel whose __init__ takes (image_dim, text_dim, "
                            f"<named arguments>), with {', '.join(needed[2:])} among them and no *args/**kwargs; "
                            f"it takes {inspect.signature(cls)}")
        taken = _REGISTRY.get(key)
        if taken is not None and (taken.cls.__module__, taken.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"fusion model name {key!r} is already registered by "
                             f"{taken.cls.__module__}.{taken.cls.__qualname__}")
        _REGISTRY[key] = _Entry(cls, fixed)
        return cls

    return register


def _discover() -> None:
    """Imports every module of the package folder(s) once; ImportError names the file of one that fails."""
    global _discovered
    if _discovered:
        return
    import mmsent.fusion as package

    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            spec = info.module_finder.find_spec(info.name)
            where = spec.origin if spec is not None and spec.origin else info.name
            raise ImportError(f"fusion model module {where} failed to import: {type(exc).__name__}: {exc}",
                              name=info.name, path=where) from exc
    _discovered = True


def list_fusion_models() -> list[str]:
    """Names :func:`create_fusion_model` accepts: the built-ins first, then those of added modules."""
    _discover()
    return list(_REGISTRY)


def create_fusion_model(name: str, image_dim: int, text_dim: int, cfg: Any = None,
                        **overrides: Any) -> FusionModel:
    """Builds a fusion model by name, recording ``fusion_name`` and every constructor argument in ``hparams``.

    Args:
        name: one of :func:`list_fusion_models` (``-`` and case are forgiven).
        image_dim: width of the image features.
        text_dim: width of the text features.
        cfg: object or mapping (e.g. a ``TrainConfig``) supplying the model's ``config_fields``, if it has them.
        **overrides: constructor arguments that win over ``cfg``.

    Raises:
        ValueError: for an unknown name, or an override contradicting the name's fixed arguments.
        TypeError: for an argument the model does not take.
        ImportError: naming the file of a module in the package folder that fails to import.
    """
    _discover()
    key = fusion_key(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown fusion model {name!r}; known: {', '.join(_REGISTRY)}")
    entry = _REGISTRY[key]
    fields = entry.cls.config_fields
    if isinstance(cfg, Mapping):
        kwargs = {f: cfg[f] for f in fields if f in cfg}
    else:
        kwargs = {f: getattr(cfg, f) for f in fields if hasattr(cfg, f)}
    kwargs.update(entry.fixed)
    if "num_classes" not in entry.arguments and overrides.get("num_classes", len(LABELS)) == len(LABELS):
        overrides = {k: v for k, v in overrides.items() if k != "num_classes"}  # a model of the three classes only
    for k, v in overrides.items():
        if k == "num_classes" and k not in entry.arguments:
            raise TypeError(f"fusion model {key!r} predicts a fixed three classes; this task has {v}: add "
                            "`num_classes: int = 3` to its constructor and size its classifier by it")
        if k not in entry.arguments:
            raise TypeError(f"fusion model {key!r} takes no argument {k!r}; it takes: {', '.join(entry.arguments)}")
        if k in entry.fixed and entry.fixed[k] != v:
            raise ValueError(f"fusion model {key!r} fixes {k}={entry.fixed[k]!r}; got {k}={v!r}")
        kwargs[k] = v
    bound = inspect.signature(entry.cls).bind(int(image_dim), int(text_dim), **kwargs)
    bound.apply_defaults()
    model = entry.cls(*bound.args, **bound.kwargs)
    model.fusion_name = key
    model.hparams = dict(bound.arguments)
    return model


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (np.generic, np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in model.json")


def save_model(model: FusionModel, path: str | Path, meta: dict[str, Any] | None = None,
               labels: LabelsLike | None = None) -> Path:
    """Writes a model built by :func:`create_fusion_model` to the directory ``path``, which it returns.

    ``weights.safetensors`` holds the weights, ``model.json`` the name, hparams, the class names of its outputs as
    Hugging Face writes them (``id2label`` / ``label2id``; ``labels`` defaults to the three sentiment classes) and
    ``meta`` (anything JSON-able; dataclasses, numpy values and tensors are converted).
    """
    label_set = as_label_set(labels)
    try:
        name, hparams = model.fusion_name, model.hparams
    except AttributeError:
        raise TypeError(f"{type(model).__name__} records no fusion_name/hparams; build it with "
                        "create_fusion_model") from None
    if len(label_set) != model.num_classes:
        raise ValueError(f"the model predicts {model.num_classes} classes, but {len(label_set)} labels were given: "
                         f"{list(label_set)}")
    out = Path(path)
    save_tensors(out / WEIGHTS_FILE, model.state_dict(), metadata={"format": _FORMAT})
    description = {"format": _FORMAT, "version": 2, "name": name, "hparams": hparams, **label_set.to_json(),
                   "modalities": list(model.modalities), "meta": meta or {}}
    atomic_write_text(out / META_FILE, json.dumps(description, indent=2, default=_json_default))
    return out


_RESTORE = "restore the file (rerun or re-export the run), or train the model again"


def _check_description(description: dict[str, Any], where: Path) -> None:
    """Raises ValueError naming ``where``, the key and the fix for a description :func:`save_model` did not write."""
    for key, kind, what in (("name", str, "a string"), ("hparams", dict, "an object")):
        if key not in description:
            raise ValueError(f"{where}: {key!r} is missing; {_RESTORE}")
        if not isinstance(description[key], kind):
            raise ValueError(f"{where}: {key!r} must be {what}, got {description[key]!r}; {_RESTORE}")
    if not isinstance(description.get("meta", {}), dict):  # optional: descriptions of early versions lack it
        raise ValueError(f"{where}: 'meta' must be an object, got {description['meta']!r}; {_RESTORE}")
    hparams = description["hparams"]
    for key in ("image_dim", "text_dim"):
        if key not in hparams:
            raise ValueError(f"{where}: 'hparams' lacks {key!r}; {_RESTORE}")
        if isinstance(hparams[key], bool) or not isinstance(hparams[key], int) or hparams[key] <= 0:
            raise ValueError(f"{where}: 'hparams.{key}' must be a positive integer, got {hparams[key]!r}; {_RESTORE}")


def described_labels(description: dict[str, Any], where: Path) -> LabelSet:
    """The class names of a model's outputs: ``id2label``, or the ``labels`` list that version 1 wrote; as many as
    its ``hparams.num_classes`` (3 where a version-1 model did not record it)."""
    try:
        if "id2label" in description:
            labels = LabelSet.from_json(description, str(where))
        elif isinstance(description.get("labels"), list):
            labels = LabelSet(tuple(description["labels"]))
        else:
            raise LabelError(f"{where}: 'id2label' is missing")
    except LabelError as exc:
        raise ValueError(f"{exc}; {_RESTORE}") from None
    width = description["hparams"].get("num_classes", len(LABELS))
    if width != len(labels):
        raise ValueError(f"{where}: 'hparams.num_classes' is {width!r} but 'id2label' names {len(labels)} classes; "
                         f"{_RESTORE}")
    return labels


def read_description(path: str | Path) -> dict[str, Any]:
    """The checked ``model.json`` of a folder written by :func:`save_model`: a registered name, its class names (as a
    :class:`~mmsent.labels.LabelSet` under ``label_set``), and hparams the model's constructor takes.

    Raises:
        ValueError: naming the file, the key and the fix, for anything else.
    """
    src = Path(path)
    where = src / META_FILE
    try:
        description = json.loads(where.read_text(encoding="utf-8"))
    except RecursionError:  # '[[[[...' deeper than Python's stack
        raise ValueError(f"{where}: not readable JSON (nested too deeply); train the model again") from None
    except ValueError as exc:
        raise ValueError(f"{where}: not readable JSON ({exc}); train the model again") from exc
    if not isinstance(description, dict) or description.get("format") != _FORMAT:
        raise ValueError(f"{where} is not an mmsent fusion model description")
    _check_description(description, where)
    description["label_set"] = described_labels(description, where)
    name = description["name"]
    if fusion_key(name) not in list_fusion_models():
        raise ValueError(f"model at {src} is a {name!r}, which no module in the mmsent.fusion package registers "
                         f"(known: {', '.join(_REGISTRY)}); put the module that defines it back in that folder")
    takes = _REGISTRY[fusion_key(name)].arguments
    stray = [k for k in description["hparams"] if k not in ("image_dim", "text_dim", *takes)]
    if stray:
        raise ValueError(f"{where}: 'hparams' has a key {stray[0]!r} the {name!r} model does not take (it takes "
                         f"{', '.join(takes)}); remove the key if you added it, else {_RESTORE}")
    _check_hparam_values(description["hparams"], where)
    return description


MAX_INT_HPARAM = 1 << 20  # far above any width, token count or class count a fusion model uses


def _check_hparam_values(hparams: dict[str, Any], where: Path) -> None:
    """Every integer hparam is a size or a count: positive and sane (``10**12`` would ask for petabytes, ``-5`` is a
    negative dimension); every float one finite (a NaN dropout passes torch's range check)."""
    for key, value in hparams.items():
        if isinstance(value, int) and not isinstance(value, bool) and not 0 < value <= MAX_INT_HPARAM:
            raise ValueError(f"{where}: 'hparams.{key}' must be an integer from 1 to {MAX_INT_HPARAM}, got {value!r}; "
                             f"{_RESTORE}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: 'hparams.{key}' must be a finite number, got {value!r}; {_RESTORE}")


def _stored_shapes(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as empty meta tensors of their shapes: its header only, nothing loaded."""
    with safe_open(str(path), framework="pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}


def load_model(path: str | Path, device: torch.device | str = "cpu") -> FusionModel:
    """Rebuilds a model saved by :func:`save_model` (in eval mode, its ``meta`` as ``saved_meta``).

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: for a file that is not an mmsent model, another label order, a name no module registers, or a
            description that lacks a key or has one the model does not take (see :func:`read_description`).
    """
    src = Path(path)
    for f in (META_FILE, WEIGHTS_FILE):
        if not (src / f).is_file():
            raise FileNotFoundError(f"{src / f} not found; expected a directory written by save_model")
    description = read_description(src)
    name, hparams, label_set = description["name"], dict(description["hparams"]), description.pop("label_set")
    image_dim, text_dim = hparams.pop("image_dim"), hparams.pop("text_dim")
    try:  # first without memory (meta tensors): the description and the file's shapes must agree before allocating
        with torch.device("meta"):
            skeleton = create_fusion_model(name, image_dim, text_dim, **hparams)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:  # an hparam of the wrong type or value
        raise ValueError(f"{src / META_FILE}: its 'hparams' do not build a {name!r} ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {_RESTORE}") from exc
    try:
        skeleton.load_state_dict(_stored_shapes(src / WEIGHTS_FILE), strict=True)
        model = create_fusion_model(name, image_dim, text_dim, **hparams)
        model.load_state_dict(load_file(str(src / WEIGHTS_FILE)), strict=True)
    except Exception as exc:  # safetensors' own errors, and tensors that do not fit the description
        raise ValueError(f"{src / WEIGHTS_FILE}: cannot be loaded into the {name!r} that {META_FILE} describes "
                         f"({type(exc).__name__}: {str(exc)[:200]}); train the model again") from exc
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{src / WEIGHTS_FILE}: {len(bad)} tensor(s) hold NaN/infinite values (e.g. {bad[0]}); the "
                         "file is damaged or training diverged: train the model again")
    model.saved_meta = description.get("meta", {})
    model.label_set = label_set
    return model.to(device).eval()
