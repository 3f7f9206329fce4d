"""Atomic file writes (readers, and a crash, never see half a file) and safetensors/JSON files written that way."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` on a temp file beside ``path``, then renames it into place.

    The file gets the permissions an ordinary ``open(path, "w")`` would (mkstemp alone makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` as utf-8 (no newline translation) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""))


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
                 ) -> Path:
    """Atomic safetensors write; tensors are copied to contiguous CPU storage (which also unties shared weights)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reads a safetensors file (never pickle) -> ``(tensors, metadata)``."""
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})  # noqa: SIM118 -- not a dict


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomic JSON write."""
    text = json.dumps(obj, indent=2, sort_keys=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
