"""Plain records shared by the data layer and everything downstream."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmsent.labels import LabelError, LabelSet


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

    def label_set(self, fixed: Sequence[str] | None = None) -> LabelSet:
        """The task's classes: ``fixed`` (``data.labels``), else the order the layout fixes, else the sorted training
        labels. Every labelled test row must hold one of them.

        Raises:
            LabelError: naming the rows: a label outside ``fixed``, a class of it with no training row, a test label
                no training row has, or (classes neither fixed nor the layout's) a class of one row, likely a typo.
        """
        counts = Counter(str(ex.label) for ex in self.train)
        if fixed is None and self.label_order is None:  # classes no one declared: a lone one is likely a typo
            _refuse_single_rows(counts, self.train)
        try:
            labels = LabelSet.from_training(counts, order=fixed if fixed is not None else self.label_order)
        except LabelError as exc:
            raise LabelError(f"{self.root}: {exc}") from None
        unknown = [ex for ex in self.test if ex.label is not None and ex.label not in labels]
        if unknown:
            ex = unknown[0]
            raise LabelError(f"{ex.source}: test row {ex.guid} has label {ex.label!r}, which no training row has "
                             f"(classes: {list(labels)}); {len(unknown)} such row(s): fix the label, or add training "
                             "rows of that class")
        return labels


def _refuse_single_rows(counts: Counter, train: list[Example]) -> None:
    """A class held by one training row cannot be learned, split or scored; in a set read from the data it is most
    often a typo of another class."""
    single = sorted(name for name, n in counts.items() if n < 2)
    if not single or len(counts) < 2:
        return
    name = single[0]
    where = next(ex.source for ex in train if ex.label == name)
    close = difflib.get_close_matches(name, [n for n in counts if n != name], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise LabelError(f"{where}: class {name!r} has a single training row ({len(single)} such class(es): {single}); "
                     f"{hint}fix the label, add rows of that class, or declare the classes with data.labels")
