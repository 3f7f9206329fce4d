"""Factories, config wiring and device selection."""

from __future__ import annotations

import pytest
import torch

from mmsent.config import EncoderConfig
from mmsent.device import resolve_device, resolve_num_threads, torch_threads
from mmsent.encoders import create_encoders_from_config, list_encoders

def test_list_encoders():
    known = list_encoders()
    assert {"efficientnet-lite2", "timm:<name>[:<weights file>]", "hf-clip:<hub id or folder>"} <= set(known["image"])
    assert {"all-MiniLM-L6-v2", "all-mpnet-base-v2"} <= set(known["text"])


def test_encoders_from_config(tiny_bert):
    cfg = EncoderConfig(image="efficientnet-lite0", text=str(tiny_bert), image_grid=2, text_max_length=8, device="cpu")
    image, text = create_encoders_from_config(cfg, pretrained=False)
    assert (image.modality, image.grid, image.num_tokens, image.dim) == ("image", 2, 4, 1280)
    assert (text.modality, text.max_length, text.dim) == ("text", 8, 32)
    assert image.device == torch.device("cpu") and text.device == torch.device("cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_threads_are_restored():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert resolve_num_threads(0) >= 1


@pytest.mark.parametrize(("flags", "expected"), [("fpu sse avx512f avx512_bf16", torch.bfloat16),
                                                 ("fpu amx_tile amx_bf16", torch.bfloat16),
                                                 ("fpu sse avx2 avx512f", None), (None, None)])
def test_fine_tuning_autocasts_to_bf16_only_on_a_cpu_with_hardware_bf16(monkeypatch, flags, expected):
    import builtins
    import io

    from mmsent import device

    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if str(path) != "/proc/cpuinfo":
            return real_open(path, *args, **kwargs)
        if flags is None:
            raise FileNotFoundError(path)  # not Linux
        return io.StringIO(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n")

    monkeypatch.setattr(builtins, "open", fake_open)
    assert device.cpu_has_native_bf16() is (expected is not None)
    assert device.training_autocast_dtype(torch.device("cpu")) == expected
    # inference on the CPU stays float32 whatever the CPU (OpenVINO's bf16 is its own, opt-in backend)
    assert device.autocast_dtype(torch.device("cpu")) is None

