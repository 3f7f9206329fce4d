"""The image encoders' inference path compiled by OpenVINO for the CPU (``encoders.backend``).

Eager PyTorch runs EfficientNet-Lite2 at a fraction of what two cores can do; OpenVINO's CPU plugin runs the same
graph several times faster, in fp32 (features equal to eager up to float rounding: the default) or with bf16
inference precision on CPUs that have native bf16 (faster again). In bf16 the stem and the first
``FP32_BLOCKS`` blocks stay fp32: run whole in bf16, EfficientNet-Lite2's features fell to cosine 0.964 of
PyTorch's on some lab images, almost all of it from those first high-resolution layers; with them in fp32 the
worst image is at 0.999, at 85% of whole bf16's speed.
Measurements: ``benchmarks/extract_speed.py`` and ``benchmarks/RESULTS.md``. Training
and fine-tuning always run in PyTorch; only feature extraction and serving use this path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("mmsent.encoders")

BACKENDS = ("torch", "openvino", "openvino-bf16")
FP32_BLOCKS = 2  # with openvino-bf16: the stem and this many blocks run in fp32, the rest in bf16


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: torch.device) -> str:
    """``auto`` -> ``openvino`` (fp32: the same features as PyTorch) on a CPU, ``torch`` on CUDA or without OpenVINO
    installed; any other name is checked and returned. ``openvino-bf16`` is faster still (1.4x on the 2-core machine)
    with features a little further from PyTorch's (worst of 1,000 lab images at cosine 0.9987), so it is only used
    when asked for."""
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


def keeps_fp32_trunk(backend: str, num_blocks: int) -> bool:
    """Whether the bf16 recipe (stem and ``FP32_BLOCKS`` blocks in fp32) applies to an encoder of ``num_blocks``
    blocks; encoders without that split (``num_blocks = 0``) run wholly in bf16."""
    return backend == "openvino-bf16" and num_blocks > FP32_BLOCKS


def runtime_id(backend: str, num_blocks: int) -> str:
    """What the feature cache records of a backend: its name, and for bf16 which part stays fp32."""
    return f"{backend}:fp32-stem+{FP32_BLOCKS}-blocks" if keeps_fp32_trunk(backend, num_blocks) else backend


class _Part(torch.nn.Module):
    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network  # registered, so conversion sees its weights
        self.run = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def convert_part(forward: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module,
                 input_shape: tuple[int, ...]) -> Any:
    """``forward`` (reading ``network``'s weights) as an OpenVINO model for any batch size of ``(B, *input_shape)``."""
    import openvino as ov

    with torch.no_grad():
        return ov.convert_model(_Part(forward, network).eval(), example_input=torch.zeros(1, *input_shape),
                                input=[(-1, *input_shape)])


def compile_part(forward: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module,
                 input_shape: tuple[int, ...], precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """``forward`` compiled for the CPU at ``precision`` (``f32`` or ``bf16``), any batch size."""
    import openvino as ov

    compiled = ov.Core().compile_model(convert_part(forward, network, input_shape), "CPU",
                                       {"INFERENCE_PRECISION_HINT": precision})
    return lambda x: np.asarray(compiled(np.ascontiguousarray(x))[0])


def compile_features(forward_features: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module,
                     input_size: int, backend: str, *,
                     trunk_and_top: tuple[Callable[[torch.Tensor], torch.Tensor],
                                          Callable[[torch.Tensor], torch.Tensor]] | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward_features`` of a network, compiled by OpenVINO for any batch size of ``(B, 3, S, S)`` inputs.

    With ``openvino-bf16`` and ``trunk_and_top`` (the network below and above block ``FP32_BLOCKS``), the trunk is
    compiled in fp32 and the top in bf16; without it the whole network runs in bf16.
    """
    import openvino as ov

    shape = (3, input_size, input_size)
    if backend == "openvino-bf16" and trunk_and_top is not None:
        trunk_fn, top_fn = trunk_and_top
        with torch.no_grad():
            middle = tuple(trunk_fn(torch.zeros(1, *shape)).shape[1:])
        trunk, top = compile_part(trunk_fn, network, shape, "f32"), compile_part(top_fn, network, middle, "bf16")
        forward = lambda x: top(trunk(x))
        precision = f"fp32 stem and {FP32_BLOCKS} blocks, bf16 above"
    else:
        precision = "bf16" if backend == "openvino-bf16" else "f32"
        forward = compile_part(forward_features, network, shape, precision)
    logger.info("image encoder compiled by OpenVINO %s (%s inference precision)", ov.__version__, precision)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(forward(x.detach().float().contiguous().cpu().numpy()))

    return run
