"""Train/validation splits by guid: stratified, deterministic, saved as readable CSV, checked against the data.

:func:`holdout_rows` and :func:`fold_rows` are the one pair of stratified splitters every part of mmsent draws rows
with (the run's validation split and k folds, each run's early-stopping holdout, fine-tuning's holdout and its
cross-fitting folds); each caller keeps its own seed and its own policy for a class too rare to stratify.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

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


def holdout_rows(labels: Sequence, size: float | int, seed: int, *, stratify: bool = True
                 ) -> tuple[list[int], list[int]]:
    """Row positions ``(kept, held out)``, each sorted: ``size`` rows (an int) or that share of them (a float) held
    out, with every label's proportion kept in both parts unless ``stratify`` is False; ``seed`` draws them.

    Raises:
        ValueError: (scikit-learn's) when some label has too few rows to stratify.
    """
    kept, held = train_test_split(np.arange(len(labels)), test_size=size, random_state=seed,
                                  stratify=np.asarray(labels) if stratify else None)
    return sorted(int(i) for i in kept), sorted(int(i) for i in held)


def fold_rows(labels: Sequence, k: int, seed: int, *, stratify: bool = True) -> list[list[int]]:
    """The held-out row positions of each of ``k`` folds (they partition the rows), each sorted; stratified by label
    unless ``stratify`` is False.

    Raises:
        ValueError: for k < 2, fewer rows than folds, or (stratified) a label with fewer than k rows, which
            scikit-learn only warns about while some folds would then hold no row of it.
    """
    y = np.asarray(labels)
    if k < 2 or len(y) < k:
        raise ValueError(f"cannot cut {len(y)} rows into {k} folds (need 2 <= k <= rows)")
    rare = {label: n for label, n in sorted(Counter(y.tolist()).items()) if n < k}
    if stratify and rare:
        raise ValueError(f"fewer rows than folds for {rare}; use fewer folds")
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if stratify else KFold(k, shuffle=True,
                                                                                          random_state=seed)
    return [sorted(int(i) for i in held) for _, held in splitter.split(np.zeros((len(y), 1)), y)]


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
        train_idx, val_idx = holdout_rows(labels, val_fraction, seed)
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
    try:
        folds = fold_rows(labels, k, seed)
    except ValueError as exc:
        raise _stratify_error(labels, k, exc) from exc
    everything = set(range(len(labels)))
    return [_split(examples, everything - set(held), held, seed, 1.0 / k, fold) for fold, held in enumerate(folds)]


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
