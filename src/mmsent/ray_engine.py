"""Batch prediction as a Ray Data pipeline (``mmsent predict RUN --input FILE --engine ray``).

The manifest is read by Ray (``read_csv`` / ``read_json`` / ``read_parquet``, split into blocks), each block goes in
chunks through a pool of actors that each hold the loaded run (:class:`~mmsent.stream.ChunkPredictor`: the same
code as the one-process path, so the same answers), and the results are written as Parquet files into a folder.
On a local Ray instance by default; ``address`` joins a running cluster (``ray start --head`` on one machine,
``ray start --address=HEAD:6379`` on the others, each able to read the manifest's paths).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsent.config import RunConfig
from mmsent.data.manifest import MANIFEST_SUFFIXES, ManifestError, to_row
from mmsent.io import output_lock
from mmsent.labels import LabelSet


def output_columns(labels: LabelSet) -> tuple[str, ...]:
    """The columns of every part file: ``id``, ``label``, one ``p_<label>`` per class of the run, ``error``."""
    return ("id", "label", *(f"p_{name}" for name in labels), "error")


def _output_schema(columns: tuple[str, ...]) -> Any:
    """Strings, and float64 probabilities (pyarrow is imported only when Ray runs)."""
    import pyarrow as pa

    return pa.schema([(c, pa.float64() if c.startswith("p_") else pa.string()) for c in columns])


@dataclass
class RayResult:
    """What :func:`predict_with_ray` did."""

    out: Path
    predicted: int
    errors: int
    seconds: float
    actors: int


class _RunActor:
    """One Ray actor: the run loaded once, then chunk after chunk of manifest records answered."""

    def __init__(self, run_dir: str, base: str, name: str, device: str, verify: bool = True,
                 cfg: RunConfig | None = None) -> None:
        from mmsent.stream import ChunkPredictor

        self.predict = ChunkPredictor(run_dir, device, verify=verify, cfg=cfg)
        self.base, self.name = Path(base), name
        self.columns = output_columns(self.predict.labels)

    def __call__(self, batch: dict[str, Any]) -> Any:
        records = [dict(zip(batch, values)) for values in zip(*batch.values())]
        answers: dict[int, dict] = {}
        rows, places = [], []
        for i, rec in enumerate(records):
            rec = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)  # a missing cell
                   for k, v in rec.items()}
            try:
                rows.append(to_row(f"{self.name}:id {rec.get('id')}", rec, self.base))
                places.append(i)
            except ManifestError as exc:
                answers[i] = {"id": str(rec.get("id") or ""), "error": str(exc)}
        for i, line in zip(places, self.predict(rows) if rows else []):
            answers[i] = line
        import pyarrow as pa

        # a fixed schema: a part file whose rows all succeeded must not type "error" as null (the folder would not
        # read back as one table)
        return pa.table({column: [answers[i].get(column) for i in range(len(records))] for column in self.columns},
                        schema=_output_schema(self.columns))


# Reading and writing hold no CPU of their own: with one actor per CPU (the natural setting) they would otherwise
# wait for a CPU that the actors never give back, and the pipeline would stall.
_IO_TASKS = {"num_cpus": 0}


def _read(manifest: Path) -> Any:
    import ray.data

    suffix = manifest.suffix.lower()
    if suffix == ".csv":
        # every column as text: ids like 007 keep their zeros, as in the one-process reader
        import pyarrow.csv as pacsv

        with manifest.open(encoding="utf-8-sig", newline="") as fh:  # the header only: the corpus may be huge
            names = next(csv.reader(fh), [])
        options = pacsv.ConvertOptions(column_types={name.strip(): "string" for name in names})
        return ray.data.read_csv(str(manifest), convert_options=options, ray_remote_args=_IO_TASKS)
    if suffix == ".jsonl":
        return ray.data.read_json(str(manifest), lines=True, ray_remote_args=_IO_TASKS)
    if suffix == ".parquet":
        return ray.data.read_parquet(str(manifest), ray_remote_args=_IO_TASKS)
    raise ManifestError(f"{manifest}: unknown manifest format; use {', '.join(MANIFEST_SUFFIXES)}")


def _predict_into(run_dir: Path, manifest: Path, out: Path, *, actors: int, chunk_size: int, address: str | None,
                  gpus_per_actor: float, verify: bool, cfg: RunConfig | None) -> float:
    """Runs the actor pool over ``manifest`` into the Parquet folder ``out``; the seconds it took."""
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        t0 = time.perf_counter()
        device = "cuda" if gpus_per_actor > 0 else "cpu"
        results = _read(manifest).map_batches(
            _RunActor, fn_constructor_kwargs={"run_dir": str(run_dir), "base": str(manifest.parent),
                                              "name": manifest.name, "device": device, "verify": verify,
                                              "cfg": cfg},
            batch_size=chunk_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
            num_gpus=gpus_per_actor)
        results.write_parquet(str(out), ray_remote_args=_IO_TASKS)
        return time.perf_counter() - t0
    finally:
        if started_here:
            ray.shutdown()


def predict_with_ray(run_dir: str | Path, manifest: str | Path, out: str | Path, *, actors: int = 2,
                     chunk_size: int = 256, address: str | None = None, gpus_per_actor: float = 0.0,
                     verify: bool = True, cfg: RunConfig | None = None) -> RayResult:
    """Predicts every row of ``manifest`` with a pool of ``actors`` Ray actors; writes Parquet files into ``out``.

    Args:
        run_dir: a finished run.
        manifest: CSV / JSONL / Parquet (see :mod:`mmsent.stream`); paths relative to its folder.
        out: a folder (created; it must not exist yet or be empty) for the Parquet part files, one row per input row
            (``id``, ``label``, ``p_<label>``, ``error``).
        actors: actors holding the run; each takes one CPU (or ``gpus_per_actor`` of a GPU, where it then runs).
        chunk_size: rows per call of an actor.
        address: a Ray cluster to join (``auto`` for the local one started by ``ray start``); None starts a local
            instance for this call.
        verify: check the run against its ``checksums.sha256`` (here, before any actor starts, and in each actor).
        cfg: the run's config with a user's runtime settings (:func:`~mmsent.config.load_run_config`).
    """
    try:
        import ray.data  # noqa: F401 (imported here to fail early and clearly)
    except ImportError as exc:
        raise ImportError("--engine ray needs Ray Data: pip install 'mmsent[ray]'") from exc
    run_dir, manifest, out = Path(run_dir).resolve(), Path(manifest).resolve(), Path(out)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    with output_lock(out):  # one writer: a second job into the same folder would add its part files beside these
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out} exists and is not an empty folder; the Ray engine writes Parquet part "
                             "files into a new folder")
        if verify:  # here, so that a changed run is named at once rather than inside every actor's failure
            from mmsent.run_folder import verify_run

            verify_run(run_dir)
        seconds = _predict_into(run_dir, manifest, out, actors=actors, chunk_size=chunk_size, address=address,
                                gpus_per_actor=gpus_per_actor, verify=verify, cfg=cfg)
    import pyarrow.parquet as pq

    table = pq.read_table(str(out), columns=["error"])
    errors = table.num_rows - table.column("error").null_count
    return RayResult(out, table.num_rows - errors, errors, seconds, actors)
