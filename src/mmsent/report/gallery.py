"""The report's gallery of the chosen ensemble's most confident validation errors, with their explanations."""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.config import CleaningConfig, load_config
from mmsent.data.images import ImageLoadError, load_image, load_image_bytes
from mmsent.data.lab_format import GUID_PATTERN
from mmsent.data.manifest import ManifestError, Row, read_records, to_row
from mmsent.data.text import TextCleaner, TextDecodeError, decode_text
from mmsent.report.run_data import RunData
from mmsent.run_files import CONFIG_FILE
from mmsent.training.ensemble import decide

log = logging.getLogger("mmsent.report")

@dataclass
class GalleryItem:
    """One misclassified validation row; ``probabilities`` are in the run's class order; ``thumbnail`` and
    ``overlay`` (the heat-map) are data URIs."""

    guid: str
    gold: str
    predicted: str
    probabilities: dict[str, float]
    text: str = ""
    thumbnail: str | None = None
    overlay: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # RunPredictor's: modality_ablation, tokens, ...
    notes: list[str] = field(default_factory=list)


def confident_errors(gold: np.ndarray, probs: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` wrong rows (labels by :func:`decide`) with the highest probability of the predicted
    class, most confident first."""
    predicted = decide(probs)
    wrong = np.flatnonzero(predicted != gold)
    return wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:k].tolist()


def thumbnail_uri(source: Path | str, side: int = 180) -> str:
    """A JPEG data URI of an image file (or a ``data:`` URI) shrunk to fit ``side x side``."""
    if isinstance(source, str) and source.startswith("data:"):
        img = load_image_bytes(base64.b64decode(source.partition(",")[2]), name="overlay")
    else:
        img = load_image(source, min_side=side)
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def table_rows(table: Path, ids: set[str]) -> dict[str, Row]:
    """The rows of a table-format dataset with the given ids (rows that cannot be read are left out)."""
    rows = {}
    for where, record in read_records(table):
        try:
            row = to_row(where, record, table.parent)
        except ManifestError:
            continue
        if row.id in ids:
            rows[row.id] = row
    return rows


def build_gallery(data: RunData, k: int = 12, explain: bool = True,
                  predictor: Any = None) -> tuple[list[GalleryItem], list[str]]:
    """The ``k`` most confident errors of the chosen design's seed ensemble, and notes on what cannot be shown.

    ``explain`` adds explanations from ``predictor`` (default: one built from the run); if they fail, a note says why.
    """
    chosen = data.chosen_model
    if not chosen or chosen not in data.validation:
        return [], ["no validation probabilities of the chosen model; no error gallery"]
    probs = data.validation[chosen].ensemble
    predicted = decide(probs)
    names = data.labels
    items = [GalleryItem(data.guids[i], names[int(data.gold[i])], names[int(predicted[i])],
                         dict(zip(names, map(float, probs[i]))))
             for i in confident_errors(data.gold, probs, k)]
    if not items:
        return [], []

    config = data.run_dir / CONFIG_FILE
    cleaner = TextCleaner(load_config(config).cleaning if config.is_file() else CleaningConfig())
    root = data.data_root
    notes = [] if root else ["the run does not record its data folder; no thumbnails or texts"]
    # a table names each row's files (and may hold its text); the lab layout is data/{guid}.jpg|txt
    table = table_rows(root, {item.guid for item in items}) if root and root.is_file() else None
    ready: list[tuple[GalleryItem, Path, str]] = []  # the rows with an image, with their raw text
    for item in items:
        raw = ""
        if root and not GUID_PATTERN.fullmatch(item.guid):  # a tampered file: never read outside data/
            item.notes.append("guid is not a plain file name; its files are not read")
        elif root:
            row = table.get(item.guid) if table is not None else None
            if table is not None and row is None:
                item.notes.append("row not found in the table")
                continue
            image_path = row.image if row else root / "data" / f"{item.guid}.jpg"
            text_path = (row.text_path if row else root / "data" / f"{item.guid}.txt")
            try:
                raw = row.text if row and row.text is not None else \
                    decode_text(text_path.read_bytes(), str(text_path))[0]
            except (OSError, TextDecodeError) as exc:
                item.notes.append(f"text unavailable: {exc}")
            try:
                item.thumbnail = thumbnail_uri(image_path)
                ready.append((item, image_path, raw))
            except ImageLoadError as exc:
                item.notes.append(f"image unavailable: {exc.reason}")
        item.text = cleaner(raw)

    if explain:
        try:
            if predictor is None:
                from mmsent.inference import RunPredictor  # local: loads torch models, only needed with explanations

                predictor = RunPredictor(data.run_dir, model_name=chosen)
            paths, texts = [p for _, p, _ in ready], [t for _, _, t in ready]
            results = predictor.predict(paths, texts, overlay=True) if ready else []
            for (item, _, _), res in zip(ready, results):
                item.evidence = res["evidence"]
                # JPEG thumbnails keep a 12-card report at a few hundred kB instead of megabytes of PNG.
                png = item.evidence.get("image_overlay_png")
                item.overlay = thumbnail_uri(png, side=520) if png else None  # the crop, the map and its bar
                if res["label"] != item.predicted:
                    item.notes.append(f"re-encoded from the raw files the ensemble predicts {res['label']} (the run "
                                      "used cached features); the explanation is for that prediction")
        except Exception as exc:  # noqa: BLE001 -- the gallery is still useful without explanations
            log.warning("report: explanations skipped (%s: %s)", type(exc).__name__, exc)
            notes.append(f"explanations unavailable ({type(exc).__name__}: {exc})")
    return items, notes
