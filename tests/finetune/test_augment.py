"""Pixel augmentation for full image fine-tuning: what the crops do, and that only training sees them."""

from __future__ import annotations

import pytest
import torch

from mmsent.config import ImageFinetuneConfig
from mmsent.encoders import create_image_encoder
from mmsent.finetune import make_adapter
from mmsent.finetune.augment import random_resized_crop_flip


def _images(b: int = 3, side: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(b, 3, side, side)


def test_full_crop_without_flip_is_the_identity_and_a_certain_flip_mirrors():
    x = _images()
    same = random_resized_crop_flip(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    mirrored = random_resized_crop_flip(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(mirrored, x.flip(-1), atol=1e-5, rtol=0)


def test_crops_differ_per_image_stay_in_range_and_follow_the_seed():
    x = _images(4)
    torch.manual_seed(1)
    a = random_resized_crop_flip(x)
    torch.manual_seed(1)
    b = random_resized_crop_flip(x)
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.allclose(a, x)
    # bilinear samples inside the image: never outside the input's range
    assert a.min() >= x.min() - 1e-6 and a.max() <= x.max() + 1e-6
    assert random_resized_crop_flip(x[:0]).shape == (0, 3, 16, 16)


@pytest.fixture
def encoder(lite0_weights):
    return create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu")


def test_augmentation_needs_full_mode(encoder):
    with pytest.raises(ValueError, match="augment needs finetune.image.mode=full"):
        make_adapter(encoder, ImageFinetuneConfig(mode="last_n", last_n=1, augment=True))


def test_only_training_steps_see_augmented_images(encoder, lab):
    plain = make_adapter(encoder, ImageFinetuneConfig(mode="full", augment=False))
    augmented = make_adapter(encoder, ImageFinetuneConfig(mode="full", augment=True))
    rows = plain.prepare(sorted((lab / "data").glob("*.jpg"))[:4])
    # extraction (eval mode): identical features with and without augmentation
    torch.testing.assert_close(plain.features(rows).pooled, augmented.features(rows).pooled, atol=0, rtol=0)

    def train_forward(adapter) -> torch.Tensor:
        adapter.train()
        torch.manual_seed(5)  # the same stochastic depth draws for every call
        with torch.no_grad():
            return adapter.forward(rows)

    base = train_forward(plain)
    assert torch.equal(base, train_forward(plain))
    # the random network's outputs are tiny: compare relative to their size
    assert (train_forward(augmented) - base).abs().max() > 1e-2 * base.abs().max()
