"""Benchmark: EfficientNet-Lite2 quantized to int8 by NNCF (post-training) in OpenVINO, against fp32.

EfficientNet-Lite was designed for int8; this probe asks whether OpenVINO's int8 path keeps the features (cosine
>= 0.99 per image, as the issue asks of any fast path) and what it gains. Calibration images are the last
``--calibration`` lab images, the scored ones the first ``--images`` (no overlap). ``--skip-convs N`` keeps the first
N convolutions in float. Model only (no decoding); read the speeds as ratios within one run.

Needs NNCF, which mmsent does not install: ``pip install nncf``.

Usage::

    python benchmarks/int8_probe.py [--data ../shared/datasets/lab5] [--calibration 128] [--images 256] [--skip-convs 0]
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
from mmsent.encoders.openvino_runtime import convert_part


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--calibration", type=int, default=128)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--skip-convs", type=int, default=0, help="the first N convolutions stay in float")
    args = ap.parse_args()
    import nncf
    import openvino as ov

    enc = create_image_encoder("efficientnet-lite2", device="cpu", backend="torch")
    paths = sorted((args.data / "data").glob("*.jpg"))

    def crops(selected: list[Path]) -> torch.Tensor:
        return enc.normalize(torch.from_numpy(np.stack([enc.load(p) for p in selected])))

    calibration, scored = crops(paths[-args.calibration:]), crops(paths[: args.images])
    shape = tuple(scored.shape[1:])
    model = convert_part(enc.forward_features, enc.network, shape)
    core = ov.Core()

    def run(model_to_run, precision: str) -> tuple[torch.Tensor, float]:
        compiled = core.compile_model(model_to_run, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        t0 = time.perf_counter()
        maps = [np.asarray(compiled(np.ascontiguousarray(scored[i:i + 32].numpy()))[0])
                for i in range(0, len(scored), 32)]
        return torch.from_numpy(np.concatenate(maps)).mean(dim=(2, 3)), len(scored) / (time.perf_counter() - t0)

    reference, speed = run(model, "f32")
    print(f"fp32: {speed:.1f} images/s", flush=True)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    scope = {"ignored_scope": nncf.IgnoredScope(names=convs[: args.skip_convs])} if args.skip_convs else {}
    batches = nncf.Dataset([calibration[i:i + 16].numpy() for i in range(0, len(calibration), 16)])
    for preset in (nncf.QuantizationPreset.PERFORMANCE, nncf.QuantizationPreset.MIXED):
        quantized = nncf.quantize(model, batches, preset=preset, subset_size=len(calibration),
                                  fast_bias_correction=True, **scope)
        for precision in ("f32", "bf16"):
            pooled, speed = run(quantized, precision)
            cos = torch.nn.functional.cosine_similarity(pooled, reference)
            print(f"int8 {preset.value} (unquantized ops in {precision}), first {args.skip_convs} of {len(convs)} "
                  f"convolutions in float: {speed:.1f} images/s, min cosine {cos.min():.4f}, median "
                  f"{cos.median():.4f}, below 0.99: {(cos < 0.99).sum().item()}/{len(cos)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
