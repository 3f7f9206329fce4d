"""Plain records shared by the data layer and everything downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One image+text pair as read from disk."""

    guid: str  # from the label file; names data/{guid}.jpg and data/{guid}.txt
    label: str | None  # a class of the task's label set, or None for unlabeled (test) rows
    text: str  # decoded, *uncleaned*
    text_encoding: str  # utf-8, gbk or cp1252
    image_path: Path
    text_path: Path
    source: str = ""  # file:line of the row in the label file, for error messages


@dataclass(frozen=True)
class DataIssue:
    """One problem found while reading a dataset; prints as ``location: reason -> fix``."""

    location: str  # file:line of the label row, or the path of the offending data file
    reason: str
    fix: str
    guid: str | None = None
    kind: str = ""  # short category (missing_image, unknown_label, ...): the key of LoadReport.skipped

    def __str__(self) -> str:
        return f"{self.location}: {self.reason} -> {self.fix}"


@dataclass
class LoadReport:
    """What a dataset load saw. Counts are dicts of name -> count."""

    issues: list[DataIssue] = field(default_factory=list)  # all, in file order: raised, skipped or warned about
    skipped: dict[str, int] = field(default_factory=dict)  # dropped rows per kind of their first issue
    encodings: dict[str, int] = field(default_factory=dict)  # kept rows per text encoding
    counts: dict[str, int] = field(default_factory=dict)  # kept rows per split (train, test), and empty_text
    warnings: dict[str, int] = field(default_factory=dict)  # tolerated: missing_header, missing_test_file
    label_fusion: dict[str, int] = field(default_factory=dict)  # MVSA releases: posts per fusion-rule outcome


@dataclass
class LabDataset:
    """A lab-format dataset: labelled ``train`` and unlabeled ``test`` examples, each in file order."""

    root: Path  # holds train.txt, test_without_label.txt and data/
    train: list[Example]
    test: list[Example]  # in the order of the prediction file
    report: LoadReport = field(default_factory=LoadReport)
    # test rows dropped under on_error=skip: guid -> the problem; a prediction file still lists them (tag null)
    test_skipped: dict[str, DataIssue] = field(default_factory=dict)
    test_order: list[str] = field(default_factory=list)  # every test row's guid in file order, skipped ones too
    validation: list[str] = field(default_factory=list)  # a validation split given with the data (a table's split=val)
    # the class order the layout fixes (the lab format's and MVSA's positive/neutral/negative); None: sorted labels
    label_order: tuple[str, ...] | None = None

    def labels(self) -> dict[str, str]:
        """guid -> label name of every labelled row."""
        return {ex.guid: str(ex.label) for ex in self.train}
