"""Streaming batch prediction over a corpus of any size (``mmsent predict RUN_DIR --input FILE``).

The corpus is a manifest: CSV, JSONL or Parquet with the columns ``id``, ``text`` (or ``text_path``) and ``image``
(or ``image_path``); relative paths are resolved against the manifest's folder. Rows are read, encoded and
predicted in chunks, so memory stays flat whatever the corpus size, and every chunk's results are appended to a
JSONL file (``id``, ``label``, one probability per class; or ``id`` and ``error`` for a row that cannot be read)
and flushed. A rerun skips the ids already in the output, so a killed job resumes where it stopped without losing or
repeating a row; ``shard=(i, n)`` keeps every n-th row starting at row i, for splitting a corpus by hand.

The output stays plain JSONL; the sidecar ``<name>.mmsent.json`` (see :mod:`mmsent.io`) marks it as mmsent's and
commits it: after each chunk is written and synced, the marker records the output's size and SHA-256. A rerun
resumes only a file whose committed part still matches, and cuts only what lies past it (what a kill left: a chunk
written but not yet committed, a torn last line); any other file is never truncated or appended to. One process
writes an output at a time (:func:`mmsent.io.output_lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mmsent.config import RunConfig
from mmsent.data.images import ImageLoadError
from mmsent.data.manifest import ManifestError, Row, count_rows, read_manifest
from mmsent.data.text import TextError, check_text, read_text_file
from mmsent.inference import NonFiniteError, RunPredictor
from mmsent.io import MARKER_SUFFIX, OutputError, marker_path, output_lock, read_marker, same_file, write_marker
from mmsent.run_files import MANIFEST_FILE

logger = logging.getLogger("mmsent.stream")

_OUTPUT_KEYS = {"id", "label", "error"}  # and one p_<label> per class of the run


_KIND = "predict --input JSONL"  # the marker's kind for these outputs


class StreamOutput:
    """A JSONL output opened for appending: the ids it already answers, and each chunk appended, synced, then
    committed in its marker. Open it with the output's lock held.

    Args:
        out: the JSONL file; created (with its marker) at the first chunk if absent, so that a job failing before
            any row is answered leaves nothing behind.
        info: recorded in the marker for the reader (run, manifest, shard).

    Raises:
        OutputError: if ``out`` exists and is not an output of this module, or changed since it was last committed
            (it is then left untouched).
    """

    def __init__(self, out: Path, chunk_size: int | None = None, **info: str) -> None:
        self.out, self.info, self.chunk_size = out, info, chunk_size
        self.done: set[str] = set()
        self.digest, self.size = hashlib.sha256(), 0
        self.fh: BinaryIO | None = None
        if os.path.lexists(out):
            self._resume()
            self.fh = out.open("ab")

    def create(self) -> None:
        """Creates the output if it is absent (an empty shard still gets its empty file)."""
        if self.fh is None:
            self._commit()  # the marker first: a kill between the two leaves no output, so nothing to mistake
            self.fh = self.out.open("xb")

    def append(self, lines: list[dict]) -> None:
        """Appends one chunk's lines; once they are on disk, the marker covers them."""
        self.create()
        assert self.fh is not None
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        self.fh.write(data)
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.digest.update(data)
        self.size += len(data)
        self._commit()

    def close(self) -> None:
        """Closes the file (everything appended is already committed)."""
        if self.fh is not None:
            self.fh.close()

    def _commit(self) -> None:
        write_marker(self.out, _KIND, {self.out.name: [{"size": self.size, "sha256": self.digest.hexdigest()}]},
                     **self.info)

    def _resume(self) -> None:
        """Reads the ids of the committed part and cuts what lies past it (what a kill left)."""
        out = self.out
        states = _committed_states(out)
        _check_same_job(out, self.info)
        changed = OutputError(f"{out} has changed since mmsent wrote it (it no longer matches {out.name}"
                              f"{MARKER_SUFFIX}), so it is not resumed; it was left untouched: choose another --out, "
                              "or delete it yourself")
        ids = []
        with out.open("r+b") as fh:
            while self.size < states[0]["size"] and (line := fh.readline()):
                self.digest.update(line)
                self.size += len(line)
                ids.append(_output_id(line))
            if (self.size, self.digest.hexdigest()) != (states[0]["size"], states[0]["sha256"]) or None in ids:
                raise changed
            if fh.read(1):  # past the last commit: whole output lines and a torn one at the end, from a kill
                fh.seek(self.size)
                tail = fh.read().split(b"\n")
                whole, torn = tail[:-1], tail[-1]
                tail_ids = [_output_id(line + b"\n") for line in whole]
                # a kill leaves at most one chunk of new records, then a torn start of one: anything else (a line
                # that is no record, an id already answered, more than a chunk) was put there by someone else
                if (None in tail_ids or len(set(tail_ids)) != len(tail_ids) or set(tail_ids) & set(ids)
                        or (self.chunk_size is not None and len(tail_ids) > self.chunk_size)
                        or not (_RECORD_START.startswith(torn) or torn.startswith(_RECORD_START))):
                    raise OutputError(f"{out} has lines after what mmsent committed in {out.name}{MARKER_SUFFIX} "
                                      "that are not what a killed run leaves, so it is not resumed; it was left "
                                      "untouched: choose another --out, or delete it yourself")
                logger.info("%s: cutting what was written after its last committed chunk (a killed run); those "
                            "rows are predicted again", out)
                fh.truncate(self.size)
        self.done = set(ids)


