"""Benchmark: streaming prediction over a generated corpus: flat memory, kill at ~50% and resume, throughput.

Builds a manifest of N rows from the lab images and texts (each lab pair repeated under new ids, paths relative to
the manifest), then with a finished run:
1. predicts the first 5,000 rows and the whole corpus in separate processes, recording each one's peak RSS;
2. starts the whole corpus again into a fresh output, kills it once about half the rows are written, resumes, and
   checks by id that no row is lost or duplicated.
Appends the numbers to benchmarks/RESULTS.md.

Usage::

    python benchmarks/stream_corpus.py RUN_DIR [--rows 20000] [--data ../shared/datasets/lab5] [--work /tmp/corpus]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section


def build_manifest(data: Path, work: Path, rows: int) -> Path:
    guids = sorted(p.stem for p in (data / "data").glob("*.jpg"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"manifest-{rows}.jsonl"
    rel = os.path.relpath(data / "data", work)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            g = guids[i % len(guids)]
            fh.write(json.dumps({"id": f"post-{i:07d}", "text_path": f"{rel}/{g}.txt", "image": f"{rel}/{g}.jpg"})
                     + "\n")
    return path


def predict(run_dir: Path, manifest: Path, out: Path, kill_at: int | None = None) -> tuple[float, int, bool]:
    """Runs ``mmsent predict --input`` under /usr/bin/time; returns (seconds, peak RSS KiB, killed)."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "mmsent.cli", "predict", str(run_dir), "--input",
           str(manifest), "--out", str(out), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed = False
    while proc.poll() is None:
        time.sleep(0.5)
        if kill_at and out.exists() and sum(1 for _ in out.open("rb")) >= kill_at:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    lines = [line for line in err.strip().splitlines() if line.strip().isdigit()]
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"predict failed: {err[-2000:]}")
    return seconds, int(lines[-1]) if lines else 0, killed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mmsent-corpus"))
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = ap.parse_args()
    n_small = min(5000, args.rows // 2)
    small, big = build_manifest(args.data, args.work, n_small), build_manifest(args.data, args.work, args.rows)
    for p in args.work.glob("out-*.jsonl"):
        p.unlink()
    s_small, rss_small, _ = predict(args.run_dir, small, args.work / "out-small.jsonl")
    s_big, rss_big, _ = predict(args.run_dir, big, args.work / "out-big.jsonl")
    resumed = args.work / "out-resumed.jsonl"
    s_kill, _, killed = predict(args.run_dir, big, resumed, kill_at=args.rows // 2)
    at_kill = sum(1 for _ in resumed.open("rb"))
    s_resume, _, _ = predict(args.run_dir, big, resumed)
    ids = [json.loads(line)["id"] for line in resumed.open(encoding="utf-8")]
    expected = [f"post-{i:07d}" for i in range(args.rows)]
    ok = ids == expected
    lines = [f"## Streaming prediction over a generated corpus, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", f"- Machine: {os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.2f}. Run: "
             f"`{args.run_dir}`. Command: `python benchmarks/stream_corpus.py {args.run_dir} --rows {args.rows}` "
             "(manifest rows: lab images and texts repeated under new ids; `mmsent predict RUN --input "
             "manifest.jsonl`, chunks of 256 rows).", "",
             "| corpus | seconds | rows/s | peak RSS |", "|---|---|---|---|",
             f"| {n_small:,} rows | {s_small:.0f} | {n_small / s_small:.1f} | {rss_small / 1024:.0f} MiB |",
             f"| {args.rows:,} rows | {s_big:.0f} | {args.rows / s_big:.1f} | {rss_big / 1024:.0f} MiB |", "",
             f"- Kill and resume: killed={killed} after {s_kill:.0f} s with {at_kill:,} rows written (SIGKILL to the "
             f"process group), resumed in {s_resume:.0f} s; the output then holds {len(ids):,} rows, "
             f"{len(set(ids)):,} distinct ids, in manifest order: **{'no row lost or duplicated' if ok else 'MISMATCH'}**.",
             ""]
    text = "\n".join(lines) + "\n"
    print(text)
    prepend_section(args.results, text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
