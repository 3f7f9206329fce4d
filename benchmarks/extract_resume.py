"""Benchmark: kill ``mmsent extract`` about half-way through the images, rerun it, count what the rerun encodes.

1. ``mmsent extract`` on the lab data into an empty cache, in a subprocess, killed (SIGKILL) once the image
   features' partial cache entries (one per 512 encoded images) cover about half of the images;
2. the same extraction again, in this process, with the pipeline's extraction stats: images encoded, images reused.
Appends the numbers to benchmarks/RESULTS.md.

Usage::

    python benchmarks/extract_resume.py [--data ../shared/datasets/lab5] [--cache /tmp/resume-cache]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section  # noqa: E402

from mmsent.config import load_config  # noqa: E402
from mmsent.features.cache import FeatureCache  # noqa: E402
from mmsent.pipeline import extract, load_dataset  # noqa: E402


def partial_images(cache_dir: Path) -> int:
    """Images held by partial (per-chunk) image entries of the cache so far."""
    entries = FeatureCache(cache_dir).entries("image")
    return sum(len(meta.get("item_ids") or ()) for meta in entries if meta.get("partial"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/resume-cache"))
    args = parser.parse_args()
    shutil.rmtree(args.cache, ignore_errors=True)
    overrides = [f"data.root={args.data}", f"cache_dir={args.cache}"]
    cfg = load_config(overrides=overrides)
    dataset = load_dataset(cfg)
    rows = dataset.train + dataset.test
    half = len(rows) // 2

    cmd = [sys.executable, "-m", "mmsent.cli", "extract", "-q", *[a for o in overrides for a in ("--set", o)]]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kept = 0
    while proc.poll() is None:
        time.sleep(0.5)
        kept = partial_images(args.cache)
        if kept >= half:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    killed_after = time.perf_counter() - t0
    if kept < half:
        raise SystemExit(f"the extraction ended (exit {proc.returncode}) before half of the images were cached")
    kept = partial_images(args.cache)

    stats: dict = {}
    t1 = time.perf_counter()
    feats = extract(cfg, rows, progress=True, stats=stats)
    rerun = time.perf_counter() - t1
    image = stats["image"]
    assert len(feats) == len(rows)
    lines = [
        f"## Killed extraction, then rerun ({date.today()}, {platform.node() or 'this machine'}, "
        f"{platform.processor() or platform.machine()})", "",
        "Command: `python benchmarks/extract_resume.py`. `mmsent extract` on the lab data into an empty cache, "
        f"SIGKILLed once its partial image entries held at least half of the {len(rows)} rows' images "
        f"(after {killed_after:.0f} s), then the same extraction again.", "",
        "| | images |", "|---|---|",
        f"| rows | {len(rows)} |",
        f"| cached by the killed run (partial entries of 512) | {kept} |",
        f"| encoded by the rerun | {image['encoded']} |",
        f"| reused by the rerun | {image['reused']} |", "",
        f"The rerun encoded {image['encoded']} of {image['encoded'] + image['reused']} distinct images "
        f"({image['encoded'] / (image['encoded'] + image['reused']):.0%}): at most the unfinished part. "
        f"Rerun wall time {rerun:.0f} s (images and texts); its stats: {dict(image)}.", "",
    ]
    text = "\n".join(lines)
    print(text)
    prepend_section(REPO / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
