"""Datasets as one table (``data.format: table``): a CSV, JSONL or Parquet file (``data.root``) with the columns
``id``, ``text`` or ``text_path``, ``image`` or ``image_path``, and optionally ``label`` and ``split``.

Rows with a label are training rows and rows without one are test rows (predicted into ``predictions.txt``), unless
``split`` says otherwise: ``train``, ``val`` (a fixed validation split: the run uses it instead of drawing one) or
``test`` (a label there is kept and only ever scored, never trained on). Labels are any class names (lower-cased). Paths are relative to the table's folder. Every row and file is checked as for the lab format, each issue
named by ``table:line``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mmsent.data.lab_format import GUID_PATTERN, DataRow, DataValidationError, build_dataset
from mmsent.data.manifest import ManifestError, RowError, read_records, record_id, to_row
from mmsent.data.records import DataIssue, LabDataset, LoadReport
from mmsent.labels import LabelError, check_label_name

SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def _check_label(row: DataRow, label: str) -> None:
    try:
        check_label_name(label, row.source)
    except LabelError as exc:
        row.add("unknown_label", str(exc).removeprefix(f"{row.source}: "), "write a plain class name")


def load_table_dataset(path: str | Path, *, on_error: Literal["raise", "skip"] = "raise",
                       max_image_pixels: int | None = None, check_images: bool = True) -> LabDataset:
    """Reads a table of posts; ``dataset.validation`` holds the ids of ``split=val`` rows (empty without them).

    Raises:
        FileNotFoundError: if the table does not exist.
        DataValidationError: under ``on_error="raise"``, naming every bad row (``table.csv:7: reason -> fix``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path} (data.format=table reads one CSV, JSONL or Parquet file)")
    try:
        records = list(read_records(path))
    except ManifestError as exc:  # an unreadable line or format: the table as a whole cannot be read
        location, _, reason = str(exc).partition(": ")
        raise DataValidationError([DataIssue(location, reason, "fix the line or the file")], path.parent) from exc
    rows: list[DataRow] = []
    seen: dict[str, DataRow] = {}
    validation: list[str] = []
    for where, fields in records:
        try:
            rec = to_row(where, fields, path.parent)
        except RowError as exc:  # no id, image or text, too many fields: skippable like any other bad row
            row = DataRow(record_id(fields) or "", path.name, 0, "train", where=where)
            row.add("malformed_row", exc.reason, exc.fix or "fill in the row's id, image and text (or text_path)")
            row.check_files = False
            rows.append(row)
            continue
        split = SPLITS.get(rec.split or ("train" if rec.label else "test"))
        label = rec.label.lower() if rec.label else None
        row = DataRow(rec.id, path.name, 0, "test" if split == "test" else "train",
                      label, image_path=rec.image, text_path=rec.text_path,
                      inline_text=rec.text, where=rec.where)
        rows.append(row)
        if not GUID_PATTERN.fullmatch(rec.id):
            row.add("malformed_row", f"id {rec.id!r} is not a plain name", "use letters, digits, '_', '-' and '.'")
        elif split is None:
            row.add("unknown_split", f"unknown split {rec.split!r}", "use train, val or test (or leave it empty)")
        elif split != "test" and not label:
            row.add("unknown_label", f"{split} row has no label", "give its class, or mark it split=test")
        elif label:
            _check_label(row, label)
        first = seen.setdefault(rec.id, row)
        if first is not row:
            row.add("duplicate_guid", f"duplicate id {rec.id}; first at {first.source}", "remove the repeated row")
        if row.issues:
            row.check_files = False
        elif split == "val":
            validation.append(rec.id)
    train = [row for row in rows if row.split == "train"]
    test = [row for row in rows if row.split == "test"]
    dataset = build_dataset(path.parent, path.parent, train, test, [], LoadReport(), on_error=on_error,
                            max_image_pixels=max_image_pixels, check_images=check_images, num_workers=None)
    kept = {ex.guid for ex in dataset.train}
    dataset.validation = [guid for guid in validation if guid in kept]
    if dataset.validation:
        dataset.report.counts["val"] = len(dataset.validation)
    return dataset
