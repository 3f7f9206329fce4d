"""Benchmark: which part of EfficientNet-Lite2 must stay fp32 when OpenVINO runs the rest in bf16.

For each split ``k``, the stem and blocks ``[:k]`` are compiled in fp32 and the rest in bf16 (``--reverse``: the
other way round), and every image's pooled vector is compared with the whole-fp32 one. Model only (no decoding);
the cosines are what matter, the speeds only within one run.

Usage::

    python benchmarks/bf16_probe.py [--data ../shared/datasets/lab5] [--images 320] [--splits 0,1,2,4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmsent.encoders import create_image_encoder
from mmsent.encoders.openvino_runtime import compile_part


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--splits", default="0,1,2,4")
    ap.add_argument("--reverse", action="store_true", help="blocks [:k] in bf16 and the rest in fp32")
    args = ap.parse_args()
    enc = create_image_encoder("efficientnet-lite2", device="cpu", backend="torch")
    paths = sorted((args.data / "data").glob("*.jpg"))[: args.images]
    x = enc.normalize(torch.from_numpy(np.stack([enc.crop(enc.open(p)) for p in paths])))
    shape = tuple(x.shape[1:])

    def run(forward) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        out = torch.cat([torch.from_numpy(forward(x[i:i + 32].numpy())) for i in range(0, len(x), 32)])
        return out.mean(dim=(2, 3)), len(x) / (time.perf_counter() - t0)

    reference, speed = run(compile_part(enc.forward_features, enc.network, shape, "f32"))
    print(f"whole fp32: {speed:.1f} images/s", flush=True)
    pooled, speed = run(compile_part(enc.forward_features, enc.network, shape, "bf16"))
    cos = torch.nn.functional.cosine_similarity(pooled, reference)
    print(f"whole bf16: {speed:.1f} images/s, min cosine {cos.min():.5f}, below 0.99: {(cos < 0.99).sum().item()}")
    low, high = ("bf16", "f32") if args.reverse else ("f32", "bf16")
    for k in (int(s) for s in args.splits.split(",")):
        with torch.no_grad():
            middle = tuple(enc.forward_trunk(torch.zeros(1, *shape), k).shape[1:])
        trunk = compile_part(lambda t, k=k: enc.forward_trunk(t, k), enc.network, shape, low)
        top = compile_part(lambda t, k=k: enc.forward_top(t, k), enc.network, middle, high)
        pooled, speed = run(lambda a, top=top, trunk=trunk: top(trunk(a)))
        cos = torch.nn.functional.cosine_similarity(pooled, reference)
        print(f"stem + blocks[:{k}] in {low}, the rest in {high}: {speed:.1f} images/s, min cosine {cos.min():.5f}, "
              f"below 0.99: {(cos < 0.99).sum().item()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
