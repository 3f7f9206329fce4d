"""The MVSA-Single and MVSA-Multiple releases: per-annotator labels fused into one label per post.

Layout: ``labelResultAll.txt`` beside ``data/{id}.jpg`` and ``data/{id}.txt``. Its first line is a header
(``ID<TAB>text,image`` once per annotator); every other line is an id followed by one ``text,image`` pair per
annotator (one for MVSA-Single, three for MVSA-Multiple), tab-separated, each label positive / neutral / negative.

The standard fusion rule: per modality, the majority over the annotators (with three annotators and three different
labels there is none, and the post is dropped as ``no_majority``); then the two modality labels become one:
equal -> that label (``agree``); one neutral -> the other (``one_neutral``); positive against negative -> dropped
(``conflict``). The count of each outcome goes to ``data_report.json`` (``label_fusion``). The lab dataset is
MVSA-Single after this rule.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from mmsent.data.lab_format import DataValidationError, LabelRow, load_lab_dataset
from mmsent.data.records import DataIssue, LabDataset
from mmsent.data.text import decode_text
from mmsent.labels import LABELS

LABEL_FILE = "labelResultAll.txt"
OUTCOMES = ("agree", "one_neutral", "conflict", "no_majority")


def majority(labels: list[str]) -> str | None:
    """The label most annotators gave, or None when no label has more votes than every other."""
    counts = Counter(labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def fuse(text_labels: list[str], image_labels: list[str]) -> tuple[str | None, str]:
    """``(label or None, outcome)`` for one post from its annotators' text and image labels."""
    text, image = majority(text_labels), majority(image_labels)
    if text is None or image is None:
        return None, "no_majority"
    if text == image:
        return text, "agree"
    if "neutral" in (text, image):
        return image if text == "neutral" else text, "one_neutral"
    return None, "conflict"


def read_label_file(path: Path, annotators: int) -> tuple[list[LabelRow], Counter, list[DataIssue]]:
    """Fused rows, the outcome counts and the malformed lines of a ``labelResultAll.txt``."""
    name = path.name
    text, _ = decode_text(path.read_bytes(), name)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if lines and lines[0][1].strip().lower().startswith("id"):
        lines = lines[1:]
    rows, outcomes, issues, seen = [], Counter(), [], set()
    for number, line in lines:
        fields = [f.strip() for f in line.strip().split("\t")]
        where = f"{name}:{number}"
        pairs = [f.split(",") for f in fields[1:]]
        if len(fields) != annotators + 1 or any(len(p) != 2 for p in pairs):
            issues.append(DataIssue(where, f"expected an id and {annotators} text,image label pair(s) separated by "
                                    f"tabs, found {line.strip()!r}", "fix the line or remove it",
                                    guid=fields[0] or None, kind="malformed_row"))
            continue
        labels = [label.strip().lower() for pair in pairs for label in pair]
        unknown = [label for label in labels if label not in LABELS]
        if unknown:
            issues.append(DataIssue(where, f"unknown label {unknown[0]!r}", f"use one of: {', '.join(LABELS)}",
                                    guid=fields[0], kind="unknown_label"))
            continue
        if fields[0] in seen:
            issues.append(DataIssue(where, f"duplicate id {fields[0]}", "remove the repeated line", guid=fields[0],
                                    kind="duplicate_guid"))
            continue
        seen.add(fields[0])
        label, outcome = fuse(labels[0::2], labels[1::2])
        outcomes[outcome] += 1
        if label is not None:
            rows.append(LabelRow(fields[0], label, name, number))
    return rows, outcomes, issues


def load_mvsa_dataset(root: str | Path, variant: Literal["single", "multiple"], *,
                      on_error: Literal["raise", "skip"] = "raise", max_image_pixels: int | None = None,
                      check_images: bool = True) -> LabDataset:
    """Reads an MVSA release as labelled rows (no test rows), every file checked as for the lab format.

    Raises:
        FileNotFoundError: without ``labelResultAll.txt`` or ``data/``.
        DataValidationError: for malformed label lines or bad files, under ``on_error="raise"``.
    """
    root = Path(root).expanduser()
    path = root / LABEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an MVSA release holds {LABEL_FILE} beside data/")
    rows, outcomes, issues = read_label_file(path, 1 if variant == "single" else 3)
    if issues and on_error == "raise":
        raise DataValidationError(issues, root)
    dataset = load_lab_dataset(root, on_error=on_error, max_image_pixels=max_image_pixels, check_images=check_images,
                               test_file=None, labelled=rows)
    dataset.report.issues = issues + dataset.report.issues
    for issue in issues:
        dataset.report.skipped[issue.kind] = dataset.report.skipped.get(issue.kind, 0) + 1
    dataset.report.label_fusion = {k: outcomes.get(k, 0) for k in OUTCOMES}
    return dataset
