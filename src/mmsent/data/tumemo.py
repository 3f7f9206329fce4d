"""The TumEmo release of Yang et al. (2020, "Image-Text Multimodal Emotion Classification via Multi-View Attentional
Network", MVAN): Tumblr posts labelled with one of seven emotions (``data.format: tumemo``).

Layout, as the release's README (YangXiaocui1215/MVAN) and public code that parses it describe it::

    all_data_id_and_label.txt   a header line, then one post per line: "<id> <Emotion>" (Angry, Bored, Calm, Fear,
                                Happy, Love, Sad)
    data/<id>.jpg, data/<id>.txt   the post's image and text (the release's all_data archive)

The classes are named in lower case and ordered ``angry, bored, calm, fear, happy, love, sad`` (the release's
alphabetical order, the index public code gives them). Texts are read from ``<id>.txt`` and decoded as in the lab
format.

The release has no train/dev/test split; published work draws one. Split files pin it down: ``train``, ``dev`` (or
``val`` / ``valid`` / ``validation``) and ``test`` with suffix ``.txt`` (one id per line, optionally followed by the
label), ``.json`` (a list of objects with ``id``), ``.jsonl`` or ``.csv`` (an ``id`` column), in the release folder
or in its ``splits/`` folder. Labels always come from the label file; a split row that names a label (as a class
name, any case) must agree with it, and numeric labels in split files (whose class order differs between toolkits)
are ignored. Without split files the reader draws a stratified 8:1:1 train/dev/test split (as public code does)
with ``split_seed``, from the label file alone, so the same release and seed always give the same split; it is
logged as a warning, since results are only comparable with published ones on the same split.

Tolerated, because these details are not documented: the separator of the label file (spaces, a tab or a comma);
a header line or none (the first line is skipped when its second field is not an emotion); the image folder named
``data/``, ``all_data/`` or ``dataset_image/``, and images named ``<id>.jpeg`` or ``<id>.png`` where there is no
``<id>.jpg``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from sklearn.model_selection import train_test_split

from mmsent.data.lab_format import GUID_PATTERN, DataRow, DataValidationError
from mmsent.data.manifest import ManifestError
from mmsent.data.records import DataIssue, LabDataset
from mmsent.data.split_files import (SPLITS, OnError, Splits, assemble_splits, find_split_file, image_folder,
                                     read_release_lines, read_split_records)

log = logging.getLogger("mmsent.data")

LABELS = ("angry", "bored", "calm", "fear", "happy", "love", "sad")
LABEL_FILE = "all_data_id_and_label.txt"
DATA_DIRS = ("data", "all_data", "dataset_image")
SPLIT_SUFFIXES = (".txt", ".json", ".jsonl", ".csv")
SPLIT_FOLDERS = (".", "splits")
_FIELDS = re.compile(r"[\s,;]+")
_IMAGE_SUFFIXES = (".jpeg", ".png", ".JPG", ".JPEG", ".PNG")




def _is_header(fields: list[str]) -> bool:
    return len(fields) < 2 or (fields[1].lower() not in LABELS and not fields[0].isdigit())


def read_label_file(path: Path, root: Path) -> list[DataRow]:
    """The posts of ``all_data_id_and_label.txt`` as training rows, each bad line a row with its issue."""
    name, lines = read_release_lines(path, root)
    numbered = [(n, _FIELDS.split(line.strip())) for n, line in enumerate(lines, start=1) if line.strip()]
    if numbered and _is_header(numbered[0][1]):
        numbered = numbered[1:]
    rows: list[DataRow] = []
    seen: dict[str, DataRow] = {}
    for number, fields in numbered:
        row = DataRow(fields[0], name, number, "train", fields[1].lower() if len(fields) == 2 else None)
        if len(fields) != 2:
            row.add("malformed_row", f"expected '<id> <emotion>', found {' '.join(fields)!r}", "fix the line")
        elif row.label not in LABELS:
            row.add("unknown_label", f"unknown emotion {fields[1]!r}",
                    f"use one of: {', '.join(n.capitalize() for n in LABELS)}")
        elif not GUID_PATTERN.fullmatch(row.guid):
            row.add("malformed_row", f"id {row.guid!r} is not a plain file name", "fix the line")
        elif row.guid in seen:
            row.add("duplicate_guid", f"id {row.guid} repeats the line at {seen[row.guid].source}",
                    "remove one of the two lines")
        seen.setdefault(row.guid, row)
        row.check_files = not row.issues
        rows.append(row)
    return rows


def _split_ids(path: Path, root: Path) -> list[tuple[str, str, str | None]]:
    """``(location, id, label or None)`` per row of a split file; numeric labels are dropped (see the docstring)."""
    if path.suffix == ".txt":
        name, lines = read_release_lines(path, root)
        out = []
        for n, line in enumerate(lines, start=1):
            fields = _FIELDS.split(line.strip()) if line.strip() else []
            if fields and not (n == 1 and fields[0].lower() == "id"):
                out.append((f"{name}:{n}", fields[0], fields[1] if len(fields) > 1 else None))
    else:
        try:
            records = read_split_records(path)
        except ManifestError as exc:
            location, _, reason = str(exc).partition(": ")
            raise DataValidationError([DataIssue(location, reason, "fix the line or the file",
                                                 kind="unreadable_file")], root) from None
        except UnicodeDecodeError as exc:
            raise DataValidationError([DataIssue(path.name, f"not utf-8 text ({exc.reason})", "save it as utf-8",
                                                 kind="unreadable_file")], root) from None
        folder = path.parent.relative_to(root).as_posix()  # the readers name rows by file name alone
        out = [(where if folder == "." else f"{folder}/{where}",
                "" if rec.get("id") is None else str(rec["id"]).strip(), rec.get("label")) for where, rec in records]
    return [(where, guid, label if isinstance(label, str) and label.strip() and not label.strip().isdigit()
             else None) for where, guid, label in out]


def _split_row(where: str, guid: str, named: str | None, split: str, known: dict[str, DataRow]) -> DataRow:
    """A split file's row, labelled from the label file (``known``), with an issue if it cannot be."""
    post = known.get(guid)
    row = DataRow(guid, where.rsplit(":", 1)[0], 0, "test" if split == "test" else "train",
                  post.label if post else None, image_path=post.image_path if post else None, where=where)
    if post is None:
        row.add("unknown_id", f"id {guid!r} is not a post of {LABEL_FILE} (or its line there is bad)",
                "fix the id, or remove the row")
    elif named is not None and named.strip().lower() != post.label:
        row.add("label_mismatch", f"label {named!r} disagrees with {post.label!r} at {post.source}",
                "fix the split file or the label file")
    row.check_files = not row.issues
    return row


