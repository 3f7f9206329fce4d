"""Prediction files in the input's own ``guid,tag`` format, with class probabilities beside them.

A prediction file stays exactly in the input's ``guid,tag`` layout (graders read it as is), so what marks it as
mmsent's is the sidecar ``<name>.mmsent.json`` (see :mod:`mmsent.io`), which covers the file and its companions
``<stem>_proba.csv`` and ``<stem>_skipped.csv``. Nothing else is ever replaced: a file whose first line is
``guid,tag`` may just as well be someone's hand-labelled ``train.txt``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mmsent.data.records import DataIssue, Example
from mmsent.io import (OutputError, atomic_write_text, fingerprint, marker_path, output_lock, read_marker,
                       write_marker)
from mmsent.labels import LabelsLike, as_label_set
from mmsent.run_files import PREDICTIONS_FILE
from mmsent.training.ensemble import decide

logger = logging.getLogger("mmsent.predict")


def write_predictions(path: str | Path, examples: Sequence[Example], probs: np.ndarray,
                      skipped: Mapping[str, DataIssue] | None = None, order: Sequence[str] = (),
                      labels: LabelsLike | None = None) -> Path:
    """Writes ``guid,tag`` rows (the layout of ``test_without_label.txt``) for ``examples``, in their given order.

    Rows the dataset reader skipped (``skipped``, under ``on_error=skip``) are not dropped: they are written with
    the tag ``null``, in the input's row ``order``, and listed with their problem in ``<stem>_skipped.csv``.

    ``probs`` is ``(N, classes)`` in the order of ``labels`` (default: the three sentiment classes); the tags are
    its argmax. Returns the path of the probabilities CSV written beside the
    file (``<stem>_proba.csv``). The marker ``<name>.mmsent.json`` is written beside them (see the module docstring).

    Raises:
        ValueError: for probabilities of the wrong shape or not finite (nothing is written then).
        OutputError: (a ValueError) if one of the three files exists and is not mmsent's, or another process is
            writing them now (nothing is written then).
    """
    path, names = Path(path), as_label_set(labels)
    probs = np.asarray(probs)
    if probs.shape != (len(examples), len(names)):
        raise ValueError(f"expected probabilities of shape ({len(examples)}, {len(names)}), got {probs.shape}")
    if not np.isfinite(probs).all():
        bad = [ex.guid for ex, row in zip(examples, probs) if not np.isfinite(row).all()]
        raise ValueError(f"non-finite probabilities for {len(bad)} row(s), e.g. {bad[:3]}: the models or features "
                         "hold NaN/inf values; nothing was written")
    tags = [names[i] for i in decide(probs)]
    answered = {ex.guid: tag for ex, tag in zip(examples, tags)}
    skipped = {g: issue for g, issue in (skipped or {}).items() if g not in answered}
    rows = [(g, answered.get(g, "null")) for g in order] if order else list(answered.items())
    rows += [(g, "null") for g in skipped if g not in set(order)]
    proba = ["guid,tag," + ",".join(f"p_{name}" for name in names) + "\n"]
    proba += [f"{ex.guid},{tag}," + ",".join(f"{p:.6f}" for p in row) + "\n"
              for ex, tag, row in zip(examples, tags, probs)]
    texts = {path: "guid,tag\n" + "".join(f"{g},{tag}\n" for g, tag in rows),
             _companion(path, "proba"): "".join(proba), _companion(path, "skipped"): None}
    if skipped:
        logger.warning("%d row(s) could not be read and are written as %s,null; why: %s", len(skipped), path.name,
                       _companion(path, "skipped"))
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["guid", "location", "problem", "fix"])
        writer.writerows([g, issue.location, issue.reason, issue.fix] for g, issue in skipped.items())
        texts[_companion(path, "skipped")] = table.getvalue()
    check_replaceable(path)  # a file that is not ours is refused before a lock file is made beside it
    with output_lock(path):
        _replace_owned(path, texts)
    return _companion(path, "proba")


_KIND = "guid,tag predictions"  # the marker's kind for these files


def _companion(path: Path, name: str) -> Path:
    """``<stem>_proba.csv`` or ``<stem>_skipped.csv`` beside a prediction file."""
    return path.with_name(f"{path.stem}_{name}.csv")


def _replace_owned(path: Path, texts: Mapping[Path, str | None]) -> None:
    """Writes each file of ``texts`` (None: removes it) once every one that exists is proven mmsent's, unchanged.

    The marker is written first with both the old and the new fingerprints: a crash in between leaves files it still
    recognises, never ones that look foreign. Call with the output's lock held.
    """
    current = check_replaceable(path)
    new = {target.name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
           for target, data in ((t, text.encode("utf-8")) for t, text in texts.items() if text is not None)}
    write_marker(path, _KIND, {name: [s for s in (new.get(name), current.get(name)) if s]
                               for name in new.keys() | current.keys()})
    for target, text in texts.items():
        if text is None:
            target.unlink(missing_ok=True)  # only ever one of ours: check_replaceable refused any other
        else:
            atomic_write_text(target, text)
    write_marker(path, _KIND, {name: [state] for name, state in new.items()})


def check_replaceable(path: str | Path, shown: str | None = None) -> dict[str, dict]:
    """The fingerprints of a prediction file and its companions as they are, once each that exists is proven one
    mmsent wrote and nobody changed since (by the marker beside it).

    Args:
        path: the prediction file.
        shown: how to name the path in a refusal (``--out ...``; default the path itself).

    Raises:
        OutputError: naming the first file that exists and is not mmsent's (it is left untouched).
    """
    path = Path(path)
    marker = read_marker(path, _KIND)
    known = marker["files"] if marker else {}
    current = {}
    for target in (path, _companion(path, "proba"), _companion(path, "skipped")):
        if not os.path.lexists(target):
            continue
        state = fingerprint(target) if target.is_file() else None
        recorded = known.get(target.name)
        if state is None or not isinstance(recorded, list) or state not in recorded:
            why = f"no {marker_path(path).name} beside it says so" if marker is None else \
                f"it changed since {marker_path(path).name} recorded it"
            raise OutputError(f"{shown or path}: would overwrite {target}, which is not a prediction file written by "
                              f"mmsent ({why}); it was left untouched: choose another --out, or delete it yourself")
        current[target.name] = state
    return current


def prediction_path(out: str | Path, run_dir: str | Path, data_root: str | Path) -> Path:
    """Where ``mmsent predict --out`` may write: a folder gets ``predictions.txt`` inside it; refused (OutputError, a
    ValueError) inside the dataset folder or the run's ``models/``, and over any existing file (or companion
    ``_proba.csv`` / ``_skipped.csv``) that mmsent did not write (see :func:`check_replaceable`). Cheap: call it
    before loading any model."""
    path = Path(out).expanduser()
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    resolved = path.resolve()
    for folder, what in ((Path(data_root), "the dataset folder"), (Path(run_dir) / "models", "the run's models")):
        if resolved.is_relative_to(folder.expanduser().resolve()):
            raise OutputError(f"--out {out}: inside {what} ({folder}); write the predictions elsewhere, e.g. --out "
                              f"{Path(run_dir) / 'predictions.txt'}")
    check_replaceable(path, shown=f"--out {out}")
    return path


def read_predictions(path: str | Path) -> list[tuple[str, str]]:
    """Reads a ``guid,tag`` file back."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0]] != ["guid", "tag"]:
        raise ValueError(f"{path}: first line must be the header 'guid,tag'")
    return [(r[0], r[1]) for r in rows[1:] if r]
