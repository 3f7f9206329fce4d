"""Datasets with a fixed train/dev/test split, one file per split (``data.format: splits``).

Layout of ``root``::

    train.json | train.jsonl | train.csv        required
    dev.*  (or val.*, valid.*, validation.*)     optional: the fixed validation split
    test.json | test.jsonl | test.csv           required: the labelled test split
    images/  (or data/, or dataset_image/)       the image folder: the first of these that exists

Each split file holds one row per post with ``id``, ``text`` and ``label``: a ``.json`` file is one JSON list of
objects, a ``.jsonl`` file one object per line, a ``.csv`` file has a header naming the columns. A row's image is
``{image folder}/{id}.jpg`` unless an ``image`` column names the file, relative to the image folder. A ``text_path``
column (relative to ``root``) may replace ``text``. Labels are class names taken as written (``Happy`` and ``happy``
are two classes); without a fixed label set the run sorts them.

How the splits are used: ``train`` and ``dev`` rows are the labelled data (``dataset.train``) and the dev ids are
``dataset.validation``, so the run validates on dev instead of drawing a validation split; without a dev file the
run draws one from train (``data.val_fraction``). Test rows keep their labels (``dataset.test``): they are predicted
and scored once, at the end of the run.

Every problem is a :class:`~mmsent.data.records.DataIssue` naming the file and row: a row without id, text or label;
an id that is not a plain file name or repeats within or across splits (both places are named; across splits the row
of the split used later -- train, then dev -- is the one dropped, so the test split stays whole); a label that is not
a valid class name, is outside the fixed label set, or (in dev or test) has no training row. Missing or ambiguous
split files and a class of the fixed label set with no training row cannot be skipped: they always raise. Row
problems raise together under ``on_error="raise"``; under ``"skip"`` each offending row is dropped and logged.

:func:`assemble_splits` does the checks and the build for every reader of split releases (HFM, TumEmo).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from mmsent.data.files import read_regular_file
from mmsent.data.lab_format import GUID_PATTERN, DataRow, DataValidationError, build_dataset
from mmsent.data.text import TextDecodeError, decode_text
from mmsent.data.manifest import ManifestError, read_records, to_row
from mmsent.data.records import DataIssue, LabDataset, LoadReport
from mmsent.labels import LabelError, LabelSet, check_label_name

log = logging.getLogger("mmsent.data")

SPLITS = ("train", "dev", "test")
# the file stems each split may use; dev's aliases are the names other releases and toolkits use
SPLIT_STEMS: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("dev", "val", "valid", "validation"),
                                           "test": ("test",)}
SPLIT_SUFFIXES = (".json", ".jsonl", ".csv")
IMAGE_DIRS = ("images", "data", "dataset_image")
# a post in two splits is dropped from the one used earlier, so the test split (what is scored) stays whole
_KEEP_ORDER = ("test", "dev", "train")
_OR_REMOVE = "or remove the row"

OnError = Literal["raise", "skip"]
Splits = dict[str, list[DataRow]]


def find_split_file(folder: Path, split: str, suffixes: Sequence[str] = SPLIT_SUFFIXES
                    ) -> tuple[Path | None, DataIssue | None]:
    """The file of ``split`` in ``folder`` (None if there is none), or an issue when several could be it."""
    found = [folder / f"{stem}{suffix}" for stem in SPLIT_STEMS[split] for suffix in suffixes
             if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        return None, DataIssue(str(folder), f"several files could be the {split} split: {names}",
                               "keep exactly one of them", kind="ambiguous_split_file")
    return (found[0] if found else None), None


def read_json_list(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(file:row n, object)`` per item of a JSON file holding one list of objects; ManifestError otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path.name}: not valid JSON ({exc}); write one JSON list of objects (a file with "
                            "one object per line is JSON Lines: name it .jsonl)") from exc
    if not isinstance(data, list):
        raise ManifestError(f"{path.name}: expected a JSON list of objects, found a {type(data).__name__}")
    records = []
    for n, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ManifestError(f"{path.name}:row {n}: not a JSON object; write each row as {{\"id\": ...}}")
        records.append((f"{path.name}:row {n}", item))
    return records


def read_split_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The ``(location, record)`` pairs of a .json, .jsonl or .csv split file (ManifestError if unreadable)."""
    if path.suffix.lower() == ".json":
        return read_json_list(path)
    return list(read_records(path))


