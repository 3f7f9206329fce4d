"""The image encoders' inference path compiled by OpenVINO for the CPU (``encoders.backend``).

Eager PyTorch runs EfficientNet-Lite2 at a fraction of what two cores can do; OpenVINO's CPU plugin runs the same
graph several times faster, in fp32 (features equal to eager up to float rounding: the default) or with bf16
inference precision on CPUs that have native bf16 (faster again, features measurably different: opt-in).
Measurements: ``benchmarks/extract_speed.py`` and ``benchmarks/RESULTS.md``. Training
and fine-tuning always run in PyTorch; only feature extraction and serving use this path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

logger = logging.getLogger("mmsent.encoders")

BACKENDS = ("torch", "openvino", "openvino-bf16")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: torch.device) -> str:
    """``auto`` -> ``openvino`` (fp32: the same features as PyTorch) on a CPU, ``torch`` on CUDA or without OpenVINO
    installed; any other name is checked and returned. ``openvino-bf16`` is faster still but changes features
    measurably (on lab5: median cosine 0.9986 to PyTorch, 2.3% of images below 0.99, image-only macro-F1 -0.009), so
    it is only used when asked for."""
    if requested == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if requested not in BACKENDS:
        raise ValueError(f"unknown encoder backend {requested!r}; known: auto, {', '.join(BACKENDS)}")
    if requested != "torch":
        if device.type != "cpu":
            raise ValueError(f"encoders.backend={requested} runs on the CPU only; the encoder is on {device}")
        if not openvino_available():
            raise ImportError(f"encoders.backend={requested} needs OpenVINO: pip install openvino")
    return requested


def compile_features(forward_features: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module,
                     input_size: int, backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward_features`` of a network, compiled by OpenVINO for any batch size of ``(B, 3, S, S)`` inputs."""
    import openvino as ov

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network  # registered, so conversion sees its weights

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return forward_features(x)

    with torch.no_grad():
        model = ov.convert_model(Features().eval(), example_input=torch.zeros(1, 3, input_size, input_size),
                                 input=[(-1, 3, input_size, input_size)])
    precision = "bf16" if backend == "openvino-bf16" else "f32"
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    logger.info("image encoder compiled by OpenVINO %s (%s inference precision)", ov.__version__, precision)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = compiled(np.ascontiguousarray(x.detach().float().contiguous().cpu().numpy()))[0]
        return torch.from_numpy(np.asarray(out))

    return run
