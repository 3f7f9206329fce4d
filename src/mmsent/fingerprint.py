"""Content digests that fingerprints and cache keys are built from: files, state dicts, texts, JSON-able options;
and lists of file checksums in ``sha256sum`` format."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

_digest_memo: dict[tuple[str, int, int, str], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | Path, algorithm: str = "sha256", *, memo: bool = True) -> str:
    """Hex digest of a file's bytes, memoised per (path, size, mtime) so repeat calls cost one ``stat``.

    ``memo=False`` always reads the bytes: what verification needs, since a bit flipped on disk keeps size and mtime.
    """
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns, algorithm)
    with _digest_lock:
        hit = _digest_memo.get(memo_key) if memo else None
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


_SHA256_LINE = re.compile(r"(?P<digest>[0-9a-f]{64}) [ *](?P<path>[^\n\\]+)")


def format_sha256sums(digests: Mapping[str, str]) -> str:
    """``sha256sum`` output for ``{relative path: sha256}`` (sorted), so ``sha256sum -c`` checks it too.

    Raises:
        ValueError: for a path ``sha256sum`` would have to escape (a line break or backslash), or a bad digest.
    """
    lines = []
    for path, digest in sorted(digests.items()):
        if not _SHA256_LINE.fullmatch(f"{digest}  {path}"):
            raise ValueError(f"cannot list {path!r} (sha256 {digest!r}) in sha256sum format")
        lines.append(f"{digest}  {path}\n")
    return "".join(lines)


def parse_sha256sums(text: str, where: str) -> dict[str, str]:
    """``{relative path: sha256}`` from ``sha256sum`` output (text or binary mode lines).

    Raises:
        ValueError: naming ``where`` and the line, for a line that is not ``<64 hex digits>  <path>`` or a path
            listed twice.
    """
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _SHA256_LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{where}: line {number} is not '<sha256>  <path>': {line[:80]!r}")
        if match["path"] in digests:
            raise ValueError(f"{where}: line {number} lists {match['path']} a second time")
        digests[match["path"]] = match["digest"]
    return digests
