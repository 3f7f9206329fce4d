"""Atomic file writes (readers, and a crash, never see half a file) and safetensors/JSON files written that way;
the marker and the lock of the outputs mmsent owns.

An output the user names (``mmsent predict --out``) is written only where mmsent may: a path where nothing is, or a
file mmsent itself wrote and nobody changed since. That is proven by a *marker*, the sidecar ``<name>.mmsent.json``
beside the output, never by the file's own content: a hand-labelled ``train.txt`` starts with ``guid,tag`` just as a
prediction file does. A sidecar (rather than a comment or a header inside the file) keeps every output byte for byte
in the format its readers expect (a grader reads the ``guid,tag`` file as is). The marker records the size and
SHA-256 of each file it covers, so a file the user put in place of an output (the marker left behind) is not taken
for ours either. One process writes an output at a time: :func:`output_lock` holds an advisory lock on the hidden
``.<name>.mmsent.lock`` beside it and refuses at once, never waits, when another process holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
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


MARKER_SUFFIX = ".mmsent.json"
_MARKER_TAG = "mmsent"  # the "written_by" of every marker


class OutputError(ValueError):
    """An output mmsent may not write: a file it did not create (or one changed since), an input of the same command,
    or an output another process is writing now. The message names the file and what to do."""


def marker_path(path: str | Path) -> Path:
    """The marker (sidecar) of an output: ``<name>.mmsent.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + MARKER_SUFFIX)


def fingerprint(path: str | Path, size: int | None = None) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file's first ``size`` bytes (all of it when None; fewer if the file is shorter)."""
    digest, done = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while size is None or done < size:
            block = fh.read(1 << 20 if size is None else min(1 << 20, size - done))
            if not block:
                break
            digest.update(block)
            done += len(block)
    return {"size": done, "sha256": digest.hexdigest()}


def read_marker(path: str | Path, kind: str) -> dict[str, Any] | None:
    """The marker of output ``path`` when it exists and is mmsent's for an output of this ``kind``, else None.

    Raises:
        OutputError: if ``<name>.mmsent.json`` exists but is not a marker mmsent wrote (then it is left alone too).
    """
    marker = marker_path(path)
    if not os.path.lexists(marker):
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not (isinstance(record, dict) and record.get("written_by") == _MARKER_TAG
            and isinstance(record.get("files"), dict)):
        raise OutputError(f"{marker} exists and was not written by mmsent; it was left untouched: choose another "
                          "output path, or delete it yourself")
    return record if record.get("kind") == kind else None


def write_marker(path: str | Path, kind: str, files: Mapping[str, list[dict[str, Any]]], **info: Any) -> Path:
    """Records (atomically) that mmsent wrote output ``path``: for each file name beside it, the fingerprints it may
    have (more than one only while it is being replaced), and ``info`` for the reader (run, manifest...)."""
    return write_json(marker_path(path), {"written_by": _MARKER_TAG, "kind": kind, **info,
                                          "files": {name: list(states) for name, states in files.items()}})


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Holds the one-writer lock of output ``path`` (its folder is created) for the ``with`` block.

    The lock file is never removed: unlinking a lock file another process has just opened would let a third one lock
    a new file of the same name at the same time.

    Raises:
        OutputError: at once, when another process (or another call in this one) holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.mmsent.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # no O_TRUNC: a file of that name is never emptied
    try:
        if not _try_lock(fd):
            raise OutputError(f"{path} is being written by another mmsent process right now (it holds {lock}); wait "
                              "for it to finish, or choose another output path")
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    """An exclusive advisory lock on ``fd`` without waiting: fcntl where there is one, msvcrt on Windows."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover -- Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links and hard links included); for a path that does not exist yet, whether
    both resolve to the same place."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()
