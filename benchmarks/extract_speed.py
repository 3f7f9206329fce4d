"""Benchmark: image feature extraction end to end (decode + crop + network), per inference backend, in one run.

Encodes the same lab images with each backend (no feature cache), reports images/s, the speed-up over PyTorch and
the per-image cosine between each backend's pooled vectors and PyTorch's; appends a table to benchmarks/RESULTS.md.

Usage::

    python benchmarks/extract_speed.py [--data ../shared/datasets/lab5] [--images 1000] [--backends torch,openvino,openvino-bf16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section

from mmsent.encoders import create_image_encoder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--backends", default="torch,openvino,openvino-bf16")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = ap.parse_args()
    paths = sorted((args.data / "data").glob("*.jpg"))[: args.images]
    rows, ref = [], None
    for backend in args.backends.split(","):
        enc = create_image_encoder("efficientnet-lite2", device="cpu", backend=backend)
        enc.encode(paths[: args.batch_size], batch_size=args.batch_size)  # warm-up (and OpenVINO's compile)
        t0 = time.perf_counter()
        feats = enc.encode(paths, batch_size=args.batch_size)
        seconds = time.perf_counter() - t0
        if ref is None:
            ref = feats
        cos = torch.nn.functional.cosine_similarity(feats.pooled, ref.pooled)
        tok = torch.nn.functional.cosine_similarity(feats.tokens.flatten(1), ref.tokens.flatten(1))
        rows.append((backend, len(paths) / seconds, seconds, float(cos.min()), float(tok.min())))
        print(rows[-1], flush=True)
    base = rows[0][1]
    lines = [f"## Image extraction speed per backend, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"- Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch "
             f"{torch.__version__}, Python {platform.python_version()}; load average at start "
             f"{os.getloadavg()[0]:.2f}.",
             f"- Command: `python benchmarks/extract_speed.py --images {args.images} --backends {args.backends}` "
             f"(EfficientNet-Lite2, {len(paths)} lab JPEGs, decode + crop + network, batch {args.batch_size}, "
             "no feature cache, after one warm-up batch).", "",
             "| backend | images/s | seconds | speed-up over the first | min cosine pooled | min cosine tokens |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {b} | {r:.1f} | {s:.1f} | {r / base:.2f}x | {c:.5f} | {t:.5f} |" for b, r, s, c, t in rows]
    text = "\n".join(lines) + "\n\n"
    print(text)
    prepend_section(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