def find_split_files(root: Path) -> tuple[dict[str, Path], list[DataIssue]]:
    """The split files (in ``root`` or ``root/splits``; none: the split is drawn) and the issues that stop a read."""
    for folder in (root / f for f in SPLIT_FOLDERS):
        found: dict[str, Path] = {}
        issues: list[DataIssue] = []
        for split in SPLITS:
            path, ambiguous = find_split_file(folder, split, SPLIT_SUFFIXES)
            issues += [ambiguous] if ambiguous else []
            if path is not None:
                found[split] = path
        if found or issues:
            lacking = [split for split in ("train", "test") if split not in found]
            if lacking and not issues:
                have = ", ".join(p.name for p in found.values())
                issues.append(DataIssue(str(folder), f"split files {have} but no {' or '.join(lacking)} file",
                                        "give train, test and optionally dev files, or none (the reader then "
                                        "draws an 8:1:1 split)", kind="missing_split_file"))
            return found, issues
    return {}, []


def draw_splits(rows: list[DataRow], seed: int) -> Splits:
    """A stratified 8:1:1 train/dev/test split of the readable rows (bad rows stay in train, to be reported)."""
    good = [row for row in rows if row.check_files]
    labels = [row.label for row in good]
    try:
        rest, test = train_test_split(good, test_size=0.1, random_state=seed, stratify=labels)
        train, dev = train_test_split(rest, test_size=1 / 9, random_state=seed, stratify=[r.label for r in rest])
    except ValueError as exc:  # too few posts of a class to stratify (only in tiny copies)
        log.warning("cannot stratify the TumEmo split (%s): drawing it at random", exc)
        rest, test = train_test_split(good, test_size=0.1, random_state=seed)
        train, dev = train_test_split(rest, test_size=1 / 9, random_state=seed)
    chosen_dev, chosen_test = {id(r) for r in dev}, {id(r) for r in test}
    for row in test:
        row.split = "test"
    return {"train": [r for r in rows if id(r) not in chosen_dev | chosen_test],
            "dev": [r for r in rows if id(r) in chosen_dev], "test": [r for r in rows if id(r) in chosen_test]}


