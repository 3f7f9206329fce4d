"""Content digests that fingerprints and cache keys are built from: files, state dicts, texts, JSON-able options."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

_digest_memo: dict[tuple[str, int, int, str], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, memoised per (path, size, mtime) so repeat calls cost one ``stat``."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns, algorithm)
    with _digest_lock:
        hit = _digest_memo.get(memo_key)
    if hit is not None:
        return hit
    h = hashlib.new(algorithm)
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _digest_lock:
        _digest_memo[memo_key] = digest
    return digest


def files_digest(paths: Iterable[str | Path], algorithm: str = "sha256") -> str:
    """One digest over several files (names and contents), independent of the order given."""
    h = hashlib.new(algorithm)
    for p in sorted(Path(x) for x in paths):
        h.update(f"{p.name}\0{file_digest(p, algorithm)}\n".encode())
    return h.hexdigest()


def state_dict_digest(state: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor of a module's state dict (names, dtypes, shapes and bytes)."""
    sd = state.state_dict() if isinstance(state, torch.nn.Module) else state
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def json_digest(obj: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys), for keys built from nested options."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
