"""The Twitter multimodal sarcasm release of Cai et al. (ACL 2019), "HFM" (``data.format: hfm``).

Layout, as the release's own loader (``codes/loadData.py`` of headacheboy/data-of-multimodal-sarcasm-detection) and
its ``text/Readme.MD`` describe it::

    text/train.txt     one Python list literal per line: ['<id>', '<text>', <label>]
    text/valid2.txt    ['<id>', '<text>', <hashtag label>, <label>]: the fixed dev split
    text/test2.txt     the same: the fixed, labelled test split
    dataset_image/<id>.jpg

The label is the last element of every list (in dev and test the one before it is the label the post's hashtags
gave; the last is a human annotator's, the one every published result uses): 1 sarcastic, 0 not. The reader names
them ``not_sarcastic`` and ``sarcastic``, in that order (the release's 0 and 1). Lines are parsed with
:func:`ast.literal_eval` (the release's loader uses ``eval``), so no code in a file is ever run.

The release's loader drops every post whose text, split on whitespace, holds one of :data:`CUE_WORDS` (``sarcasm``,
``<url>``, ...): words that give the label away. Published results follow it, so this reader does too (the count of
dropped posts per split is logged and in ``report.counts["cue_word_dropped"]``); ``drop_cue_words=False`` keeps them.

Tolerated, because public copies differ: the text files directly in the folder instead of under ``text/``;
``valid.txt`` / ``test.txt`` where ``valid2.txt`` / ``test2.txt`` are absent (the ``2`` files win when both exist);
ids and labels written as numbers or strings; three elements in dev/test lines; images under
``dataset_image/dataset_image/`` (a doubly unpacked archive) or ``images/``. ``valid2.txt`` is optional: without it
the run draws its validation rows from train.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

from mmsent.data.lab_format import DataRow, DataValidationError
from mmsent.data.records import DataIssue, LabDataset
from mmsent.data.split_files import OnError, Splits, assemble_splits, read_release_lines

log = logging.getLogger("mmsent.data")

LABELS = ("not_sarcastic", "sarcastic")  # index = the release's label
CUE_WORDS = frozenset({"sarcasm", "sarcastic", "reposting", "<url>", "joke", "humour", "humor", "jokes", "irony",
                       "ironic", "exgag"})
# per split, the file names in the order they are preferred
FILES = {"train": ("train.txt",), "dev": ("valid2.txt", "valid.txt"), "test": ("test2.txt", "test.txt")}
IMAGE_DIRS = ("dataset_image/dataset_image", "dataset_image", "images")


def parse_line(line: str, split: str) -> tuple[str, str, str]:
    """``(id, text, label name)`` of one release line; ValueError saying what is wrong."""
    try:
        fields: Any = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a Python list literal ({type(exc).__name__})") from None
    sizes = (3,) if split == "train" else (3, 4)
    if not isinstance(fields, (list, tuple)) or len(fields) not in sizes:
        shape = "['id', 'text', label]" + ("" if split == "train" else " or ['id', 'text', hashtag_label, label]")
        raise ValueError(f"expected a list {shape}, found {line[:80]!r}")
    guid, text, label = fields[0], fields[1], fields[-1]
    if not isinstance(guid, (str, int)) or isinstance(guid, bool) or not isinstance(text, str):
        raise ValueError("the id must be a string or number and the text a string")
    value = str(int(label)) if isinstance(label, (int, bool)) else str(label).strip()
    if value not in ("0", "1"):
        raise ValueError(f"label {label!r} is not 0 (not sarcastic) or 1 (sarcastic)")
    return str(guid).strip(), text, LABELS[int(value)]


def has_cue_word(text: str) -> bool:
    """True when the text, split on whitespace, holds a word of :data:`CUE_WORDS` (the release loader's test)."""
    return not CUE_WORDS.isdisjoint(text.split())


def read_split(path: Path, root: Path, split: str, drop_cue_words: bool) -> tuple[list[DataRow], int]:
    """The rows of one release file (bad lines as rows with an issue) and how many cue-word posts were dropped."""
    name, lines = read_release_lines(path, root)
    rows: list[DataRow] = []
    dropped = 0
    kind = "test" if split == "test" else "train"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            guid, text, label = parse_line(line.strip(), split)
        except ValueError as exc:
            row = DataRow("", name, number, kind)
            row.add("malformed_row", str(exc), "fix the line or remove it")
            row.check_files = False
            rows.append(row)
            continue
        if drop_cue_words and has_cue_word(text):
            dropped += 1
            log.debug("%s:%d: dropped, its text holds a sarcasm cue word", name, number)
            continue
        rows.append(DataRow(guid, name, number, kind, label, inline_text=text))
    return rows, dropped


def find_files(root: Path) -> tuple[dict[str, Path], list[DataIssue]]:
    """The release file of each split found (under ``text/`` or in ``root``), and the issues of missing ones."""
    folder = root / "text" if (root / "text").is_dir() else root
    found: dict[str, Path] = {}
    missing: list[DataIssue] = []
    for split, names in FILES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            found[split] = path
        elif split != "dev":
            missing.append(DataIssue(str(folder), f"no {split} file ({' or '.join(names)})",
                                     "put the release's text files in text/ beside dataset_image/",
                                     kind="missing_split_file"))
    if "dev" not in found:
        log.info("no valid2.txt in %s: the run draws its validation rows from train", folder)
    return found, missing


def load_hfm_dataset(root: str | Path, *, on_error: OnError = "raise", max_image_pixels: int | None = None,
                     check_images: bool = True, drop_cue_words: bool = True) -> LabDataset:
    """Reads the HFM release: train, dev (``dataset.validation``) and the labelled test split.

    Args:
        root: the release folder (holding ``text/`` and ``dataset_image/``).
        on_error: ``"raise"``: one error listing every problem; ``"skip"``: drop offending rows, logging each.
        max_image_pixels: decompression-bomb limit for the image check.
        check_images: fully decode every image.
        drop_cue_words: drop posts holding a sarcasm cue word, as the release's loader and published results do.

    Raises:
        FileNotFoundError: if ``root`` or the image folder does not exist.
        DataValidationError: for missing or unreadable files, and (under "raise") any bad line or image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root} (an HFM release holds text/ and dataset_image/)")
    data_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if data_dir is None:
        raise FileNotFoundError(f"no image folder in {root}: expected dataset_image/ holding {{id}}.jpg")
    paths, missing = find_files(root)
    if missing:
        raise DataValidationError(missing, root)
    splits: Splits = {}
    dropped: dict[str, int] = {}
    for split, path in paths.items():
        splits[split], dropped[split] = read_split(path, root, split, drop_cue_words)
    if drop_cue_words:
        log.info("HFM %s: dropped posts with a sarcasm cue word (as the release's loader does): %s", root, dropped)
    files = {split: path.relative_to(root).as_posix() for split, path in paths.items()}
    dataset = assemble_splits(root, data_dir, splits, files, on_error=on_error, max_image_pixels=max_image_pixels,
                              check_images=check_images, label_order=LABELS)
    dataset.report.counts["cue_word_dropped"] = sum(dropped.values())
    return dataset