def _find_other_images(rows: list[DataRow], data_dir: Path) -> None:
    """Points rows without ``<id>.jpg`` at ``<id>.jpeg`` / ``<id>.png`` where one exists (one folder listing)."""
    jpg: set[str] = set()
    other: dict[str, str] = {}
    with os.scandir(data_dir) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix == ".jpg":
                jpg.add(stem)
            elif suffix in _IMAGE_SUFFIXES:
                other.setdefault(stem, entry.name)
    for row in rows:
        if row.guid not in jpg and row.guid in other:
            row.image_path = data_dir / other[row.guid]


def _from_split_files(rows: list[DataRow], paths: dict[str, Path], root: Path) -> tuple[Splits, list[DataIssue]]:
    """The split files' rows labelled from the label file, and the label file's bad lines (skippable issues)."""
    known = {row.guid: row for row in rows if row.check_files}
    splits: Splits = {split: [_split_row(where, guid, named, split, known)
                              for where, guid, named in _split_ids(path, root)] for split, path in paths.items()}
    used = {row.guid for split_rows in splits.values() for row in split_rows}
    unused = sum(1 for guid in known if guid not in used)
    if unused:
        log.info("TumEmo %s: %d post(s) of %s are in no split file and are not used", root, unused, LABEL_FILE)
    return splits, [issue for row in rows for issue in row.issues]


def load_tumemo_dataset(root: str | Path, *, on_error: OnError = "raise", max_image_pixels: int | None = None,
                        check_images: bool = True, split_seed: int = 13) -> LabDataset:
    """Reads the TumEmo release: train, dev (``dataset.validation``) and the labelled test split.

    Args:
        root: the release folder (holding ``all_data_id_and_label.txt`` and ``data/``).
        on_error: ``"raise"``: one error listing every problem; ``"skip"``: drop offending rows, logging each.
        max_image_pixels: decompression-bomb limit for the image check.
        check_images: fully decode every image.
        split_seed: the seed of the drawn split, when the folder has no split files.

    Raises:
        FileNotFoundError: if ``root``, the label file or the data folder does not exist.
        DataValidationError: for unreadable or incomplete split files, and (under "raise") any bad row.
    """
    root = Path(root).expanduser()
    label_path, data_dir = root / LABEL_FILE, image_folder(root, DATA_DIRS)
    if not label_path.is_file():
        raise FileNotFoundError(f"{label_path} not found: a TumEmo release holds {LABEL_FILE} beside data/")
    if data_dir is None:
        raise FileNotFoundError(f"no data folder in {root}: expected data/ holding <id>.jpg and <id>.txt")
    rows = read_label_file(label_path, root)
    _find_other_images(rows, data_dir)
    paths, problems = find_split_files(root)
    if problems:
        raise DataValidationError(problems, root)
    if paths:
        splits, issues = _from_split_files(rows, paths, root)
        files = {split: path.relative_to(root).as_posix() for split, path in paths.items()}
    else:
        log.warning("TumEmo %s has no split files: drew a stratified 8:1:1 train/dev/test split (seed %d); results "
                    "compare with published ones only on the same split (add train/dev/test files to fix it)",
                    root, split_seed)
        splits, issues, files = draw_splits(rows, split_seed), [], {"train": LABEL_FILE}
    return assemble_splits(root, data_dir, splits, files, on_error=on_error, max_image_pixels=max_image_pixels,
                           check_images=check_images, label_order=LABELS, issues=issues)