def image_folder(root: Path, names: Sequence[str] = IMAGE_DIRS) -> Path | None:
    """The first of ``names`` that is a folder in ``root``."""
    return next((root / name for name in names if (root / name).is_dir()), None)


def record_row(where: str, fields: dict[str, Any], split: str, root: Path, images: Path) -> DataRow:
    """A split file's record as a row (its issues, if any, already added); the image defaults to ``{id}.jpg``."""
    rec = dict(fields)
    image = rec.get("image") or rec.get("image_path")
    guid = "" if rec.get("id") is None else str(rec["id"]).strip()
    rec["image"] = images / str(image) if image else images / f"{guid}.jpg"
    kind: Literal["train", "test"] = "test" if split == "test" else "train"
    try:
        parsed = to_row(where, rec, root)
    except ManifestError as exc:  # no id or no text, a CSV record cut at a comma: skippable like any bad row
        row = DataRow(guid, where.split(":")[0], 0, kind, where=where)
        # manifest's RowError carries reason and fix apart; a plain ManifestError only its message
        reason = getattr(exc, "reason", None) or str(exc).removeprefix(f"{where}: ")
        row.add("malformed_row", reason, getattr(exc, "fix", None) or "fill in the row's id, text and label")
        row.check_files = False
        return row
    return DataRow(parsed.id, where.split(":")[0], 0, kind, parsed.label, image_path=parsed.image,
                   text_path=parsed.text_path, inline_text=parsed.text, where=where)


def _check_ids(splits: Splits) -> None:
    """Adds an issue to each row whose id is not a plain name, or repeats one seen in its split or a later-used one."""
    seen: dict[str, tuple[str, DataRow]] = {}
    for split in _KEEP_ORDER:
        for row in splits.get(split, []):
            if not row.check_files:
                continue
            if not GUID_PATTERN.fullmatch(row.guid):
                row.add("malformed_row", f"id {row.guid!r} is not a plain file name",
                        f"use letters, digits, '_', '-' and '.' only {_OR_REMOVE}")
            elif row.guid in seen:
                first_split, first = seen[row.guid]
                if first_split == split:
                    row.add("duplicate_guid", f"id {row.guid} repeats the row at {first.source}",
                            "remove one of the two rows")
                else:
                    row.add("duplicate_guid", f"id {row.guid} is also in the {first_split} split at {first.source}",
                            f"a post belongs to one split: remove it from the {split} file or the {first_split} file")
            else:
                seen[row.guid] = (split, row)
            row.check_files = not row.issues


def _label_problem(row: DataRow, order: Sequence[str] | None) -> tuple[str, str] | None:
    """``(reason, fix)`` when a row's label cannot be used, else None."""
    if row.label is None:
        return "no label", "give every row a label (the test split is labelled too) " + _OR_REMOVE
    try:
        check_label_name(row.label, row.source)
    except LabelError as exc:
        return str(exc).removeprefix(f"{row.source}: "), "rename the class in every split file"
    if order is not None and row.label not in order:
        return f"label {row.label!r} is not in the label set {list(order)}", \
            f"use one of them, or add it to the label set, {_OR_REMOVE}"
    return None


def _check_labels(splits: Splits, files: dict[str, str], order: Sequence[str] | None) -> list[DataIssue]:
    """Adds row issues for unusable labels; returns the unskippable issue of a fixed class with no training row."""
    for rows in splits.values():
        for row in rows:
            problem = _label_problem(row, order) if row.check_files else None
            if problem:
                row.add("unknown_label", *problem)
                row.check_files = False
    trained = {row.label for row in splits.get("train", []) if row.check_files}
    for split in ("dev", "test"):
        for row in splits.get(split, []):
            if row.check_files and row.label not in trained:
                row.add("unseen_label", f"label {row.label!r} has no row in the training file {files['train']}",
                        f"fix the label, or add training rows of the class, {_OR_REMOVE}")
                row.check_files = False
    return _empty_classes(trained, order, files["train"])


def _empty_classes(trained: set[str | None], order: Sequence[str] | None, train_file: str) -> list[DataIssue]:
    missing = [name for name in order or () if name not in trained]
    if not missing:
        return []
    return [DataIssue(train_file, f"class(es) {missing} of the label set {list(order or ())} have no training row",
                      "add training rows of them, or drop them from the label set", kind="empty_class")]


