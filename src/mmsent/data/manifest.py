"""Manifests: tables of posts (CSV, JSONL or Parquet) with ``id``, ``text`` (or ``text_path``), ``image`` (or
``image_path``) and, for training tables, optional ``label`` and ``split`` columns. Relative paths are resolved
against the manifest's folder; rows are read lazily, so a manifest of any size streams.

Reading is strict: a CSV row with more fields than its header (a text cut at an unquoted comma), a field the csv
module gives up on, or a row without its image or text is never read as something else. :func:`read_manifest` gives
it as an error row (:attr:`Row.error`, answered with that error) where it has an id, and stops at one without."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mmsent.data.files import FileRefusedError, check_regular
from mmsent.data.text import MAX_TEXT_CHARS

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")

# The key under which read_records passes on why a CSV record cannot be used (too many fields, a field csv gives up
# on), with what is known of it (its id), so that to_row names the problem and the row's id still answers it.
_PROBLEM = object()
_QUOTE_FIX = 'put a text holding a comma in double quotes: "not bad, actually"'


class ManifestError(ValueError):
    """A manifest that cannot be read: unknown format, missing columns, a row without an id."""


class RowError(ManifestError):
    """One row that cannot be used (no id, no image, too many fields, ...).

    Attributes:
        where: ``file:line`` (or ``file:row n``).
        reason: what is wrong, in words.
        fix: what to do about it ("" where the reason says it).
        detail: the reason and the fix, as one message without ``where``.
    """

    def __init__(self, where: str, reason: str, fix: str = "") -> None:
        self.where, self.reason, self.fix = where, reason, fix
        self.detail = f"{reason}; {fix}" if fix else reason
        super().__init__(f"{where}: {self.detail}")


@dataclass(frozen=True)
class Row:
    """One post of a manifest: its id, text (or None with ``text_path``) and image path; or, for an error row, its
    id, location and ``error`` (its image is then the manifest's folder, and it is not read)."""

    id: str
    text: str | None
    text_path: Path | None
    image: Path
    where: str  # file:line (or file:row) for messages
    label: str | None = None  # the optional ``label`` column (training tables); None when absent or empty
    split: str | None = None  # the optional ``split`` column (train / val / test)
    error: str | None = None  # why the row cannot be predicted (an error row: nothing but its id is used)


def read_records(path: Path) -> Iterator[tuple[str, dict]]:
    """``(file:line, record)`` per row of a CSV, JSONL or Parquet file; ManifestError for an unreadable line (a CSV
    record that cannot be used is passed on, for :func:`to_row` to name)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(path)
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except RecursionError:
                    raise ManifestError(f"{path.name}:{line}: not a JSON object (nested too deeply); fix or remove "
                                        "the line") from None
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


class _CsvLines:
    """A CSV file's lines as csv.reader takes them, numbered, keeping those of the record being read: to name a
    record by its lines, and to skip the rest of one that csv gave up on."""

    def __init__(self, fh: TextIO) -> None:
        self.fh, self.number = fh, 0
        self.record: list[str] = []
        self.cr_ends_lines: bool | None = None  # a file whose lines end in a bare CR (old Mac), known from its first

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = next(self.fh)
        self.number += 1
        if self.cr_ends_lines is None:
            self.cr_ends_lines = line.endswith("\r")
        # Elsewhere a bare CR is inside a record, not its end: the record stays whole (csv then names the problem)
        # instead of its two halves passing for two records, the second with a made-up id.
        while not self.cr_ends_lines and line.endswith("\r"):  # not counted: line numbers are the file's LF lines
            more = next(self.fh, "")
            if not more:
                break
            line += more
        self.record.append(line)
        return line

    def start(self) -> int:
        """Forgets the last record's lines; returns the number of the line the next record starts on."""
        self.record = []
        return self.number + 1

    def skip_quoted(self) -> bool:
        """After csv gave up inside a record: skips to the line where the record's quotes balance (its end, as
        every CSV writer doubles a quote inside a quoted field); False if the file ends first."""
        quotes = sum(line.count('"') for line in self.record)
        while quotes % 2:
            line = next(self.fh, None)
            if line is None:
                return False
            self.number += 1
            quotes += line.count('"')
        return True


def _csv_records(path: Path) -> Iterator[tuple[str, dict]]:
    """The records of a CSV file by its header; one with more fields than the header, or one the csv module cannot
    read (a field over its size limit), is passed on with its problem and, where it can be known, its id."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        lines = _CsvLines(fh)
        reader = csv.reader(lines)
        header: list[str] | None = None
        while True:
            start = lines.start()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if header is None:
                    raise ManifestError(f"{path.name}:{start}: the header cannot be read ({exc}); write the column "
                                        "names on the first line") from exc
                yield f"{path.name}:{start}", _unreadable_record(header, lines, start, exc)
                continue
            if not fields:  # a blank line
                continue
            if header is None:
                header = fields
                continue
            rec: dict = dict(zip(header, fields))
            if len(fields) > len(header):  # the text was cut at an unquoted comma: never silently
                rec[_PROBLEM] = (f"{len(fields)} fields, but the header has {len(header)} columns (an unquoted "
                                 "comma in a text?)", _QUOTE_FIX)
            yield f"{path.name}:{start}", rec


def _unreadable_record(header: list[str], lines: _CsvLines, start: int, exc: csv.Error) -> dict:
    """A record csv gave up on: its problem, and its id when it comes before the field csv gave up on. The rest of
    the record is skipped, so that the next record is read from its own first line."""
    limit = csv.field_size_limit()
    first = lines.record[0] if lines.record else ""
    closed = lines.skip_quoted()
    if "field limit" in str(exc):  # "field larger than field limit (131072)"
        what = f"a field over {limit:,} characters, more than the CSV reader takes"
        note, fix = f" (texts may have at most {MAX_TEXT_CHARS:,})", "shorten it or remove the row"
    elif "new-line character" in str(exc):  # csv's words for a bare CR in an unquoted field
        what, note, fix = "a bare carriage return (CR) inside an unquoted field", "", "quote the field or remove the CR"
        first = first.partition("\r")[0]  # the fields before it, for the id
    else:
        what, note, fix = f"the CSV reader cannot read it ({exc})", "", "fix the row or remove it"
    if not closed:
        reason = f"{what}: a quote in the record from line {start} is never closed"
        fix = 'close it, and double every quote inside a quoted text ("")'
    else:
        reason = what + note + (f", in the record on lines {start}-{lines.number}" if lines.number > start else "")
    rec: dict = {_PROBLEM: (reason, fix)}
    if "id" in header:
        try:  # a prefix shorter than the limit holds no field over it
            fields = next(csv.reader([first[:limit - 1]]), [])
        except csv.Error:
            fields = []
        column = header.index("id")
        if column < len(fields) - 1:  # the last field of the prefix may be cut short
            rec["id"] = fields[column]
    return rec


def record_id(rec: dict) -> str | None:
    """A record's id as the output names it: stripped, so that "1" and " 1" are one id; None when absent or blank."""
    rid = rec.get("id")
    return (None if rid is None else str(rid).strip()) or None


def to_row(where: str, rec: dict, base: Path) -> Row:
    """A record as a :class:`Row` (paths resolved against ``base``); RowError names what it lacks or what is wrong
    with it (too many fields)."""
    problem = rec.get(_PROBLEM)
    if problem is not None:
        raise RowError(where, *problem)
    rid = record_id(rec)
    image = rec.get("image") or rec.get("image_path")
    text, text_path = rec.get("text"), rec.get("text_path")
    if rid is None:
        raise RowError(where, "no 'id'; every row needs a unique id")
    if not image:
        raise RowError(where, "no 'image' (or 'image_path') column value")
    if text_path and not text:  # a CSV writes an absent text as ""
        text = None
    elif text is None:
        raise RowError(where, "no 'text' (or 'text_path') column value")
    label, split = rec.get("label"), rec.get("split")
    return Row(rid, None if text is None else str(text),
               base / str(text_path) if text is None else None, base / str(image), where,
               str(label).strip() if label not in (None, "") else None,
               str(split).strip().lower() if split not in (None, "") else None)


def read_manifest(path: str | Path) -> Iterator[Row]:
    """The manifest's rows in order (lazily). A row that cannot be used but has an id comes as an error row
    (:attr:`Row.error`), to be answered with its error; ManifestError names the first row without an id (nothing
    could answer it) or line that cannot be read."""
    path = Path(path)
    try:
        check_regular(path)  # a FIFO would block the read; a folder is no table
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {path}") from None
    except FileRefusedError as exc:
        raise ManifestError(f"{exc}; give a CSV, JSONL or Parquet file") from None
    for where, rec in read_records(path):
        try:
            row = to_row(where, rec, path.parent)
        except RowError as exc:
            rid = record_id(rec)
            if rid is None:
                raise
            row = Row(rid, None, None, path.parent, where, error=exc.detail)
        yield row


def count_rows(path: str | Path) -> int | None:
    """Rows of a manifest, counted cheaply (None for formats where that is not cheap, and for anything but a regular
    file: :func:`read_manifest` names the problem)."""
    path = Path(path)
    if not path.is_file():  # a FIFO would block here, before read_manifest could refuse it
        return None
    if path.suffix.lower() == ".jsonl":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    if path.suffix.lower() == ".csv":
        return sum(1 for _ in _csv_records(path))
    return None