_RECORD_START = b'{"id": '  # how every line json.dumps writes for a record begins


def job_info(run_dir: str | Path, manifest: str | Path, shard: tuple[int, int]) -> dict[str, str]:
    """What the marker records of the job writing an output, compared on resume: the run and manifest (resolved
    paths), the run's ``checksums.sha256`` digest (when it has one) and the shard."""
    from mmsent.fingerprint import file_digest

    info = {"run": str(Path(run_dir).resolve()), "manifest": str(Path(manifest).resolve()),
            "shard": f"{shard[0]}/{shard[1]}"}
    checksums = Path(run_dir) / MANIFEST_FILE
    if checksums.is_file():
        info["run_checksums"] = file_digest(checksums)
    return info


def _check_same_job(out: Path, info: dict[str, str]) -> None:
    """Refuses to resume ``out`` for another job than the one its marker records (a field the marker lacks, from
    an older mmsent, is unknown and not compared).

    Raises:
        OutputError: naming the differing field, both values and the fix (the output is left untouched).
    """
    marker = read_marker(out, _KIND) or {}
    for field, new in info.items():
        old = marker.get(field)
        if old is None:
            continue
        same = (str(Path(old).resolve()) == new) if field in ("run", "manifest") else (str(old) == new)
        if not same:
            raise OutputError(f"{out} was written by another job: its marker {out.name}{MARKER_SUFFIX} records "
                              f"{field} {old!r}, this one has {field} {new!r}; resuming would mix the answers of "
                              "two jobs in one file, so it was left untouched: choose a new --out, or delete "
                              f"{out} and its marker yourself")


def _committed_states(out: Path) -> list[dict[str, Any]]:
    """What the marker of an existing output records of it (one ``{"size", "sha256"}``); cheap, no lock needed.

    Raises:
        OutputError: if ``out`` is not a file with a marker of this module beside it (it is left untouched).
    """
    marker = read_marker(out, _KIND)
    states = marker["files"].get(out.name, []) if marker else []
    if not (out.is_file() and len(states) == 1 and isinstance(states[0], dict)
            and isinstance(states[0].get("size"), int) and isinstance(states[0].get("sha256"), str)):
        raise OutputError(f"{out} exists and is not a prediction file written by mmsent predict --input (no "
                          f"{out.name}{MARKER_SUFFIX} beside it says so); it was left untouched: choose another "
                          "--out, or delete it yourself")
    return states


def _check_marker_free(out: Path) -> None:
    """Before a new output is created: its marker path must be free, or hold a marker of this module's outputs.

    Raises:
        OutputError: naming the file at the marker path that mmsent did not write for this output (left untouched).
    """
    marker = marker_path(out)
    if os.path.lexists(marker) and read_marker(out, _KIND) is None:  # read_marker refuses one mmsent did not write
        raise OutputError(f"{marker} exists and is not the marker of a prediction file written by mmsent predict "
                          "--input; it was left untouched: choose another --out, or delete it yourself")


