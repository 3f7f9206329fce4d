"""Resumable training checkpoints without pickle: tensors in safetensors, small scalars and JSON in a sidecar.

A checkpoint is ``step-{global_step:08d}.safetensors`` plus ``step-{global_step:08d}.json`` in one folder. Both are
written through a temp file and ``os.replace`` (tensors first, sidecar last), and the sidecar names the step the
tensor file carries in its own metadata, so a crash at any point leaves the previous complete checkpoint usable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsent.io import load_tensors, save_tensors, write_json

logger = logging.getLogger("mmsent.training")

FORMAT = "mmsent-finetune-checkpoint"
_PREFIX = "step-"


# -- optimizer, scheduler and RNG state -----------------------------------------------------------------------------
def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Splits ``optimizer.state_dict()`` into tensors (``optim.{param}.{name}``) and JSON (groups, scalars)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                         meta: Mapping[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG a training step may draw from (dropout, drop connect): torch CPU/CUDA, NumPy, Python."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py_version, py_internal, py_gauss = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_version, list(py_internal), py_gauss]}
    return tensors, meta


def restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    name, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


# -- checkpoint files -----------------------------------------------------------------------------------------------
def save_checkpoint(folder: str | Path, step: int, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                    keep: int = 1) -> Path:
    """Writes checkpoint ``step`` (tensors, then the sidecar) and removes all but the newest ``keep``.

    Returns:
        The sidecar's path.
    """
    folder = Path(folder)
    stem = f"{_PREFIX}{step:08d}"
    save_tensors(folder / f"{stem}.safetensors", tensors, {"format": FORMAT, "step": str(step)})
    sidecar = write_json(folder / f"{stem}.json", {"format": FORMAT, "step": step, **meta})
    for old in _complete(folder)[:-keep]:
        for suffix in (".json", ".safetensors"):  # sidecar first: a tensor file alone is never picked up
            with contextlib.suppress(OSError):
                old.with_suffix(suffix).unlink()
    return sidecar


def _complete(folder: Path) -> list[Path]:
    """Sidecars with their tensor file, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{_PREFIX}*.json") if p.with_suffix(".safetensors").is_file()]
    return sorted(found, key=lambda p: p.stem)


def load_latest_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest complete, consistent checkpoint as ``(tensors, meta)``, or None.

    A damaged newest checkpoint (unreadable, or tensors from another step) is logged and skipped for the one before.
    """
    for sidecar in reversed(_complete(Path(folder))):
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            tensors, header = load_tensors(sidecar.with_suffix(".safetensors"))
            if meta.get("format") != FORMAT or header.get("step") != str(meta.get("step")):
                raise ValueError(f"tensor file is for step {header.get('step')}, sidecar for {meta.get('step')}")
        except Exception as exc:  # noqa: BLE001 -- a bad checkpoint means "use an older one", never "crash"
            logger.warning("skipping damaged checkpoint %s (%s)", sidecar, exc)
            continue
        return tensors, meta
    return None
