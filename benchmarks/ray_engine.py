"""Benchmark: `--engine ray` against the one-process engine on lab rows: same labels, and throughput per actor count.

Writes a CSV manifest of the first ``--rows`` lab rows (train then test), predicts it with the one-process engine
(``predict_stream``) and with Ray Data on a local instance with 1 and 2 actors, checks that every row has the same
label (and probabilities within 1e-5) in all three, and appends rows/s to benchmarks/RESULTS.md.

Usage::

    python benchmarks/ray_engine.py [RUN_DIR] [--data ../shared/datasets/lab5] [--rows 2000]

RUN_DIR defaults to the shipped model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section  # noqa: E402


def write_manifest(data: Path, rows: int, path: Path) -> int:
    guids = [line.split(",")[0].strip() for name in ("train.txt", "test_without_label.txt")
             for line in (data / name).read_text().splitlines()[1:] if line.strip()][:rows]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text_path", "image"])
        for g in guids:
            writer.writerow([g, str(data / "data" / f"{g}.txt"), str(data / "data" / f"{g}.jpg")])
    return len(guids)


def main() -> None:
    import pyarrow.parquet as pq

    from mmsent.export import shipped_model_path
    from mmsent.ray_engine import predict_with_ray
    from mmsent.stream import predict_stream

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmsent-ray-bench"))
    args = parser.parse_args()
    run_dir = args.run_dir or shipped_model_path()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    manifest = args.work / "posts.csv"
    n = write_manifest(args.data, args.rows, manifest)

    t0 = time.perf_counter()
    local = predict_stream(run_dir, manifest, args.work / "local.jsonl", progress=False)
    local_s = time.perf_counter() - t0
    by_local = {r["id"]: r for r in map(json.loads, (args.work / "local.jsonl").read_text().splitlines())}
    rows = [("one process (`predict_stream`)", local_s, local.predicted, "reference")]
    for actors in (1, 2):
        out = args.work / f"ray-{actors}"
        t0 = time.perf_counter()
        result = predict_with_ray(run_dir, manifest, out, actors=actors)
        seconds = time.perf_counter() - t0
        by_ray = {r["id"]: r for r in pq.read_table(out).to_pylist()}
        same = sum(by_ray[i]["label"] == r.get("label") for i, r in by_local.items())
        worst = max(abs(by_ray[i][f"p_{k}"] - r[f"p_{k}"]) for i, r in by_local.items() if "label" in r
                    for k in ("positive", "neutral", "negative"))
        rows.append((f"Ray Data, {actors} actor(s)", seconds, result.predicted,
                     f"{same}/{len(by_local)} labels equal, max prob. diff {worst:.1e}"))
    lines = [
        (f"## --engine ray vs one process ({date.today()}, {platform.node() or 'this machine'}, "
         f"{os.cpu_count()} cores)"), "",
        (f"Command: `python benchmarks/ray_engine.py` (run: `{run_dir}`; the first {n} lab rows). Wall time includes "
         "loading the run and, for Ray, starting a local instance and its actors."), "",
        "| engine | seconds | rows predicted | rows/s | agreement |", "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {s:.0f} | {k} | {k / s:.1f} | {agree} |" for name, s, k, agree in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    prepend_section(REPO / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