def _output_id(line: bytes) -> str | None:
    """The id of a whole line that is one record as :class:`ChunkPredictor` answers; None for anything else."""
    try:
        rec = json.loads(line) if line.endswith(b"\n") else None
    except ValueError:
        return None
    ok = isinstance(rec, dict) and "id" in rec and all(k in _OUTPUT_KEYS or k.startswith("p_") for k in rec)
    return str(rec["id"]) if ok else None


@dataclass
class StreamResult:
    """What :func:`predict_stream` did."""

    out: Path
    predicted: int
    errors: int
    skipped_done: int
    seconds: float


class ChunkPredictor:
    """A finished run's :class:`~mmsent.inference.RunPredictor` answering chunks of manifest rows, with each row's
    unreadable image or text captured as that row's error: what the local loop and each Ray actor hold.

    Args:
        run_dir: a finished run (its predictor, encoders and cleaning are used).
        device: where the encoders and models run.
        verify: check the run against its ``checksums.sha256`` (False: ``--no-verify``, with a warning).
        cfg: the run's config with a user's runtime settings (:func:`~mmsent.config.load_run_config`).
    """

    def __init__(self, run_dir: str | Path, device: str = "cpu", verify: bool = True,
                 cfg: RunConfig | None = None) -> None:
        self.predictor = RunPredictor(run_dir, device=device, verify=verify, cfg=cfg)
        self.labels = self.predictor.labels
        self.decoders = ThreadPoolExecutor(2, thread_name_prefix="mmsent-decode")  # decoding overlaps itself

    def _crop(self, row: Row) -> np.ndarray:
        return self.predictor.crop(row.image, name=str(row.image))

    @staticmethod
    def _text(row: Row) -> str:
        """The row's text, held to the text rule the server applies (no empty, invisible-only or over-long text)."""
        if row.text is not None:
            return check_text(row.text, "text")
        assert row.text_path is not None
        # read_text_file: a FIFO is refused unopened, a file too large for the limit unread
        return check_text(read_text_file(row.text_path, str(row.text_path))[0], str(row.text_path))

    def __call__(self, rows: list[Row]) -> list[dict]:
        """One output record per row, in order: ``id``, ``label``, ``p_<label>``; or ``id`` and ``error`` for a row
        whose image or text cannot be read.

        Raises:
            ValueError: if the models give non-finite probabilities (nothing of the chunk is returned).
        """
        crops = list(self.decoders.map(_capture(self._crop), rows))
        texts = [_capture(self._text)(r) for r in rows]
        lines: dict[int, dict] = {}
        for i, row in enumerate(rows):
            problem = crops[i] if isinstance(crops[i], Exception) else texts[i]
            if isinstance(problem, Exception):
                lines[i] = {"id": row.id, "error": f"{row.where}: {problem}"}
        good = [i for i in range(len(rows)) if i not in lines]
        if good:
            try:
                probs, labels = self.predictor.classify([crops[i] for i in good], [texts[i] for i in good])
            except NonFiniteError as exc:
                raise NonFiniteError(f"{exc}; nothing more was written") from exc
            for i, label, p in zip(good, labels, probs):
                lines[i] = {"id": rows[i].id, "label": label,
                            **{f"p_{name}": round(float(v), 6) for name, v in zip(self.labels, p)}}
        return [lines[i] for i in range(len(rows))]


