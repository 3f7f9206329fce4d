"""Reader for the lab format: ``train.txt`` (guid,tag), ``test_without_label.txt`` (guid,null), ``data/{guid}.*``.

Every problem becomes a :class:`~mmsent.data.records.DataIssue` (``file:line: reason -> fix``). ``on_error="raise"``
collects them all into one :class:`DataValidationError`; ``on_error="skip"`` drops the offending rows, logging and
counting each in the report.

Behaviours:
    * Label files may use CRLF, a UTF-8 BOM, spaces around fields and blank lines; tags are case-insensitive.
    * A tag is any class name (the run's label set is read from the training tags); sentiment tags keep the order
      positive, neutral, negative (``LabDataset.label_order``).
    * The first line must be the header ``guid,tag``. Without it, under "skip" the line is read as data and
      ``report.warnings["missing_header"]`` is counted.
    * Test rows take ``null`` or an empty tag (label None); a real label there is kept, to evaluate held-out data.
    * A repeated guid in a file: the later rows are the issue. A guid in both files: the training row is, since the
      test file defines what must be predicted and training on it would leak.
    * Empty texts (tweets that were only a link) are kept and counted in ``report.counts["empty_text"]``; a text
      over :data:`~mmsent.data.text.MAX_TEXT_CHARS` is an issue (a larger file is not read).
    * Only regular files are read: a FIFO, device or folder in place of a text or an image is an issue, never opened.
    * A missing test file gives ``test=[]`` and ``report.warnings["missing_test_file"]``; a missing training file is
      a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mmsent.data.files import FileRefusedError, check_regular
from mmsent.data.images import ImageLoadError, ImageTooLargeError, load_image
from mmsent.data.records import DataIssue, Example, LabDataset, LoadReport
from mmsent.data.text import TextDecodeError, TextError, check_length, decode_text, read_text_file
from mmsent.labels import LABELS, LabelError, check_label_name, sentiment_order

log = logging.getLogger("mmsent.data")

ON_ERROR_CHOICES = ("raise", "skip")
MAX_LISTED_ISSUES = 50
HEADER = ("guid", "tag")
NULL_TAGS = frozenset({"null", ""})
# A guid names files under data/, so it must be a plain file name: no separators, no leading dot.
GUID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_VALID_LABELS = ", ".join(LABELS)
_OR_REMOVE = "or remove the row"


class DataValidationError(ValueError):
    """A dataset has problems and ``on_error`` is ``"raise"``; ``issues`` holds them all, the message the first 50."""

    def __init__(self, issues: list[DataIssue], root: str | Path) -> None:
        self.issues = list(issues)
        self.root = Path(root)
        lines = [f"{len(self.issues)} problem(s) in the dataset at {self.root}:"]
        lines += [f"  {issue}" for issue in self.issues[:MAX_LISTED_ISSUES]]
        if len(self.issues) > MAX_LISTED_ISSUES:
            lines.append(f"  ... and {len(self.issues) - MAX_LISTED_ISSUES} more (all in DataValidationError.issues)")
        lines.append("Fix the rows above, or set data.on_error=skip to drop the offending rows "
                     "(each is logged and counted).")
        super().__init__("\n".join(lines))


@dataclass
class DataRow:
    """One data line of a label file, its issues so far, and (once checked) its text."""

    guid: str
    file: str
    line: int
    split: Literal["train", "test"]
    label: str | None = None
    issues: list[DataIssue] = field(default_factory=list)
    check_files: bool = True  # False for rows that already have an issue that makes their files moot
    text: str = ""
    encoding: str = ""
    # a table names its files (and may hold the text itself); None: the lab layout data/{guid}.jpg|txt
    image_path: Path | None = None
    text_path: Path | None = None
    inline_text: str | None = None
    where: str | None = None  # the location to report, where it is not file:line (a Parquet row)

    @property
    def source(self) -> str:
        return self.where or f"{self.file}:{self.line}"

    def paths(self, data_dir: Path) -> tuple[Path, Path]:
        """``(image, text)`` paths of the row."""
        return (self.image_path or data_dir / f"{self.guid}.jpg",
                self.text_path or data_dir / f"{self.guid}.txt")

    def example(self, data_dir: Path) -> Example:
        image_path, text_path = self.paths(data_dir)
        return Example(self.guid, self.label, self.text, self.encoding, image_path, text_path, self.source)

    def add(self, kind: str, reason: str, fix: str, location: str | None = None) -> None:
        self.issues.append(DataIssue(location or self.source, reason, fix, guid=self.guid or None, kind=kind))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_label_file(path: Path, root: Path, split: Literal["train", "test"]) -> tuple[list[DataRow], list[DataIssue]]:
    """Parses a label file into rows, with per-row issues; returns (rows, file-level issues)."""
    name = _rel(path, root)
    try:
        text, _ = decode_text(path.read_bytes(), name)
    except TextDecodeError as exc:
        raise DataValidationError([DataIssue(name, exc.reason, "save it as a utf-8 CSV with lines guid,tag")], root)
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    file_issues: list[DataIssue] = []
    if lines and tuple(part.strip().lower() for part in lines[0][1].split(",")) == HEADER:
        lines = lines[1:]
    elif lines:  # under either on_error the line is then read as data, so that its own issues show up too
        reason = f"no header line: the first line is {lines[0][1]!r}, expected 'guid,tag'"
        fix = "add the header line guid,tag at the top of the file"
        file_issues.append(DataIssue(f"{name}:{lines[0][0]}", reason, fix, kind="missing_header"))
    rows: list[DataRow] = []
    seen: dict[str, DataRow] = {}
    for number, line in lines:
        fields = [part.strip() for part in line.split(",")]
        row = DataRow(guid=fields[0], file=name, line=number, split=split)
        rows.append(row)
        if len(fields) != 2:
            row.add("malformed_row", f"expected 2 columns (guid,tag), found {len(fields)}: {line!r}",
                    "write the row as guid,tag")
            row.check_files = False
            continue
        guid, tag = fields[0], fields[1].lower()
        if not GUID_PATTERN.fullmatch(guid):
            reason = f"guid {guid!r} is not a plain file name" if guid else "empty guid"
            row.add("malformed_row", reason, "write the row as guid,tag with the guid naming data/{guid}.jpg")
            row.check_files = False
            continue
        if tag in NULL_TAGS:
            if split == "train":
                row.add("unknown_label", "training row has no label", f"give its class (e.g. {_VALID_LABELS})")
        else:
            _set_label(row, tag)
        first = seen.setdefault(guid, row)
        if first is not row:
            differs = f" with a different label ({first.label} vs {row.label})" if first.label != row.label else ""
            row.add("duplicate_guid", f"duplicate guid {guid}{differs}; first at {first.source}",
                    "remove the repeated row")
            row.check_files = False
    return rows, file_issues


def _set_label(row: DataRow, tag: str) -> None:
    """Gives ``row`` the class ``tag`` (any name a label can have: the label set is the data's), or an issue."""
    try:
        row.label = check_label_name(tag, row.source)
    except LabelError as exc:
        row.add("unknown_label", str(exc).removeprefix(f"{row.source}: "), "write a plain class name, or null for an "
                "unlabelled row")


def _check_files(row: DataRow, data_dir: Path, root: Path, check_images: bool, max_pixels: int | None) -> None:
    """Reads and decodes the text of a row into it, (optionally) fully decodes its image, and adds any issues."""
    image_path, text_path = row.paths(data_dir)
    text_name, image_name = _rel(text_path, root), _rel(image_path, root)
    inside = root.resolve()
    for path, name in ((text_path, text_name), (image_path, image_name)):
        # a table names its files on purpose; the lab layout's files must stay inside the dataset folder
        if row.image_path is None and path.is_symlink() and not path.resolve().is_relative_to(inside):
            row.add("outside_link", f"{name} is a link to {path.resolve()}, outside the dataset folder",
                    f"copy the file into data/ {_OR_REMOVE}", name)
    if row.issues:
        return
    _read_text(row, text_path, text_name)
    _check_image(row, image_path, image_name, check_images, max_pixels)


def _read_text(row: DataRow, text_path: Path, text_name: str) -> None:
    """Reads the row's text (inline, or its file) into it, or adds the issue; an empty text is kept (counted)."""
    try:
        if row.inline_text is not None:
            row.text, row.encoding = check_length(row.inline_text, row.source), "utf-8"
        else:
            row.text, row.encoding = read_text_file(text_path, text_name)
    except FileNotFoundError:
        row.add("missing_text", f"text file {text_name} is missing", f"add it (may be empty) {_OR_REMOVE}")
    except OSError as exc:
        row.add("bad_text", f"cannot read: {exc.strerror or exc}", f"fix its permissions {_OR_REMOVE}", text_name)
    except TextError as exc:  # undecodable, over the length limit, or not a regular file (a FIFO would block)
        row.add("bad_text", exc.reason, f"{exc.fix} {_OR_REMOVE}", exc.location)


def _check_image(row: DataRow, image_path: Path, image_name: str, check_images: bool, max_pixels: int | None) -> None:
    """Adds the issue of a missing image, or one that is not a regular file, or (``check_images``) one that does not
    decode."""
    try:
        check_regular(image_path)  # a FIFO or device would block the decoding, or later the training, forever
    except FileNotFoundError:
        row.add("missing_image", f"image {image_name} is missing", f"add it {_OR_REMOVE}")
        return
    except FileRefusedError as exc:  # a FIFO, device or folder
        row.add("bad_image", exc.reason, f"replace it with a readable JPEG/PNG {_OR_REMOVE}", image_name)
        return
    except OSError as exc:  # no permission to look
        row.add("bad_image", f"cannot read: {exc.strerror or exc}", f"fix its permissions {_OR_REMOVE}", image_name)
        return
    if check_images:
        try:
            load_image(image_path, max_pixels=max_pixels, min_side=1)  # what check_image does, keeping the type
        except ImageTooLargeError as exc:
            fix = f"raise data.max_image_pixels if the image is genuine, {_OR_REMOVE}"
            row.add("image_too_large", exc.reason, fix, image_name)
        except ImageLoadError as exc:
            row.add("bad_image", exc.reason, f"replace it with a readable JPEG/PNG {_OR_REMOVE}", image_name)


@dataclass(frozen=True)
class LabelRow:
    """A labelled row read by another reader (e.g. an MVSA release): its guid, label and where it was read."""

    guid: str
    label: str
    file: str
    line: int


def load_lab_dataset(
    root: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    max_image_pixels: int | None = None,
    check_images: bool = True,
    train_file: str = "train.txt",
    test_file: str | None = "test_without_label.txt",
    num_workers: int | None = None,
    labelled: list[LabelRow] | None = None,
) -> LabDataset:
    """Reads a dataset in lab format, validating every row and its files.

    Args:
        root: folder holding the label files and ``data/``.
        on_error: ``"raise"``: one :class:`DataValidationError` with every problem; ``"skip"``: drop the offending
            rows, logging each at WARNING and counting them in ``report.skipped``.
        max_image_pixels: decompression-bomb limit for the image check (None: PIL's default).
        check_images: fully decode every image (at reduced JPEG scale) to catch truncated or broken files.
        train_file: labelled rows, relative to ``root``.
        test_file: unlabelled rows, relative to ``root``; may be absent (None: none expected).
        num_workers: threads for the file checks (PIL decodes without the GIL); None: up to 4, one per core.
        labelled: the labelled rows, read elsewhere, instead of ``train_file`` (every file check still applies).

    Raises:
        FileNotFoundError: if ``root``, the training file or ``data/`` does not exist.
        DataValidationError: under ``on_error="raise"``, if any issue was found.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    train_path, data_dir = root / train_file, root / "data"
    test_path = root / test_file if test_file else None
    if labelled is None and not train_path.is_file():
        raise FileNotFoundError(f"training label file not found: {train_path} (a CSV with header guid,tag)")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir} (it should hold {{guid}}.jpg and {{guid}}.txt)")

    report = LoadReport()
    if labelled is None:
        train_rows, header_issues = _read_label_file(train_path, root, "train")
    else:
        train_rows, header_issues = [DataRow(r.guid, r.file, r.line, "train", r.label) for r in labelled], []
    test_rows: list[DataRow] = []
    if test_path is None:
        pass
    elif test_path.is_file():
        test_rows, more = _read_label_file(test_path, root, "test")
        header_issues += more
        if not test_rows:
            log.warning("test file %s holds no rows: nothing will be predicted", test_path)
            report.warnings["empty_test_file"] = 1
    else:
        log.warning("no test file %s: the dataset has no test rows", test_path)
        report.warnings["missing_test_file"] = 1

    return build_dataset(root, data_dir, train_rows, test_rows, header_issues, report, on_error=on_error,
                         max_image_pixels=max_image_pixels, check_images=check_images, num_workers=num_workers)


def build_dataset(root: Path, data_dir: Path, train_rows: list[DataRow], test_rows: list[DataRow],
                  header_issues: list[DataIssue], report: LoadReport, *, on_error: Literal["raise", "skip"],
                  max_image_pixels: int | None, check_images: bool, num_workers: int | None) -> LabDataset:
    """Checks every row's files, then raises or skips per ``on_error`` and returns the dataset (see
    :func:`load_lab_dataset`); shared by the readers of other layouts (tables)."""
    test_first = {row.guid: row for row in test_rows if row.check_files}
    for row in train_rows:
        other = test_first.get(row.guid) if row.check_files else None
        if other is not None:
            row.add("guid_in_both_files", f"guid {row.guid} is also in {other.source}",
                    "remove it from one file: a row cannot be both training data and a prediction target")
            row.check_files = False  # its files are checked through the test row

    rows = train_rows + test_rows
    workers = max(1, num_workers or min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each row is checked (and written to) by one thread
        list(pool.map(lambda row: _check_files(row, data_dir, root, check_images, max_image_pixels),
                      [row for row in rows if row.check_files]))

    report.issues = header_issues + [issue for row in rows for issue in row.issues]
    if on_error == "raise" and report.issues:
        raise DataValidationError(report.issues, root)

    for issue in header_issues:
        log.warning("%s (reading it as data)", issue)
    report.warnings.update(Counter(issue.kind for issue in header_issues))
    for row in rows:
        for issue in row.issues:
            log.warning("skipping row %s: %s", row.source, issue)
    kept = [row for row in rows if not row.issues]
    train = [row.example(data_dir) for row in kept if row.split == "train"]
    test = [row.example(data_dir) for row in kept if row.split == "test"]
    report.skipped = dict(Counter(row.issues[0].kind for row in rows if row.issues))
    report.encodings = dict(Counter(row.encoding for row in kept))
    report.counts = {"train": len(train), "test": len(test), "empty_text": sum(not row.text.strip() for row in kept)}

    summary = f"dataset {root}: {len(train)} train + {len(test)} test rows"
    if report.skipped:
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(report.skipped.items()))
        log.warning("%s; skipped %d row(s): %s", summary, sum(report.skipped.values()), detail)
    else:
        log.info("%s", summary)
    answered = {ex.guid for ex in test}
    skipped = {row.guid: row.issues[0] for row in test_rows if row.issues and GUID_PATTERN.fullmatch(row.guid)
               and row.guid not in answered}
    order = list(dict.fromkeys(row.guid for row in test_rows if row.guid in answered or row.guid in skipped))
    return LabDataset(root=root, train=train, test=test, report=report, test_skipped=skipped, test_order=order,
                      label_order=sentiment_order({ex.label for ex in train if ex.label}))
