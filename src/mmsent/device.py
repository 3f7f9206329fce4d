"""Device and thread selection shared by encoders and training."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turns ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:1"``) into a :class:`torch.device`.

    ``"auto"`` (and ``None``) pick CUDA when a GPU is present, else the CPU.

    Raises:
        ValueError: for an unknown device string, or ``"cuda"`` when no GPU is usable.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = (device or "auto").strip().lower()
        if name == "auto":
            return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use one of {', '.join(DEVICE_CHOICES)}")
    return dev


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision to run inference in on ``device``; None means full fp32 (always on the CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX, as Linux's ``/proc/cpuinfo`` lists its
    flags); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.partition(":")[2].split()))


def training_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision of a fine-tuning forward pass (``finetune.amp``): as :func:`autocast_dtype` on CUDA, and
    bfloat16 on a CPU that computes it in hardware, where full fine-tuning ran 1.3-1.7x faster per step with the same
    loss curve (benchmarks/RESULTS.md, "bf16 autocast against fp32"); None: float32."""
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return autocast_dtype(device)


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to fp16/bf16 on CUDA; a no-op elsewhere (CPU autocast is slower than fp32 on most CPUs)."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def resolve_num_threads(num_threads: int | str | None = "auto") -> int:
    """``"auto"`` (or None) means every core the process may use, shared among the processes that ``torchrun``
    started on this machine (``LOCAL_WORLD_SIZE``)."""
    if isinstance(num_threads, int) and num_threads > 0:
        return num_threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


@contextlib.contextmanager
def torch_threads(num_threads: int | str | None = "auto") -> Iterator[int]:
    """Sets torch's intra-op thread count for the block, then restores it (so library callers keep theirs)."""
    previous = torch.get_num_threads()
    n = resolve_num_threads(num_threads)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def has_fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (CUDA with bf16, or a CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Private probes, hence getattr: on CPUs without them bf16 is emulated and slower than fp32.
        probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(p()) for p in probes if p is not None)
    return False
