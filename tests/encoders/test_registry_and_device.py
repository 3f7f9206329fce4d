"""Factories, config wiring, the optional ResNet50 and device selection."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mmsent.config import EncoderConfig
from mmsent.device import resolve_device, resolve_num_threads, torch_threads
from mmsent.encoders import create_encoders_from_config, create_image_encoder, list_encoders

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def test_list_encoders():
    known = list_encoders()
    assert {"efficientnet-lite2", "resnet50"} <= set(known["image"])
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


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed")
def test_resnet_without_torchvision_says_what_to_install():
    with pytest.raises(ImportError, match=r"mmsent\[resnet\]"):
        create_image_encoder("resnet50", pretrained=False)


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed (pip install mmsent[resnet])")
def test_resnet_random_weights(images, tmp_path):
    enc = create_image_encoder("resnet50", grid=3, pretrained=False, device="cpu")
    f = enc.encode(images[:2])
    assert f.pooled.shape == (2, 2048) and f.tokens.shape == (2, 9, 2048)
    weights = tmp_path / "r50.pth"
    torch.save(enc.net.state_dict(), weights)
    again = create_image_encoder(f"resnet50:{weights}", grid=3, device="cpu")
    assert "sha256:" in again.fingerprint()
    assert torch.allclose(again.encode(images[:2]).pooled, f.pooled, atol=1e-4)