def _drop_unseen(dataset: LabDataset, dev: set[str]) -> None:
    """Under skip: drops dev/test rows whose class lost every training row to a skipped row, logging each."""
    trained = {ex.label for ex in dataset.train if ex.guid not in dev}
    dropped: list[tuple[str, DataIssue]] = []
    for split, examples in (("dev", dataset.train), ("test", dataset.test)):
        for ex in examples:
            if (split == "test" or ex.guid in dev) and ex.label not in trained:
                issue = DataIssue(ex.source, f"label {ex.label!r} has no training row left after skipping",
                                  "fix the skipped training rows of the class", guid=ex.guid, kind="unseen_label")
                log.warning("skipping row %s: %s", ex.source, issue)
                dropped.append((split, issue))
    gone = {issue.guid for _, issue in dropped}
    dataset.train = [ex for ex in dataset.train if ex.guid not in gone]
    dataset.test = [ex for ex in dataset.test if ex.guid not in gone]
    for split, issue in dropped:
        dataset.report.issues.append(issue)
        dataset.report.skipped["unseen_label"] = dataset.report.skipped.get("unseen_label", 0) + 1
        if split == "test":
            dataset.test_skipped[str(issue.guid)] = issue
    dataset.report.counts.update(train=len(dataset.train), test=len(dataset.test))


def log_class_counts(dataset: LabDataset) -> None:
    """Logs the rows per class of each split (train without dev, dev, test) at INFO."""
    dev = set(dataset.validation)
    parts = {"train": [ex for ex in dataset.train if ex.guid not in dev],
             "dev": [ex for ex in dataset.train if ex.guid in dev], "test": dataset.test}
    for split, examples in parts.items():
        counts = dict(sorted(Counter(str(ex.label) for ex in examples).items()))
        log.info("dataset %s: %s split, %d rows per class %s", dataset.root, split, len(examples), counts)


def read_release_lines(path: Path, root: Path) -> tuple[str, list[str]]:
    """A release file's name relative to ``root`` and its lines (a regular file only, decoded as texts are); an
    unreadable file raises (nothing can be skipped), naming it."""
    name = path.relative_to(root).as_posix()
    try:
        content, _ = decode_text(read_regular_file(path), name)
    except TextDecodeError as exc:
        raise DataValidationError([DataIssue(name, exc.reason, "save it as utf-8 text", kind="unreadable_file")],
                                  root) from None
    except OSError as exc:
        raise DataValidationError([DataIssue(name, f"cannot read: {exc}", "give a readable regular file",
                                             kind="unreadable_file")], root) from None
    return name, content.splitlines()


def assemble_splits(root: Path, data_dir: Path, splits: Splits, files: dict[str, str], *, on_error: OnError,
                    max_image_pixels: int | None, check_images: bool, label_order: Sequence[str] | None = None,
                    fatal: Sequence[DataIssue] = (), issues: Sequence[DataIssue] = ()) -> LabDataset:
    """Checks ids and labels across the splits, then every row's files, and returns the dataset.

    Args:
        root: the dataset folder (paths in messages are relative to it).
        data_dir: where rows without their own paths find ``{id}.jpg`` / ``{id}.txt``.
        splits: the rows of ``train``, ``dev`` (may be absent) and ``test``, each in file order.
        files: the file each split was read from, for messages (``train`` at least).
        on_error: ``"raise"``: one :class:`DataValidationError` with every issue; ``"skip"``: drop offending rows.
        max_image_pixels: decompression-bomb limit for the image check.
        check_images: fully decode every image.
        label_order: the fixed class order (the layout's or the user's); None: the run sorts the labels.
        fatal: problems no skipping can fix (a missing file); they always raise, with the row issues under "raise".
        issues: skippable problems found outside the rows (a bad line of a separate label file).
    """
    _check_ids(splits)
    fatal = list(fatal) + _check_labels(splits, files, label_order)
    if fatal and on_error == "skip":
        raise DataValidationError(fatal, root)
    train_rows = splits.get("train", []) + splits.get("dev", [])
    try:
        dataset = build_dataset(root, data_dir, train_rows, splits.get("test", []), [], LoadReport(),
                                on_error=on_error, max_image_pixels=max_image_pixels, check_images=check_images,
                                num_workers=None)
    except DataValidationError as exc:
        raise DataValidationError(fatal + list(issues) + exc.issues, root) from None
    if fatal or (issues and on_error == "raise"):
        raise DataValidationError(fatal + list(issues), root)
    _record_outside_issues(dataset, issues)
    dev = {row.guid for row in splits.get("dev", []) if not row.issues}  # a dropped dev row's id may be kept elsewhere
    _drop_unseen(dataset, dev)
    empty = _empty_classes({ex.label for ex in dataset.train if ex.guid not in dev}, label_order, files["train"])
    if empty:  # every training row of a class was skipped
        raise DataValidationError(empty, root)
    dataset.validation = [ex.guid for ex in dataset.train if ex.guid in dev]
    if dataset.validation:
        dataset.report.counts["val"] = len(dataset.validation)
    if label_order is not None:  # else the sentiment order where the classes are sentiment ones (build_dataset)
        dataset.label_order = tuple(label_order)
    log_class_counts(dataset)
    return dataset


