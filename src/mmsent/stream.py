"""Streaming batch prediction over a corpus of any size (``mmsent predict RUN_DIR --input FILE``).

The corpus is a manifest: CSV, JSONL or Parquet with the columns ``id``, ``text`` (or ``text_path``) and ``image``
(or ``image_path``); relative paths are resolved against the manifest's folder. Rows are read, encoded and
predicted in chunks, so memory stays flat whatever the corpus size, and every chunk's results are appended to a
JSONL file (``id``, ``label``, one probability per class; or ``id`` and ``error`` for a row that cannot be read)
and flushed. A rerun skips the ids already in the output, so a killed job resumes where it stopped without losing or
repeating a row; ``shard=(i, n)`` keeps every n-th row starting at row i, for splitting a corpus by hand.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmsent.data.images import ImageLoadError
from mmsent.data.manifest import ManifestError, Row, count_rows, read_manifest
from mmsent.data.text import TextCleaner, TextDecodeError, decode_text
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.labels import LABELS
from mmsent.training.ensemble import decide

logger = logging.getLogger("mmsent.stream")

_OUTPUT_KEYS = {"id", "label", "error"} | {f"p_{name}" for name in LABELS}


def done_ids(out: Path) -> set[str]:
    """Ids already answered in an output file. Only a last line cut off by a kill (no newline) is dropped, and its
    chunk is redone.

    Raises:
        ValueError: if ``out`` exists but is not an output of this module (it is then left untouched).
    """
    if not out.exists():
        return set()
    refuse = ValueError(f"{out} exists and is not a prediction file written by mmsent predict --input; choose "
                        "another --out (it was left untouched)")
    if not out.is_file():
        raise refuse
    ids, keep = set(), 0
    with out.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # the partial tail of a kill
            try:
                rec = json.loads(line)
            except ValueError:
                raise refuse from None
            if not isinstance(rec, dict) or "id" not in rec or not set(rec) <= _OUTPUT_KEYS:
                raise refuse
            ids.add(str(rec["id"]))
            keep += len(line)
    if keep != out.stat().st_size:  # cut the partial tail so appending starts on a clean line
        with out.open("r+b") as fh:
            fh.truncate(keep)
    return ids


@dataclass
class StreamResult:
    """What :func:`predict_stream` did."""

    out: Path
    predicted: int
    errors: int
    skipped_done: int
    seconds: float


class ChunkPredictor:
    """A finished run loaded once, answering chunks of manifest rows: what the local loop and each Ray actor hold.

    Args:
        run_dir: a finished run (its predictor, encoders and cleaning are used).
        device: where the encoders and models run.
    """

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        from mmsent.run_folder import load_run_models

        self.run = load_run_models(run_dir, device=device)
        self.image_encoder, self.text_encoder = self.run.encoders(device)
        self.cleaner = TextCleaner(self.run.cfg.cleaning)
        self.device = device
        self.decoders = ThreadPoolExecutor(2, thread_name_prefix="mmsent-decode")  # decoding overlaps itself

    def _crop(self, row: Row) -> np.ndarray:
        image = self.image_encoder.open(row.image, self.run.cfg.data.max_image_pixels, name=str(row.image))
        return self.image_encoder.crop(image)

    @staticmethod
    def _text(row: Row) -> str:
        if row.text is not None:
            return row.text
        assert row.text_path is not None
        return decode_text(row.text_path.read_bytes(), str(row.text_path))[0]

    def __call__(self, rows: list[Row]) -> list[dict]:
        """One output record per row, in order: ``id``, ``label``, ``p_<label>``; or ``id`` and ``error`` for a row
        whose image or text cannot be read.

        Raises:
            ValueError: if the models give non-finite probabilities (nothing of the chunk is returned).
        """
        from mmsent.pipeline import ensemble_proba

        crops = list(self.decoders.map(_capture(self._crop), rows))
        texts = [_capture(self._text)(r) for r in rows]
        good = [i for i in range(len(rows)) if not isinstance(crops[i], Exception)
                and not isinstance(texts[i], Exception)]
        lines: dict[int, dict] = {}
        for i, row in enumerate(rows):
            problem = crops[i] if isinstance(crops[i], Exception) else texts[i]
            if isinstance(problem, Exception):
                lines[i] = {"id": row.id, "error": f"{row.where}: {problem}"}
        if good:
            batch_size = self.run.cfg.encoders.batch_size
            pixels = torch.from_numpy(np.stack([crops[i] for i in good]))
            # the network in the run's batch size: its activations, not the chunk, bound the memory
            parts = [self.image_encoder.encode_pixels(b) for b in pixels.split(batch_size)]
            pooled, tokens = torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
            image = ModalityFeatures(pooled, tokens, torch.ones(tokens.shape[:2], dtype=torch.bool))
            text = self.text_encoder.encode([self.cleaner.clean(texts[i]) for i in good], batch_size=batch_size)
            probs = ensemble_proba(self.run.models, FeatureSet([rows[i].id for i in good], image, text), self.device)
            if not np.isfinite(probs).all():
                raise ValueError("the run's models gave non-finite probabilities; nothing more was written")
            for i, label, p in zip(good, decide(probs, self.run.class_weights), probs):
                lines[i] = {"id": rows[i].id, "label": LABELS[label],
                            **{f"p_{name}": round(float(v), 6) for name, v in zip(LABELS, p)}}
        return [lines[i] for i in range(len(rows))]


def predict_stream(run_dir: str | Path, manifest: str | Path, out: str | Path, *, chunk_size: int = 256,
                   shard: tuple[int, int] = (0, 1), progress: bool = True, device: str = "cpu") -> StreamResult:
    """Predicts every row of ``manifest`` (of shard ``i`` of ``n``) with a finished run and appends to ``out``.

    Args:
        run_dir: a finished run (its predictor, encoders and cleaning are used).
        manifest: CSV / JSONL / Parquet (see the module docstring).
        out: JSONL output; rows already in it are skipped (resume).
        chunk_size: rows read, encoded and written together (memory is bounded by it).
        shard: ``(i, n)``: only rows ``i, i + n, i + 2n, ...`` of the manifest.
    """
    from tqdm.auto import tqdm

    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    out = Path(out)
    if out.resolve() == Path(manifest).resolve():
        raise ValueError(f"--out {out} is the manifest itself; write the predictions to another file")
    predictor = ChunkPredictor(run_dir, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    finished = done_ids(out)
    total = count_rows(manifest)
    total = None if total is None else len(range(index, total, count))
    t0 = time.perf_counter()
    predicted = errors = skipped = 0
    seen: set[str] = set()

    def flush(rows: list[Row], fh) -> None:
        nonlocal predicted, errors
        lines = predictor(rows)
        fh.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())
        errors += sum("error" in line for line in lines)
        predicted += sum("label" in line for line in lines)

    with out.open("a", encoding="utf-8") as fh, \
            tqdm(total=total, disable=not progress, unit="row", desc="predict", dynamic_ncols=True) as bar:
        chunk: list[Row] = []
        for n, row in enumerate(read_manifest(manifest)):
            if n % count != index:
                continue
            if row.id in seen:
                raise ManifestError(f"{row.where}: id {row.id!r} appears twice; ids must be unique")
            seen.add(row.id)
            if row.id in finished:
                skipped += 1
                bar.update(1)
                continue
            chunk.append(row)
            if len(chunk) >= chunk_size:
                flush(chunk, fh)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            flush(chunk, fh)
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    logger.info("predicted %d row(s), %d unreadable (written with 'error'), %d already done, in %.1fs -> %s",
                predicted, errors, skipped, seconds, out)
    return StreamResult(out, predicted, errors, skipped, seconds)


def _capture(fn):
    """``fn`` returning its bad-input exception instead of raising it (the row is then written with an error)."""

    def wrapped(row: Row):
        try:
            return fn(row)
        except (ImageLoadError, TextDecodeError, OSError) as exc:
            return exc

    return wrapped
