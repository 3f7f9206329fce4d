"""Reader for the lab format: ``train.txt`` (guid,tag), ``test_without_label.txt`` (guid,null), ``data/{guid}.*``.

Every problem becomes a :class:`~mmsent.data.records.DataIssue` naming the row or file, the reason and a fix.
With ``on_error="raise"`` all of them are collected before one :class:`DataValidationError` is raised; with
``on_error="skip"`` the offending rows are dropped, each logged and counted in the report.

Documented behaviours:
    * Label files may use CRLF, start with a UTF-8 BOM, pad fields with spaces and contain blank lines; tags are
      case-insensitive and normalised to lower case.
    * The first line must be the header ``guid,tag``. Without it: under "raise" that is an issue (fix: add the
      header); under "skip" the first line is read as data and ``report.warnings["missing_header"]`` is counted.
    * Test rows take ``null`` or an empty tag (label None); a real label in the test file is kept, so a labelled
      held-out file can be evaluated.
    * A duplicate guid within a file: the later rows are the issue (dropped under "skip").
    * A guid in both files: the training row is the issue (dropped under "skip"), because the test file defines
      what must be predicted and training on it would leak.
    * Empty texts (tweets that were only a link) are kept and counted in ``report.counts["empty_text"]``.
    * A missing test file gives ``test=[]``, a logged warning and ``report.warnings["missing_test_file"]``; a
      missing training file is a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mmsent.data.images import ImageLoadError, ImageTooLargeError, load_image
from mmsent.data.records import DataIssue, Example, LabDataset, LoadReport
from mmsent.data.text import TextDecodeError, decode_text
from mmsent.labels import LABELS

log = logging.getLogger("mmsent.data")

ON_ERROR_CHOICES = ("raise", "skip")
MAX_LISTED_ISSUES = 50
HEADER = ("guid", "tag")
NULL_TAGS = frozenset({"null", ""})
# A guid names files under data/, so it must be a plain file name: no separators, no leading dot.
_GUID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_VALID_LABELS = ", ".join(LABELS)


class DataValidationError(ValueError):
    """A dataset has problems and ``on_error`` is ``"raise"``.

    Attributes:
        issues: every problem found (the message lists at most :data:`MAX_LISTED_ISSUES`).
    """

    def __init__(self, issues: list[DataIssue], root: str | Path) -> None:
        self.issues = list(issues)
        self.root = Path(root)
        lines = [f"{len(self.issues)} problem(s) in the lab dataset at {self.root}:"]
        lines += [f"  {issue}" for issue in self.issues[:MAX_LISTED_ISSUES]]
        if len(self.issues) > MAX_LISTED_ISSUES:
            lines.append(f"  ... and {len(self.issues) - MAX_LISTED_ISSUES} more (all in DataValidationError.issues)")
        lines.append(
            "Fix the rows above, or set data.on_error=skip to drop the offending rows (each is logged and counted)."
        )
        super().__init__("\n".join(lines))


@dataclass
class _Row:
    """One data line of a label file, with the issues found for it so far."""

    guid: str
    label: str | None
    file: str
    line: int
    split: Literal["train", "test"]
    issues: list[DataIssue] = field(default_factory=list)
    check_files: bool = True  # False for rows whose files are checked through another row (same guid)

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    def add(self, kind: str, reason: str, fix: str, location: str | None = None) -> None:
        self.issues.append(DataIssue(location or self.source, reason, fix, guid=self.guid or None, kind=kind))


@dataclass
class _Files:
    """What the data files of one guid hold."""

    text: str = ""
    encoding: str = ""
    issues: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, location, reason, fix


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_label_file(path: Path, root: Path, split: Literal["train", "test"]) -> tuple[list[_Row], list[DataIssue]]:
    """Parses a label file into rows, with per-row issues; returns (rows, file-level issues)."""
    name = _rel(path, root)
    try:
        text, _ = decode_text(path.read_bytes(), name)
    except TextDecodeError as exc:
        raise DataValidationError([DataIssue(name, exc.reason, "save it as a utf-8 CSV with lines guid,tag")], root)
    rows: list[_Row] = []
    file_issues: list[DataIssue] = []
    seen: dict[str, _Row] = {}
    header_checked = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [part.strip() for part in line.split(",")]
        if not header_checked:
            header_checked = True
            if tuple(part.lower() for part in fields) == HEADER:
                continue
            file_issues.append(
                DataIssue(
                    f"{name}:{number}",
                    f"no header line: the first line is {line.strip()!r}, expected 'guid,tag'",
                    "add the header line guid,tag at the top of the file",
                    kind="missing_header",
                )
            )
            # Under "skip" the line is read as data below; under "raise" too, so that its own issues show up.
        row = _Row(guid=fields[0] if fields else "", label=None, file=name, line=number, split=split)
        rows.append(row)
        if len(fields) != 2:
            row.add(
                "malformed_row",
                f"expected 2 columns (guid,tag), found {len(fields)}: {line.strip()!r}",
                "write the row as guid,tag",
            )
            row.check_files = False
            continue
        guid, tag = fields[0], fields[1].lower()
        if not guid or not _GUID.fullmatch(guid):
            reason = "empty guid" if not guid else f"guid {guid!r} is not a plain file name"
            row.add("malformed_row", reason, "write the row as guid,tag with the guid naming data/{guid}.jpg")
            row.check_files = False
            continue
        if split == "train":
            if tag in LABELS:
                row.label = tag
            else:
                what = "no label" if tag in NULL_TAGS else f"unknown label {fields[1]!r}"
                row.add("unknown_label", f"training row has {what}", f"use one of: {_VALID_LABELS}")
        elif tag in LABELS:
            row.label = tag
        elif tag not in NULL_TAGS:
            row.add(
                "unknown_label",
                f"unknown label {fields[1]!r}",
                f"use null (or leave it empty) for unlabelled rows, or one of: {_VALID_LABELS}",
            )
        first = seen.get(guid)
        if first is None:
            seen[guid] = row
            continue
        differs = f" with a different label ({first.label} vs {row.label})" if first.label != row.label else ""
        row.add("duplicate_guid", f"duplicate guid {guid}{differs}; first at {first.source}", "remove the repeated row")
        row.check_files = False
    return rows, file_issues


def _check_files(data_dir: Path, root: Path, guid: str, check_images: bool, max_pixels: int | None) -> _Files:
    """Reads and decodes the text of one guid and (optionally) fully decodes its image."""
    out = _Files()
    text_path, image_path = data_dir / f"{guid}.txt", data_dir / f"{guid}.jpg"
    remove = "or remove the row"
    try:
        raw = text_path.read_bytes()
    except FileNotFoundError:
        out.issues.append(
            ("missing_text", "", f"text file {_rel(text_path, root)} is missing", f"add it (may be empty) {remove}")
        )
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        out.issues.append(("bad_text", _rel(text_path, root), reason, f"fix its permissions {remove}"))
    else:
        try:
            out.text, out.encoding = decode_text(raw, _rel(text_path, root))
        except TextDecodeError as exc:
            out.issues.append(("bad_text", exc.location, exc.reason, f"save it as utf-8 text {remove}"))
    if not image_path.is_file():
        out.issues.append(("missing_image", "", f"image {_rel(image_path, root)} is missing", f"add it {remove}"))
    elif check_images:
        try:
            load_image(image_path, max_pixels=max_pixels, min_side=1)  # what check_image does, keeping the type
        except ImageTooLargeError as exc:
            fix = f"raise data.max_image_pixels if the image is genuine, {remove}"
            out.issues.append(("image_too_large", _rel(image_path, root), exc.reason, fix))
        except ImageLoadError as exc:
            fix = f"replace it with a readable JPEG/PNG {remove}"
            out.issues.append(("bad_image", _rel(image_path, root), exc.reason, fix))
    return out


def _count(counter: dict[str, int], key: str, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def load_lab_dataset(
    root: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    max_image_pixels: int | None = None,
    check_images: bool = True,
    train_file: str = "train.txt",
    test_file: str = "test_without_label.txt",
    num_workers: int | None = None,
) -> LabDataset:
    """Reads a dataset in lab format, validating every row and its files.

    Args:
        root: folder holding the label files and ``data/``.
        on_error: ``"raise"`` collects every problem and raises one :class:`DataValidationError`; ``"skip"`` drops
            the offending rows, logging each at WARNING and counting them in ``report.skipped``.
        max_image_pixels: decompression-bomb limit for the image check (None: PIL's default).
        check_images: fully decode every image (at reduced JPEG scale) to catch truncated or broken files.
        train_file: labelled rows, relative to ``root``.
        test_file: unlabelled rows, relative to ``root``; may be absent.
        num_workers: threads for the file checks (PIL decodes without the GIL); None: up to 4, one per core.

    Returns:
        The examples in file order, with a :class:`~mmsent.data.records.LoadReport`.

    Raises:
        FileNotFoundError: if ``root``, the training file or ``data/`` does not exist.
        DataValidationError: under ``on_error="raise"``, if any issue was found.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    train_path, test_path, data_dir = root / train_file, root / test_file, root / "data"
    if not train_path.is_file():
        raise FileNotFoundError(f"training label file not found: {train_path} (a CSV with header guid,tag)")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir} (it should hold {{guid}}.jpg and {{guid}}.txt)")

    report = LoadReport()
    train_rows, header_issues = _read_label_file(train_path, root, "train")
    test_rows: list[_Row] = []
    if test_path.is_file():
        test_rows, more = _read_label_file(test_path, root, "test")
        header_issues += more
    else:
        log.warning("no test file %s: the dataset has no test rows", test_path)
        _count(report.warnings, "missing_test_file")

    test_first = {row.guid: row for row in test_rows if row.check_files}
    for row in train_rows:
        other = test_first.get(row.guid) if row.check_files else None
        if other is not None:
            row.add(
                "guid_in_both_files",
                f"guid {row.guid} is also in {other.source}",
                "remove it from one file: a row cannot be both training data and a prediction target",
            )
            row.check_files = False  # its files are checked through the test row

    rows = train_rows + test_rows
    to_check = [row for row in rows if row.check_files]
    workers = num_workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(
            pool.map(lambda r: _check_files(data_dir, root, r.guid, check_images, max_image_pixels), to_check)
        )
    files = {row.guid: result for row, result in zip(to_check, results)}
    for row in to_check:
        for kind, location, reason, fix in files[row.guid].issues:
            row.add(kind, reason, fix, location=location or None)

    issues = header_issues + [issue for row in rows for issue in row.issues]
    report.issues = issues
    if on_error == "raise" and issues:
        raise DataValidationError(issues, root)

    for issue in header_issues:
        log.warning("%s (reading it as data)", issue)
        _count(report.warnings, issue.kind)
    train: list[Example] = []
    test: list[Example] = []
    for row in rows:
        if row.issues:
            for issue in row.issues:
                log.warning("skipping row %s: %s", row.source, issue)
            _count(report.skipped, row.issues[0].kind)
            continue
        found = files[row.guid]
        example = Example(
            guid=row.guid,
            label=row.label,
            text=found.text,
            text_encoding=found.encoding,
            image_path=data_dir / f"{row.guid}.jpg",
            text_path=data_dir / f"{row.guid}.txt",
            source=row.source,
        )
        (train if row.split == "train" else test).append(example)
        _count(report.encodings, found.encoding)
        if not found.text.strip():
            _count(report.counts, "empty_text")

    report.counts.update(train=len(train), test=len(test))
    report.counts.setdefault("empty_text", 0)
    skipped = sum(report.skipped.values())
    summary = f"lab dataset {root}: {len(train)} train + {len(test)} test rows"
    if skipped:
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(report.skipped.items()))
        log.warning("%s; skipped %d row(s): %s", summary, skipped, detail)
    else:
        log.info("%s", summary)
    return LabDataset(root=root, train=train, test=test, report=report)
