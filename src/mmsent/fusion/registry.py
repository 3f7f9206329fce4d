"""Fusion models by name, and saving/loading trained ones (safetensors weights + JSON description, no pickle)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mmsent.config import TrainConfig
from mmsent.fusion.base import FusionModel
from mmsent.fusion.concat import ConcatFusion
from mmsent.fusion.dual_stream import DualStreamFusion
from mmsent.fusion.gated import GatedFusion
from mmsent.fusion.single_stream import SingleStreamFusion
from mmsent.fusion.unimodal import ImageOnly, TextOnly
from mmsent.labels import LABELS

# name -> (class, arguments the name itself fixes)
_REGISTRY: dict[str, tuple[type[FusionModel], dict[str, Any]]] = {
    "concat": (ConcatFusion, {}),
    "gated": (GatedFusion, {}),
    "gated_image": (GatedFusion, {"gate_from": "image"}),
    "gated_text": (GatedFusion, {"gate_from": "text"}),
    "single_stream": (SingleStreamFusion, {}),
    "dual_stream": (DualStreamFusion, {}),
    "text_only": (TextOnly, {}),
    "image_only": (ImageOnly, {}),
}
# TrainConfig fields handed to every model whose constructor takes them
_CONFIG_FIELDS = ("hidden_dim", "dropout", "num_layers", "num_heads", "gate_from")

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
_FORMAT = "mmsent-fusion"
_FORMAT_VERSION = 1


def list_fusion_models() -> list[str]:
    """Names accepted by :func:`create_fusion_model`."""
    return list(_REGISTRY)


def create_fusion_model(name: str, image_dim: int, text_dim: int, cfg: TrainConfig | None = None,
                        **overrides: Any) -> FusionModel:
    """Builds a fusion model by name.

    Args:
        name: one of :func:`list_fusion_models` (``-`` and case are forgiven).
        image_dim: width of the image features.
        text_dim: width of the text features.
        cfg: supplies ``hidden_dim``, ``dropout``, ``num_layers``, ``num_heads`` and ``gate_from`` where the model
            takes them; the model's defaults apply when None.
        **overrides: constructor arguments that win over ``cfg`` (e.g. ``pool="cls"``).

    Raises:
        ValueError: for an unknown name (listing the known ones), or an override that contradicts the name
            (``gated_text`` with ``gate_from="image"``).
        TypeError: for an argument the model does not take (listing those it does).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown fusion model {name!r}; known: {', '.join(_REGISTRY)}")
    cls, fixed = _REGISTRY[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "image_dim", "text_dim")]
    kwargs: dict[str, Any] = {}
    if cfg is not None:
        kwargs.update({f: getattr(cfg, f) for f in _CONFIG_FIELDS if f in accepted})
    kwargs.update(fixed)
    for k, v in overrides.items():
        if k not in accepted:
            raise TypeError(f"fusion model {key!r} takes no argument {k!r}; it takes: {', '.join(accepted)}")
        if k in fixed and fixed[k] != v:
            raise ValueError(f"fusion model {key!r} fixes {k}={fixed[k]!r}; got {k}={v!r}")
        kwargs[k] = v
    model = cls(int(image_dim), int(text_dim), **kwargs)
    model.fusion_name = key
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
        model: a model built by this package (it records its constructor arguments in ``hparams``).
        path: a directory, created if missing.
        meta: anything JSON-serialisable (dataclasses such as :class:`TrainConfig` are converted), e.g. the
            training config, seed and validation metrics.

    Returns:
        The directory.
    """
    hparams = getattr(model, "hparams", None)
    name = getattr(model, "fusion_name", None)
    if hparams is None or name is None:
        raise TypeError(f"{type(model).__name__} records no fusion_name/hparams; build it with create_fusion_model")
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
        ValueError: if the file is not an mmsent model or was saved with a different label order.
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
    hparams = dict(description["hparams"])
    model = create_fusion_model(description["name"], hparams.pop("image_dim"), hparams.pop("text_dim"), **hparams)
    model.load_state_dict(load_file(str(src / WEIGHTS_FILE)), strict=True)
    model.saved_meta = description.get("meta", {})
    return model.to(device).eval()