def predict_stream(run_dir: str | Path, manifest: str | Path, out: str | Path, *, chunk_size: int = 256,
                   shard: tuple[int, int] = (0, 1), progress: bool = True, device: str = "cpu",
                   verify: bool = True, cfg: RunConfig | None = None) -> StreamResult:
    """Predicts every row of ``manifest`` (of shard ``i`` of ``n``) with a finished run and appends to ``out``.

    Everything about ``out`` is checked before the run's models load: it must not be the manifest, nor a file
    mmsent did not write; a row naming it as its text or image stops the job before that row's chunk is written.

    Args:
        run_dir: a finished run (its predictor, encoders and cleaning are used).
        manifest: CSV / JSONL / Parquet (see the module docstring).
        out: JSONL output; rows already in it are skipped (resume).
        chunk_size: rows read, encoded and written together (memory is bounded by it).
        shard: ``(i, n)``: only rows ``i, i + n, i + 2n, ...`` of the manifest.
        verify: check the run against its ``checksums.sha256`` (False: ``--no-verify``, with a warning).
        cfg: the run's config with a user's runtime settings (:func:`~mmsent.config.load_run_config`).

    Raises:
        OutputError: (a ValueError) for an ``out`` that may not be written, or that another process is writing.
    """
    from tqdm.auto import tqdm

    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    out = Path(out)
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    if same_file(out, manifest):
        raise OutputError(f"--out {out} is the manifest itself; write the predictions to another file")
    info = job_info(run_dir, manifest, shard)
    if os.path.lexists(out):
        _committed_states(out)  # a file that is not ours is refused before its lock file is made beside it
        _check_same_job(out, info)
    else:
        _check_marker_free(out)
    if out.suffix.lower() != ".jsonl":
        raise OutputError(f"--out {out}: predict --input writes JSONL only (one record a line); name the output "
                          f"with the .jsonl suffix, e.g. --out {out.with_suffix('.jsonl')}")
    with output_lock(out):
        if not os.path.lexists(out):
            _check_marker_free(out)
        output = StreamOutput(out, chunk_size, **info)
        try:
            predictor = ChunkPredictor(run_dir, device, verify, cfg)  # only now: every refusal above is cheap
            total = count_rows(manifest)
            total = None if total is None else len(range(index, total, count))
            t0 = time.perf_counter()
            with tqdm(total=total, disable=not progress, unit="row", desc="predict", dynamic_ncols=True) as bar:
                predicted, errors, skipped = _stream_rows(predictor, read_manifest(manifest), output, chunk_size,
                                                          shard, bar)
            output.create()
        finally:
            output.close()
    seconds = time.perf_counter() - t0
    logger.info("predicted %d row(s), %d unreadable (written with 'error'), %d already done, in %.1fs -> %s",
                predicted, errors, skipped, seconds, out)
    return StreamResult(out, predicted, errors, skipped, seconds)


def _stream_rows(predictor: ChunkPredictor, rows: Iterator[Row], output: StreamOutput, chunk_size: int,
                 shard: tuple[int, int], bar: Any) -> tuple[int, int, int]:
    """Predicts and appends the shard's rows not yet in ``output``, chunk by chunk -> (predicted, errors, skipped).

    Raises:
        ManifestError: for an id seen twice.
        OutputError: for a row whose text or image is the output file.
    """
    index, count = shard
    counts = {"label": 0, "error": 0}
    skipped = 0
    seen: set[str] = set()
    chunk: list[Row] = []

    def flush() -> None:
        lines = predictor(chunk)
        output.append(lines)
        for key in counts:
            counts[key] += sum(key in line for line in lines)
        bar.update(len(chunk))
        chunk.clear()

    for n, row in enumerate(rows):
        if n % count != index:
            continue
        if row.id in seen:
            raise ManifestError(f"{row.where}: id {row.id!r} appears twice; ids must be unique")
        seen.add(row.id)
        for what, path in (("text", row.text_path), ("image", row.image)):
            if path is not None and same_file(path, output.out):
                raise OutputError(f"{row.where}: names --out {output.out} as its {what}; a file cannot be both an "
                                  "input and the output: choose another --out")
        if row.id in output.done:
            skipped += 1
            bar.update(1)
            continue
        chunk.append(row)
        if len(chunk) >= chunk_size:
            flush()
    if chunk:
        flush()
    return counts["label"], counts["error"], skipped


def _capture(fn):
    """``fn`` returning its bad-input exception instead of raising it (the row is then written with an error)."""

    def wrapped(row: Row):
        if row.error is not None:  # the manifest already found the row unusable: nothing of it is read
            return ManifestError(row.error)
        try:
            return fn(row)
        except (ImageLoadError, TextError, OSError) as exc:
            return exc

    return wrapped
