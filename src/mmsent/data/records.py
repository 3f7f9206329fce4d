"""Plain records shared by the data layer and everything downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One image+text pair as read from disk.

    Attributes:
        guid: identifier from the label file; names ``data/{guid}.jpg`` and ``data/{guid}.txt``.
        label: one of :data:`mmsent.labels.LABELS`, or ``None`` for unlabeled (test) rows.
        text: the decoded, *uncleaned* text.
        text_encoding: codec the text was decoded with (``utf-8``, ``gbk`` or ``cp1252``).
        image_path: path of the image file.
        text_path: path of the text file.
        source: ``file:line`` of the row in the label file, for error messages.
    """

    guid: str
    label: str | None
    text: str
    text_encoding: str
    image_path: Path
    text_path: Path
    source: str = ""


@dataclass(frozen=True)
class DataIssue:
    """One problem found while reading a dataset: where it is, what is wrong, how to fix it.

    Attributes:
        location: ``file:line`` of the label row, or the path of the offending data file.
        reason: what is wrong, in words.
        fix: what to do about it.
        guid: the row's guid, where there is one.
        kind: short category (``missing_image``, ``unknown_label``, ...); the key of :attr:`LoadReport.skipped`.
    """

    location: str
    reason: str
    fix: str
    guid: str | None = None
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.location}: {self.reason} -> {self.fix}"


@dataclass
class LoadReport:
    """What a dataset load saw: counts per split and every issue (raised or skipped).

    Attributes:
        issues: every problem found, in file order, whether it was raised, skipped or only warned about.
        skipped: rows dropped, per issue kind (a row with several issues counts once, under its first).
        encodings: kept rows per text encoding.
        counts: kept rows per split (``train``, ``test``) and other tallies such as ``empty_text``.
        warnings: tolerated oddities, per kind (``missing_header``, ``missing_test_file``); nothing was dropped.
    """

    issues: list[DataIssue] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    encodings: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)


@dataclass
class LabDataset:
    """A dataset in lab format: labelled training rows and unlabeled test rows.

    Attributes:
        root: the folder holding ``train.txt``, ``test_without_label.txt`` and ``data/``.
        train: labelled examples in file order.
        test: unlabeled examples in file order (the order of the prediction file).
        report: what the load saw and skipped.
    """

    root: Path
    train: list[Example]
    test: list[Example]
    report: LoadReport = field(default_factory=LoadReport)

    def labels(self) -> dict[str, str]:
        """guid -> label name of every labelled row."""
        return {ex.guid: str(ex.label) for ex in self.train}
