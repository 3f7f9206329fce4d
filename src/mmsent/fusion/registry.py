"""Fusion models by name, and saving/loading trained ones (safetensors weights + JSON description, no pickle).

A model joins the registry with the :func:`register_fusion_model` class decorator. The first query
(:func:`list_fusion_models`, :func:`create_fusion_model`, :func:`load_model`) imports every module in the
``mmsent.fusion`` package folder, so a new model is one new file there (``src/mmsent/fusion/my_model.py``) and
nothing else: ``compare.models``, the report and ``mmsent serve`` all build and load models through this module.

This module imports nothing from :mod:`mmsent.config` (config validation imports it); a training config is read
by attribute (or as a mapping).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mmsent.fusion.base import FusionModel
from mmsent.labels import LABELS

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
_FORMAT = "mmsent-fusion"
_FORMAT_VERSION = 1
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_DIMS = ("image_dim", "text_dim")

M = TypeVar("M", bound=FusionModel)


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type[FusionModel]
    fixed: dict[str, Any]  # arguments the name itself fixes (``gated_text`` -> gate_from="text")
    signature: inspect.Signature  # of the constructor: records every argument, defaults included, as ``hparams``

    @property
    def arguments(self) -> list[str]:
        """Constructor arguments after ``image_dim`` and ``text_dim``."""
        return [p for p in self.signature.parameters if p not in _DIMS]


# name -> entry, in registration order: the built-ins (which ``import mmsent.fusion`` registers) come first
_REGISTRY: dict[str, _Entry] = {}
# whether every module of the mmsent.fusion package folder(s) has been imported
_discovered = False


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_fusion_model(name: str, **fixed_args: Any) -> Callable[[type[M]], type[M]]:
    """Class decorator: ``create_fusion_model(name, ...)`` builds the decorated class, always with ``fixed_args``.

    Stack it to offer one class under several names (``gated_text`` is :class:`GatedFusion` with
    ``gate_from="text"``). The constructor must take ``image_dim`` and ``text_dim`` first, then named arguments
    (no ``*args``/``**kwargs``): all of them are saved with the weights to rebuild the model.

    Raises:
        ValueError: for a name that is not lowercase letters, digits and ``_`` (``-`` and case are forgiven), or
            one another class already registered.
        TypeError: for a class that is not a :class:`FusionModel`, or whose constructor does not fit the above or
            lacks a fixed argument or one of its ``config_fields``.
    """
    key = _normalise(name)
    if not _NAME_PATTERN.fullmatch(key):
        raise ValueError(f"fusion model name {name!r}: use lowercase letters, digits and '_', starting with a letter")

    def register(cls: type[M]) -> type[M]:
        if not (isinstance(cls, type) and issubclass(cls, FusionModel)):
            raise TypeError(f"register_fusion_model({key!r}) decorates FusionModel subclasses, not {cls!r}")
        signature = inspect.signature(cls)
        params = list(signature.parameters.values())
        if [p.name for p in params[:2]] != list(_DIMS) or any(
                p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise TypeError(f"{cls.__qualname__}.__init__ must take (image_dim, text_dim, <named arguments>) and no "
                            f"*args/**kwargs, so that it can be rebuilt from its saved arguments; it takes {signature}")
        entry = _Entry(cls, dict(fixed_args), signature)
        missing = [a for a in (*fixed_args, *cls.config_fields) if a not in entry.arguments]
        if missing:
            raise TypeError(f"{cls.__qualname__} is registered with argument(s) {', '.join(missing)} (fixed or in "
                            f"config_fields) that its constructor does not take; it takes: "
                            f"{', '.join(entry.arguments)}")
        taken = _REGISTRY.get(key)
        if taken is not None and (taken.cls.__module__, taken.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"fusion model name {key!r} is already registered by "
                             f"{taken.cls.__module__}.{taken.cls.__qualname__}")
        _REGISTRY[key] = entry
        return cls

    return register


def _discover() -> None:
    """Imports every module of the ``mmsent.fusion`` package folder(s) once, running their registrations.

    Raises:
        ImportError: naming the file of a module that fails to import (a broken model is never skipped silently).
    """
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
    """Names accepted by :func:`create_fusion_model`: the built-ins first, then those of added modules."""
    _discover()
    return list(_REGISTRY)


def _config_values(cfg: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """``fields`` of a mapping or an object with attributes (e.g. a ``TrainConfig``); those it lacks are left out."""
    if isinstance(cfg, Mapping):
        return {f: cfg[f] for f in fields if f in cfg}
    return {f: getattr(cfg, f) for f in fields if hasattr(cfg, f)}


def create_fusion_model(name: str, image_dim: int, text_dim: int, cfg: Any = None,
                        **overrides: Any) -> FusionModel:
    """Builds a fusion model by name; it records ``fusion_name`` and every constructor argument in ``hparams``.

    Args:
        name: one of :func:`list_fusion_models` (``-`` and case are forgiven).
        image_dim: width of the image features.
        text_dim: width of the text features.
        cfg: a training config (``TrainConfig``, or any object or mapping with those fields) that supplies the
            model's ``config_fields`` (e.g. ``hidden_dim``, ``dropout``, ``num_layers``, ``num_heads``,
            ``gate_from``); the model's defaults apply when None or for fields it lacks.
        **overrides: constructor arguments that win over ``cfg`` (e.g. ``pool="cls"``).

    Raises:
        ValueError: for an unknown name (listing the known ones), or an override that contradicts the name
            (``gated_text`` with ``gate_from="image"``).
        TypeError: for an argument the model does not take (listing those it does).
        ImportError: if a module of the ``mmsent.fusion`` folder fails to import (naming its file).
    """
    _discover()
    key = _normalise(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown fusion model {name!r}; known: {', '.join(_REGISTRY)}")
    entry = _REGISTRY[key]
    kwargs = _config_values(cfg, entry.cls.config_fields) if cfg is not None else {}
    kwargs.update(entry.fixed)
    for k, v in overrides.items():
        if k not in entry.arguments:
            raise TypeError(f"fusion model {key!r} takes no argument {k!r}; it takes: {', '.join(entry.arguments)}")
        if k in entry.fixed and entry.fixed[k] != v:
            raise ValueError(f"fusion model {key!r} fixes {k}={entry.fixed[k]!r}; got {k}={v!r}")
        kwargs[k] = v
    bound = entry.signature.bind(int(image_dim), int(text_dim), **kwargs)
    bound.apply_defaults()
    model = entry.cls(*bound.args, **bound.kwargs)
    model.fusion_name = key
    model.hparams = dict(bound.arguments)
    return model


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in model.json")


def save_model(model: FusionModel, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Writes ``path/weights.safetensors`` and ``path/model.json`` (name, constructor arguments, label order, meta).

    Args:
        model: a model built by :func:`create_fusion_model` (which records its name and constructor arguments).
        path: a directory, created if missing.
        meta: anything JSON-serialisable (dataclasses such as :class:`TrainConfig` are converted), e.g. the
            training config, seed and validation metrics.

    Returns:
        The directory.
    """
    try:
        name, hparams = model.fusion_name, model.hparams
    except AttributeError:
        raise TypeError(f"{type(model).__name__} records no fusion_name/hparams; build it with "
                        "create_fusion_model") from None
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": _FORMAT})
    description = {"format": _FORMAT, "version": _FORMAT_VERSION, "name": name, "hparams": hparams,
                   "labels": list(LABELS), "modalities": list(model.modalities), "meta": meta or {}}
    (out / META_FILE).write_text(json.dumps(description, indent=2, default=_json_default), encoding="utf-8")
    return out