def _record_outside_issues(dataset: LabDataset, issues: Sequence[DataIssue]) -> None:
    """Under skip: logs and counts the skippable issues found outside the rows."""
    for issue in issues:
        log.warning("skipping %s", issue)
        dataset.report.skipped[issue.kind] = dataset.report.skipped.get(issue.kind, 0) + 1
    dataset.report.issues = list(issues) + dataset.report.issues


def _read_split(path: Path, split: str, root: Path, images: Path) -> tuple[list[DataRow], list[DataIssue]]:
    """The rows of one split file, or no rows and the issue that makes the whole file unreadable."""
    try:
        records = read_split_records(path)
    except ManifestError as exc:
        location, _, reason = str(exc).partition(": ")
        return [], [DataIssue(location, reason, "fix the line or the file", kind="unreadable_file")]
    except UnicodeDecodeError as exc:
        return [], [DataIssue(path.name, f"not utf-8 text ({exc.reason})", "save it as utf-8",
                              kind="unreadable_file")]
    rows = [record_row(where, rec, split, root, images) for where, rec in records]
    if not rows:
        log.warning("split file %s holds no rows", path)
    return rows, []


def load_split_files(root: str | Path, *, on_error: OnError = "raise", max_image_pixels: int | None = None,
                     check_images: bool = True, labels: Sequence[str] | LabelSet | None = None) -> LabDataset:
    """Reads a dataset split into train / dev / test files (see the module docstring for the layout).

    Args:
        root: the folder holding the split files and the image folder.
        on_error: ``"raise"`` or ``"skip"`` (see :func:`assemble_splits`).
        max_image_pixels: decompression-bomb limit for the image check (None: PIL's default).
        check_images: fully decode every image.
        labels: a fixed class order (``data.labels``); every class must have training rows and every row a
            label among them. None: the classes are the training labels, sorted by the run.

    Raises:
        FileNotFoundError: if ``root`` is not a folder.
        DataValidationError: for missing or unreadable split files, a fixed class with no training row, and
            (under ``on_error="raise"``) any bad row.
        LabelError: if ``labels`` is not a valid label set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root} (data.format=splits reads train/dev/test files)")
    order = tuple(LabelSet(tuple(labels))) if labels is not None else None
    images = image_folder(root) or root / IMAGE_DIRS[0]
    splits: Splits = {}
    files: dict[str, str] = {}
    fatal: list[DataIssue] = []
    for split in SPLITS:
        path, ambiguous = find_split_file(root, split)
        if ambiguous:
            fatal.append(ambiguous)
        elif path is None and split != "dev":
            names = ", ".join(f"{split}{s}" for s in SPLIT_SUFFIXES)
            fatal.append(DataIssue(str(root), f"no {split} split file", f"add one of: {names}",
                                   kind="missing_split_file"))
        elif path is None:
            log.info("no dev split file in %s: the run draws its validation rows from train", root)
        if path is not None:
            files[split] = path.name
            splits[split], unreadable = _read_split(path, split, root, images)
            fatal += unreadable
    if fatal:  # without every file the row checks (a dev label unseen in train...) would only mislead
        raise DataValidationError(fatal, root)
    return assemble_splits(root, images, splits, files, on_error=on_error, max_image_pixels=max_image_pixels,
                           check_images=check_images, label_order=order)
