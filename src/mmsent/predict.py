"""Prediction files in the input's own ``guid,tag`` format, with class probabilities beside them."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mmsent.data.records import DataIssue, Example
from mmsent.io import atomic_write_text
from mmsent.labels import LABELS
from mmsent.training.ensemble import decide

logger = logging.getLogger("mmsent.predict")


def write_predictions(path: str | Path, examples: Sequence[Example], probs: np.ndarray,
                      class_weights: Sequence[float] | None = None,
                      skipped: Mapping[str, DataIssue] | None = None, order: Sequence[str] = ()) -> Path:
    """Writes ``guid,tag`` rows (the layout of ``test_without_label.txt``) for ``examples``, in their given order.

    Rows the dataset reader skipped (``skipped``, under ``on_error=skip``) are not dropped: they are written with
    the tag ``null``, in the input's row ``order``, and listed with their problem in ``<stem>_skipped.csv``.

    ``probs`` is ``(N, 3)`` in :data:`~mmsent.labels.LABELS` order; the tags are its argmax after multiplying by
    ``class_weights`` (the run's decision rule, if any). Returns the path of the probabilities CSV written beside the
    file (``<stem>_proba.csv``).

    Raises:
        ValueError: for probabilities of the wrong shape or not finite (nothing is written then).
    """
    path = Path(path)
    probs = np.asarray(probs)
    if probs.shape != (len(examples), len(LABELS)):
        raise ValueError(f"expected probabilities of shape ({len(examples)}, {len(LABELS)}), got {probs.shape}")
    if not np.isfinite(probs).all():
        bad = [ex.guid for ex, row in zip(examples, probs) if not np.isfinite(row).all()]
        raise ValueError(f"non-finite probabilities for {len(bad)} row(s), e.g. {bad[:3]}: the models or features "
                         "hold NaN/inf values; nothing was written")
    tags = [LABELS[i] for i in decide(probs, class_weights)]
    answered = {ex.guid: tag for ex, tag in zip(examples, tags)}
    skipped = {g: issue for g, issue in (skipped or {}).items() if g not in answered}
    rows = [(g, answered.get(g, "null")) for g in order] if order else list(answered.items())
    rows += [(g, "null") for g in skipped if g not in set(order)]
    atomic_write_text(path, "guid,tag\n" + "".join(f"{g},{tag}\n" for g, tag in rows))
    skipped_path = path.with_name(f"{path.stem}_skipped.csv")
    if skipped:
        logger.warning("%d row(s) could not be read and are written as %s,null; why: %s", len(skipped), path.name,
                       skipped_path)
        with skipped_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["guid", "location", "problem", "fix"])
            writer.writerows([g, issue.location, issue.reason, issue.fix] for g, issue in skipped.items())
    else:
        skipped_path.unlink(missing_ok=True)

    proba_path = path.with_name(f"{path.stem}_proba.csv")
    lines = ["guid,tag," + ",".join(f"p_{name}" for name in LABELS) + "\n"]
    lines += [f"{ex.guid},{tag}," + ",".join(f"{p:.6f}" for p in row) + "\n"
              for ex, tag, row in zip(examples, tags, probs)]
    atomic_write_text(proba_path, "".join(lines))
    return proba_path


def _is_ours(path: Path) -> bool:
    """Whether an existing file is a prediction, probability or skipped-rows file this module wrote."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return first in ("guid,tag", "guid,location,problem,fix") or first.startswith("guid,tag,p_")


def prediction_path(out: str | Path, run_dir: str | Path, data_root: str | Path) -> Path:
    """Where ``mmsent predict --out`` may write: a folder gets ``predictions.txt`` inside it; refused (ValueError)
    inside the dataset folder or the run's ``models/``, and over any existing file (or companion ``_proba.csv`` /
    ``_skipped.csv``) that is not a prediction file written by mmsent."""
    path = Path(out).expanduser()
    if path.is_dir():
        path = path / "predictions.txt"
    resolved = path.resolve()
    for folder, what in ((Path(data_root), "the dataset folder"), (Path(run_dir) / "models", "the run's models")):
        if resolved.is_relative_to(folder.expanduser().resolve()):
            raise ValueError(f"--out {out}: inside {what} ({folder}); write the predictions elsewhere, e.g. --out "
                             f"{Path(run_dir) / 'predictions.txt'}")
    for target in (path, path.with_name(f"{path.stem}_proba.csv"), path.with_name(f"{path.stem}_skipped.csv")):
        if target.exists() and not (target.is_file() and _is_ours(target)):
            raise ValueError(f"--out {out}: would overwrite {target}, which is not a prediction file written by "
                             "mmsent; choose another path")
    return path


def read_predictions(path: str | Path) -> list[tuple[str, str]]:
    """Reads a ``guid,tag`` file back."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0]] != ["guid", "tag"]:
        raise ValueError(f"{path}: first line must be the header 'guid,tag'")
    return [(r[0], r[1]) for r in rows[1:] if r]
