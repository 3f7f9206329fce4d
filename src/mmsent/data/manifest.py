"""Manifests: tables of posts (CSV, JSONL or Parquet) with ``id``, ``text`` (or ``text_path``), ``image`` (or
``image_path``) and, for training tables, optional ``label`` and ``split`` columns. Relative paths are resolved
against the manifest's folder; rows are read lazily, so a manifest of any size streams."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")


class ManifestError(ValueError):
    """A manifest that cannot be read: unknown format, missing columns, a row without an id."""


@dataclass(frozen=True)
class Row:
    """One post of a manifest: its id, text (or None with ``text_path``) and image path."""

    id: str
    text: str | None
    text_path: Path | None
    image: Path
    where: str  # file:line (or file:row) for messages
    label: str | None = None  # the optional ``label`` column (training tables); None when absent or empty
    split: str | None = None  # the optional ``split`` column (train / val / test)


def read_records(path: Path) -> Iterator[tuple[str, dict]]:
    """``(file:line, record)`` per row of a CSV, JSONL or Parquet file; ManifestError for an unreadable line."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            start = 2
            for rec in reader:
                yield f"{path.name}:{start}", rec  # the record's first line (a quoted text may span several)
                start = reader.line_num + 1
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except ValueError as exc:
                    raise ManifestError(f"{path.name}:{line}: not a JSON object ({exc}); fix or remove the line") \
                        from exc
                if not isinstance(rec, dict):
                    raise ManifestError(f"{path.name}:{line}: not a JSON object; write one object per line")
                yield f"{path.name}:{line}", rec
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError("reading a Parquet manifest needs pyarrow: pip install pyarrow") from exc
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                n += 1
                yield f"{path.name}:row {n}", rec
    else:
        raise ManifestError(f"{path}: unknown manifest format; use {', '.join(MANIFEST_SUFFIXES)}")


def to_row(where: str, rec: dict, base: Path) -> Row:
    """A record as a :class:`Row` (paths resolved against ``base``); ManifestError names what it lacks."""
    rid = rec.get("id")
    image = rec.get("image") or rec.get("image_path")
    text, text_path = rec.get("text"), rec.get("text_path")
    if rid is None or str(rid).strip() == "":
        raise ManifestError(f"{where}: no 'id'; every row needs a unique id")
    if not image:
        raise ManifestError(f"{where}: no 'image' (or 'image_path') column value")
    if text_path and not text:  # a CSV writes an absent text as ""
        text = None
    elif text is None:
        raise ManifestError(f"{where}: no 'text' (or 'text_path') column value")
    label, split = rec.get("label"), rec.get("split")
    return Row(str(rid).strip(), None if text is None else str(text),
               base / str(text_path) if text is None else None, base / str(image), where,
               str(label).strip() if label not in (None, "") else None,
               str(split).strip().lower() if split not in (None, "") else None)


def read_manifest(path: str | Path) -> Iterator[Row]:
    """The manifest's rows in order (lazily). ManifestError names the first row without an id or an image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    for where, rec in read_records(path):
        yield to_row(where, rec, path.parent)


def count_rows(path: str | Path) -> int | None:
    """Rows of a manifest, counted cheaply (None for formats where that is not cheap)."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return max(0, sum(1 for _ in csv.reader(fh)) - 1)
    return None
