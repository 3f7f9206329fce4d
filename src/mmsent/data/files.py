"""Reading the files a dataset or manifest names: only regular files, and never more bytes than a limit.

A FIFO, device or folder named as a text or an image would block a read forever or return endless data, so those are
refused before they are opened, with what they are.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# os.O_NONBLOCK: a FIFO put in place of the file between our stat and our open does not block the open
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class FileRefusedError(OSError):
    """A path that is not read: not a regular file, or over a size limit.

    Attributes:
        path: the path.
        reason: what it is, in words ("not a regular file but a FIFO (named pipe)").
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class FileTooLargeError(FileRefusedError):
    """A regular file over the size limit; ``size`` is its size in bytes."""

    def __init__(self, path: str | Path, size: int, limit: int) -> None:
        super().__init__(path, f"{size:,} bytes, over the limit of {limit:,}")
        self.size = size


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def check_regular(path: str | Path) -> os.stat_result:
    """The file's stat (links followed) if it is a regular file.

    Raises:
        FileNotFoundError: if there is nothing at ``path``.
        FileRefusedError: if it is a FIFO, device, folder or socket.
        OSError: if it cannot be looked at (permissions).
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefusedError(path, f"not a regular file but {_kind(info.st_mode)}")
    return info


def read_regular_file(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, refused without reading when over ``max_bytes``.

    Raises:
        FileNotFoundError: if there is nothing at ``path``.
        FileRefusedError: if it is not a regular file (:class:`FileTooLargeError`: over ``max_bytes``).
        OSError: if it cannot be read.
    """
    size = check_regular(path).st_size
    if max_bytes is not None and size > max_bytes:
        raise FileTooLargeError(path, size, max_bytes)
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the stat above
            raise FileRefusedError(path, f"not a regular file but {_kind(mode)}")
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # it grew since the stat
            raise FileTooLargeError(path, max(len(data), os.fstat(fd).st_size), max_bytes)
    return data
