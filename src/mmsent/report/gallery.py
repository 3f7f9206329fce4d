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
from mmsent.data.text import TextCleaner, TextDecodeError, decode_text
from mmsent.labels import LABELS
from mmsent.report.run_data import RunData

log = logging.getLogger("mmsent.report")

THUMB_SIDE = 180


@dataclass
class GalleryItem:
    """One misclassified validation row."""

    guid: str
    gold: str
    predicted: str
    probabilities: dict[str, float]
    text: str = ""
    thumbnail: str | None = None  # data URI
    overlay: str | None = None  # data URI: the explanation heat-map over the model's crop
    image_map: str | None = None
    tokens: list[dict[str, Any]] | None = None
    ablation: dict[str, float] | None = None
    dominant: str | None = None
    notes: list[str] = field(default_factory=list)


def confident_errors(gold: np.ndarray, probs: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` wrong rows with the highest predicted-class probability, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != gold)
    return wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:k].tolist()


def thumbnail_uri(source: Path | str, side: int = THUMB_SIDE) -> str:
    """A JPEG data URI of an image file (or a ``data:`` URI) shrunk to fit ``side x side``."""
    if isinstance(source, str) and source.startswith("data:"):
        img = load_image_bytes(base64.b64decode(source.partition(",")[2]), name="overlay")
    else:
        img = load_image(source, min_side=side)
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_gallery(data: RunData, k: int = 12, explain: bool = True, predictor: Any = None) -> tuple[list[GalleryItem],
                                                                                                  list[str]]:
    """The ``k`` most confident errors of the chosen design's seed ensemble.

    Args:
        data: the run's artifacts.
        k: how many rows.
        explain: add explanations (loads the run's encoders and models once; skipped with a note if they fail).
        predictor: a loaded :class:`~mmsent.inference.RunPredictor` to use instead of building one.

    Returns:
        The items, and notes on what could not be shown.
    """
    notes: list[str] = []
    chosen = data.chosen_model
    if not chosen or chosen not in data.validation:
        return [], ["no validation probabilities of the chosen model; no error gallery"]
    probs = data.validation[chosen].ensemble
    idx = confident_errors(data.gold, probs, k)
    items = [GalleryItem(data.guids[i], LABELS[int(data.gold[i])], LABELS[int(probs[i].argmax())],
                         {n: float(p) for n, p in zip(LABELS, probs[i])}) for i in idx]
    if not items:
        return [], notes

    cleaning = CleaningConfig()
    if (data.run_dir / "config.yaml").is_file():
        cleaning = load_config(data.run_dir / "config.yaml").cleaning
    cleaner = TextCleaner(cleaning)
    root = data.data_root
    paths: list[Path | None] = []
    raw_texts: list[str] = []
    for item in items:
        image_path = root / "data" / f"{item.guid}.jpg" if root else None
        text_path = root / "data" / f"{item.guid}.txt" if root else None
        raw = ""
        try:
            raw = decode_text(text_path.read_bytes(), str(text_path))[0] if text_path else ""
        except (OSError, TextDecodeError) as exc:
            item.notes.append(f"text unavailable: {exc}")
        item.text = cleaner(raw)
        raw_texts.append(raw)
        try:
            item.thumbnail = thumbnail_uri(image_path) if image_path else None
        except ImageLoadError as exc:
            item.notes.append(f"image unavailable: {exc.reason}")
        paths.append(image_path if item.thumbnail else None)
    if root is None:
        notes.append("the run does not record its data folder; no thumbnails or texts")

    if explain:
        try:
            _add_explanations(data, items, paths, raw_texts, predictor)
        except Exception as exc:  # noqa: BLE001 -- the gallery is still useful without explanations
            log.warning("report: explanations skipped (%s: %s)", type(exc).__name__, exc)
            notes.append(f"explanations unavailable ({type(exc).__name__}: {exc})")
    return items, notes


def _add_explanations(data: RunData, items: list[GalleryItem], paths: list[Path | None], texts: list[str],
                      predictor: Any) -> None:
    if predictor is None:
        from mmsent.inference import RunPredictor  # local: loads torch models, only needed with explanations

        predictor = RunPredictor(data.run_dir, model_name=data.chosen_model)
    ready = [(item, path, text) for item, path, text in zip(items, paths, texts) if path is not None]
    if not ready:
        return
    results = predictor.predict([p for _, p, _ in ready], [t for _, _, t in ready], overlay=True)
    for (item, _, _), res in zip(ready, results):
        ev = res["evidence"]
        # JPEG thumbnails keep a 12-card report at a few hundred kB instead of megabytes of PNG.
        item.overlay = thumbnail_uri(ev["image_overlay_png"]) if ev.get("image_overlay_png") else None
        item.image_map = ev.get("image_map")
        item.tokens = ev.get("tokens")
        item.ablation = ev.get("modality_ablation")
        item.dominant = ev.get("dominant_modality")
        if res["label"] != item.predicted:
            item.notes.append(f"re-encoded from the raw files the ensemble predicts {res['label']} (the run used "
                              "cached features); the explanation is for that prediction")
