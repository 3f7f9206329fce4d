"""Train/validation splits by guid: stratified, deterministic, saved as readable CSV, checked against the data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import StratifiedKFold, train_test_split

from mmsent.data.records import Example

_VALUES = ("train", "val")
_SHOWN = 10  # guids quoted per problem in a SplitError


class SplitError(ValueError):
    """A split does not fit its dataset (unknown, missing, repeated or overlapping guids) or its file is broken."""


@dataclass
class Split:
    """Which guids train and which validate, each list in dataset order and disjoint from the other."""

    train: list[str]
    val: list[str]
    seed: int
    val_fraction: float  # the share asked for validation (1/k for a k-fold split)
    fold: int | None = None  # index of the fold for k-fold splits


def _repeated(guids: list[str]) -> list[str]:
    return [guid for guid, n in Counter(guids).items() if n > 1]


def _labels(examples: Sequence[Example]) -> list[str]:
    """The labels to stratify on; every row must have one and every guid be unique."""
    missing = [ex.guid for ex in examples if ex.label is None]
    if missing:
        raise SplitError(f"cannot stratify: {len(missing)} row(s) have no label, e.g. {', '.join(missing[:_SHOWN])}")
    repeated = _repeated([ex.guid for ex in examples])
    if repeated:
        shown = ", ".join(repeated[:_SHOWN])
        raise SplitError(f"{len(repeated)} guid(s) appear more than once in the dataset: {shown}")
    return [ex.label for ex in examples]  # type: ignore[misc]


def _stratify_error(labels: list[str], n_parts: int, exc: ValueError) -> SplitError:
    counts = dict(sorted(Counter(labels).items()))
    return SplitError(f"cannot stratify {len(labels)} rows into {n_parts} part(s) with label counts {counts}: {exc}")


def _split(examples: Sequence[Example], train_idx: Iterable[int], val_idx: Iterable[int], seed: int,
           val_fraction: float, fold: int | None = None) -> Split:
    """Index lists to a :class:`Split` of guids in dataset order."""
    train = [examples[i].guid for i in sorted(train_idx)]
    val = [examples[i].guid for i in sorted(val_idx)]
    return Split(train=train, val=val, seed=seed, val_fraction=val_fraction, fold=fold)


def make_split(examples: Sequence[Example], val_fraction: float, seed: int) -> Split:
    """Splits labelled examples (unique guids) into train and validation, keeping the label proportions in both.

    The same examples, fraction (strictly between 0 and 1) and seed always give the same split.

    Raises:
        SplitError: for a bad fraction, unlabelled rows, repeated guids or too few rows of some label to stratify.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SplitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = _labels(examples)
    try:
        train_idx, val_idx = train_test_split(list(range(len(labels))), test_size=val_fraction, random_state=seed,
                                              stratify=labels)
    except ValueError as exc:
        raise _stratify_error(labels, 2, exc) from exc
    return _split(examples, train_idx, val_idx, seed, val_fraction)


def kfold_splits(examples: Sequence[Example], k: int, seed: int) -> list[Split]:
    """Stratified k-fold: k splits whose validation parts partition the examples.

    Raises:
        SplitError: for k < 2, unlabelled rows, repeated guids or a label with fewer than k rows.
    """
    if k < 2:
        raise SplitError(f"k-fold needs k >= 2, got {k}")
    labels = _labels(examples)
    rare = {label: n for label, n in sorted(Counter(labels).items()) if n < k}
    if rare:  # scikit-learn only warns, and some folds would then validate on no row of that label
        raise _stratify_error(labels, k, ValueError(f"fewer rows than folds for {rare}; use fewer folds"))
    parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(list(range(len(labels))), labels)
    return [_split(examples, train_idx, val_idx, seed, 1.0 / k, fold) for fold, (train_idx, val_idx)
            in enumerate(parts)]


def save_split(split: Split, path: str | Path) -> None:
    """Writes a split as CSV ``guid,split`` (values ``train``/``val``) under a ``#`` comment with seed and fraction."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = f"# mmsent split: seed={split.seed} val_fraction={split.val_fraction!r}"
    if split.fold is not None:
        meta += f" fold={split.fold}"
    lines = [meta, f"# {len(split.train)} train, {len(split.val)} val", "guid,split"]
    lines += [f"{guid},train" for guid in split.train] + [f"{guid},val" for guid in split.val]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_split(path: str | Path) -> Split:
    """Reads a split written by :func:`save_split`.

    Raises:
        SplitError: naming the file and line if it is not in that format.
    """
    path = Path(path)
    meta: dict[str, str] = {}
    parts: dict[str, list[str]] = {"train": [], "val": []}
    header_seen = False
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#"):
            meta.update(item.split("=", 1) for item in line[1:].split() if "=" in item)  # type: ignore[misc]
        elif line and not header_seen:
            if fields != ["guid", "split"]:
                raise SplitError(f"{path}:{number}: expected the header 'guid,split', found {line!r}")
            header_seen = True
        elif line:
            if len(fields) != 2 or not fields[0] or fields[1] not in _VALUES:
                raise SplitError(f"{path}:{number}: expected 'guid,train' or 'guid,val', found {line!r}")
            parts[fields[1]].append(fields[0])
    try:
        seed, fraction = int(meta["seed"]), float(meta["val_fraction"])
        fold = int(meta["fold"]) if "fold" in meta else None
    except (KeyError, ValueError) as exc:
        raise SplitError(f"{path}: missing or bad '# mmsent split: seed=... val_fraction=...' line ({exc})") from exc
    return Split(train=parts["train"], val=parts["val"], seed=seed, val_fraction=fraction, fold=fold)


def check_split(split: Split, examples: Sequence[Example]) -> None:
    """Checks that a split covers exactly the given examples, each once, with no row in both train and val.

    Raises:
        SplitError: listing what is wrong (a few guids each) and how to fix it.
    """
    known = {ex.guid for ex in examples}
    named = set(split.train) | set(split.val)
    found = {
        "guid(s) repeated in train": _repeated(split.train),
        "guid(s) repeated in val": _repeated(split.val),
        "guid(s) in both train and val": sorted(set(split.train) & set(split.val)),
        "guid(s) not in the dataset": [guid for guid in split.train + split.val if guid not in known],
        "dataset guid(s) not in the split": [ex.guid for ex in examples if ex.guid not in named],
    }
    problems = [f"{len(guids)} {what}: {', '.join(guids[:_SHOWN])}" for what, guids in found.items() if guids]
    if problems:
        raise SplitError(
            "the split does not match the dataset:\n  "
            + "\n  ".join(problems)
            + "\nThe split was probably made for other data: delete the split file to make a new one."
        )
