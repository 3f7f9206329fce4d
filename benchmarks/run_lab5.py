"""Benchmark: the whole main job on the full lab dataset, cold cache then warm cache.

Records in benchmarks/RESULTS.md: date, machine, command, extraction throughput per encoder, training time per model,
total wall time cold and warm, peak memory, and the comparison table.

Usage::

    python benchmarks/run_lab5.py [--data ../shared/datasets/lab5] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.platform()}")


def timed_run(cmd: list[str]) -> tuple[float, float, int]:
    """Runs ``cmd``; returns wall seconds, the child's peak RSS in MiB and its exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode


class RunFailed(RuntimeError):
    """An ``mmsent run`` of a benchmark exited non-zero."""

    def __init__(self, label: str, code: int) -> None:
        super().__init__(f"{label} run failed with exit code {code}")
        self.code = code


def bench_run(label: str, data: str, out: Path, cache: Path, args: list[str]) -> dict:
    """Runs ``mmsent run`` on ``data`` into ``out`` with ``cache``; returns wall time, peak RSS and its outputs."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mmsent", "run", "--data", data, "--out", str(out), "-q",
           "--set", f"cache_dir={cache}", *args]
    print(f"[bench] {label}: {shlex.join(cmd)}", flush=True)
    wall, rss, code = timed_run(cmd)
    if code != 0:
        raise RunFailed(label, code)
    return {"wall": wall, "rss": rss, "dir": out,
            "metrics": json.loads((out / "metrics.json").read_text()),
            "comparison": json.loads((out / "comparison.json").read_text())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "lab5"))
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-lab5"))
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="mmsent-bench-cache-"))
    extra = [a for o in args.overrides for a in ("--set", o)]
    try:
        runs = {label: bench_run(label, args.data, Path(f"{args.out}-{label}"), cache, extra)
                for label in ("cold", "warm")}
    except RunFailed as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return exc.code
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    cold, warm = runs["cold"], runs["warm"]
    preds = (cold["dir"] / "predictions.txt").read_text().splitlines()
    lines = [
        f"## lab5 main job, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- Machine: {machine()}",
        f"- Command: `python benchmarks/run_lab5.py {shlex.join(sys.argv[1:])}` (runs `mmsent run --data DATA` "
        "twice: a fresh cache, then the same cache)",
        f"- Total wall time: cold **{cold['wall'] / 60:.1f} min**, warm **{warm['wall'] / 60:.1f} min** "
        f"(process start to exit)",
        f"- Peak memory (max RSS): cold {cold['rss']:.0f} MiB, warm {warm['rss']:.0f} MiB",
        f"- Prediction file: {len(preds) - 1} rows",
        "",
        "Extraction (cold run):",
        "",
        "| modality | encoder | items encoded | encode seconds | items/s |",
        "|---|---|---|---|---|",
    ]
    for modality, st in cold["metrics"]["extraction"].items():
        rate = st.get("items_per_second")
        lines.append(f"| {modality} | {st.get('encoder')} | {st.get('encoded')} | {st.get('encode_seconds', 0):.0f} | "
                     f"{rate:.1f} |" if rate else f"| {modality} | {st.get('encoder')} | 0 | - | - |")
    lines += ["", "Stage wall times (seconds): " + ", ".join(
        f"{k.removesuffix('_seconds')} cold {cold['metrics']['timings'][k]:.0f} / warm {warm['metrics']['timings'][k]:.0f}"
        for k in ("load_seconds", "extract_seconds", "compare_seconds", "total_seconds")), ""]
    lines += ["Training time per model (mean over seeds, cold run): " + ", ".join(
        f"{row['model']} {row['train_seconds_mean']:.1f}s" for row in cold["comparison"]["summary"]), ""]
    lines += ["Comparison on the validation split (cold run):", "",
              (cold["dir"] / "comparison.md").read_text().strip(), ""]
    ens = cold["metrics"]["ensemble_validation_metrics"]
    lines += [f"Predicting model: **{cold['metrics']['chosen_model']}** (seed ensemble), validation accuracy "
              f"{ens['accuracy']:.3f}, macro-F1 {ens['macro_f1']:.3f}.", "", ""]
    results = Path(args.results)
    old = results.read_text() if results.exists() else "# Benchmark results\n\nNewest first.\n\n"
    head, _, rest = old.partition("\n## ")
    section = "\n".join(lines).rstrip() + "\n"
    results.write_text(head.rstrip() + "\n\n" + section + ("\n## " + rest if rest else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
