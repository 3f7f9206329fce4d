"""Train/validation splits by guid: stratified, deterministic, saved as readable CSV, checked against the data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
    """Which guids train and which validate.

    Attributes:
        train: training guids, in dataset order.
        val: validation guids, in dataset order; never also in ``train``.
        seed: the random seed that made the split.
        val_fraction: the share of rows asked for validation (``1/k`` for a k-fold split).
        fold: index of the fold for k-fold splits, else None.
    """

    train: list[str]
    val: list[str]
    seed: int
    val_fraction: float
    fold: int | None = None


def _labels(examples: Sequence[Example]) -> list[str]:
    missing = [ex.guid for ex in examples if ex.label is None]
    if missing:
        raise SplitError(f"cannot stratify: {len(missing)} row(s) have no label, e.g. {', '.join(missing[:_SHOWN])}")
    return [ex.label for ex in examples]  # type: ignore[misc]


def _stratify_error(labels: list[str], n_splits: int, exc: ValueError) -> SplitError:
    counts = Counter(labels)
    return SplitError(f"cannot stratify {len(labels)} rows into {n_splits} part(s) with label counts "
                      f"{dict(sorted(counts.items()))}: {exc}")


def make_split(examples: Sequence[Example], val_fraction: float, seed: int) -> Split:
    """Splits labelled examples into train and validation, keeping the label proportions in both.

    Args:
        examples: labelled examples (guids must be unique).
        val_fraction: share of rows for validation, strictly between 0 and 1.
        seed: random seed; the same examples, fraction and seed always give the same split.

    Raises:
        SplitError: for unlabelled rows, repeated guids or too few rows of some label to stratify.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SplitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = _labels(examples)
    _check_unique([ex.guid for ex in examples], "the dataset")
    order = list(range(len(examples)))
    try:
        train_idx, val_idx = train_test_split(order, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise _stratify_error(labels, 2, exc) from exc
    return Split(
        train=[examples[i].guid for i in sorted(train_idx)],
        val=[examples[i].guid for i in sorted(val_idx)],
        seed=seed,
        val_fraction=val_fraction,
    )


def kfold_splits(examples: Sequence[Example], k: int, seed: int) -> list[Split]:
    """Stratified k-fold: k splits whose validation parts partition the examples.

    Raises:
        SplitError: for k < 2, unlabelled rows, repeated guids or a label with fewer than k rows.
    """
    if k < 2:
        raise SplitError(f"k-fold needs k >= 2, got {k}")
    labels = _labels(examples)
    _check_unique([ex.guid for ex in examples], "the dataset")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        parts = list(folds.split(list(range(len(examples))), labels))
    except ValueError as exc:
        raise _stratify_error(labels, k, exc) from exc
    return [
        Split(
            train=[examples[i].guid for i in sorted(train_idx)],
            val=[examples[i].guid for i in sorted(val_idx)],
            seed=seed,
            val_fraction=1.0 / k,
            fold=fold,
        )
        for fold, (train_idx, val_idx) in enumerate(parts)
    ]


def save_split(split: Split, path: str | Path) -> None:
    """Writes a split as CSV ``guid,split`` (values ``train``/``val``) under a ``#`` comment with seed and fraction."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = f"# mmsent split: seed={split.seed} val_fraction={split.val_fraction!r}"
    if split.fold is not None:
        meta += f" fold={split.fold}"
    lines = [meta, f"# {len(split.train)} train, {len(split.val)} val", "guid,split"]
    lines += [f"{guid},train" for guid in split.train]
    lines += [f"{guid},val" for guid in split.val]
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
        if not line:
            continue
        if line.startswith("#"):
            meta.update(item.split("=", 1) for item in line[1:].split() if "=" in item)  # type: ignore[misc]
            continue
        fields = [f.strip() for f in line.split(",")]
        if not header_seen:
            if fields != ["guid", "split"]:
                raise SplitError(f"{path}:{number}: expected the header 'guid,split', found {line!r}")
            header_seen = True
            continue
        if len(fields) != 2 or not fields[0] or fields[1] not in _VALUES:
            raise SplitError(f"{path}:{number}: expected 'guid,train' or 'guid,val', found {line!r}")
        parts[fields[1]].append(fields[0])
    try:
        seed, fraction = int(meta["seed"]), float(meta["val_fraction"])
        fold = int(meta["fold"]) if "fold" in meta else None
    except (KeyError, ValueError) as exc:
        raise SplitError(f"{path}: missing or bad '# mmsent split: seed=... val_fraction=...' line ({exc})") from exc
    return Split(train=parts["train"], val=parts["val"], seed=seed, val_fraction=fraction, fold=fold)


def _check_unique(guids: list[str], where: str) -> None:
    repeated = [guid for guid, n in Counter(guids).items() if n > 1]
    if repeated:
        raise SplitError(f"{len(repeated)} guid(s) appear more than once in {where}: {', '.join(repeated[:_SHOWN])}")


def check_split(split: Split, examples: Sequence[Example]) -> None:
    """Checks that a split covers exactly the given examples, each once, with no row in both train and val.

    Raises:
        SplitError: listing what is wrong (a few guids each) and how to fix it.
    """
    problems: list[str] = []
    for name, guids in (("train", split.train), ("val", split.val)):
        repeated = [guid for guid, n in Counter(guids).items() if n > 1]
        if repeated:
            problems.append(f"{len(repeated)} guid(s) repeated in {name}: {', '.join(repeated[:_SHOWN])}")
    overlap = sorted(set(split.train) & set(split.val))
    if overlap:
        problems.append(f"{len(overlap)} guid(s) in both train and val: {', '.join(overlap[:_SHOWN])}")
    known = {ex.guid for ex in examples}
    named = set(split.train) | set(split.val)
    unknown = [guid for guid in split.train + split.val if guid not in known]
    if unknown:
        problems.append(f"{len(unknown)} guid(s) not in the dataset: {', '.join(unknown[:_SHOWN])}")
    missing = [ex.guid for ex in examples if ex.guid not in named]
    if missing:
        problems.append(f"{len(missing)} dataset guid(s) not in the split: {', '.join(missing[:_SHOWN])}")
    if problems:
        raise SplitError(
            "the split does not match the dataset:\n  "
            + "\n  ".join(problems)
            + "\nThe split was probably made for other data: delete the split file to make a new one."
        )