def load_model(path: str | Path, device: torch.device | str = "cpu") -> FusionModel:
    """Rebuilds a model saved by :func:`save_model` through the registry and loads its weights (eval mode).

    The saved ``meta`` dict is attached as ``model.saved_meta``.

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: if the file is not an mmsent model, was saved with a different label order, or names a model
            no module registers.
    """
    src = Path(path)
    for f in (META_FILE, WEIGHTS_FILE):
        if not (src / f).is_file():
            raise FileNotFoundError(f"{src / f} not found; expected a directory written by save_model")
    description = json.loads((src / META_FILE).read_text(encoding="utf-8"))
    if description.get("format") != _FORMAT:
        raise ValueError(f"{src / META_FILE} is not an mmsent fusion model description")
    if tuple(description["labels"]) != LABELS:
        raise ValueError(f"model at {src} was saved with label order {description['labels']}, this version uses "
                         f"{list(LABELS)}; its outputs would be mislabelled")
    name = description["name"]
    if _normalise(name) not in list_fusion_models():
        raise ValueError(f"model at {src} is a {name!r}, which no module in the mmsent.fusion package registers "
                         f"(known: {', '.join(_REGISTRY)}); put the module that defines it back in that folder")
    hparams = dict(description["hparams"])
    model = create_fusion_model(name, hparams.pop("image_dim"), hparams.pop("text_dim"), **hparams)
    model.load_state_dict(load_file(str(src / WEIGHTS_FILE)), strict=True)
    model.saved_meta = description.get("meta", {})
    return model.to(device).eval()
