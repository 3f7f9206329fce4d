"""Synthetic feature sets for the training tests."""

from __future__ import annotations

import numpy as np
import torch

from mmsent.config import TrainConfig
from mmsent.features import FeatureSet, ModalityFeatures

IMAGE_DIM, TEXT_DIM, IMAGE_TOKENS, TEXT_TOKENS = 12, 10, 4, 6


def tiny_cfg(**changes) -> TrainConfig:
    base = {"epochs": 15, "batch_size": 32, "lr": 3e-3, "patience": 5, "hidden_dim": 16, "dropout": 0.1,
            "num_layers": 1, "num_heads": 2, "device": "cpu"}
    base.update(changes)
    return TrainConfig(**base)


def make_task(n: int, seed: int, signal: float = 2.0, prefix: str = "g") -> tuple[FeatureSet, np.ndarray]:
    """``n`` rows whose class (60/10/30) shifts the pooled vectors and the real tokens by ``signal``.

    Features are stored float16, as the cache does, to exercise the cast to float32.
    """
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.6, 0.1, 0.3])
    y = torch.as_tensor(labels)
    image_shift = torch.randn(3, IMAGE_DIM, generator=g) * signal
    text_shift = torch.randn(3, TEXT_DIM, generator=g) * signal
    lengths = torch.randint(1, TEXT_TOKENS + 1, (n,), generator=g)
    text_mask = torch.arange(TEXT_TOKENS)[None, :] < lengths[:, None]
    image = ModalityFeatures(
        (torch.randn(n, IMAGE_DIM, generator=g) + image_shift[y]).half(),
        (torch.randn(n, IMAGE_TOKENS, IMAGE_DIM, generator=g) + image_shift[y][:, None]).half(),
        torch.ones(n, IMAGE_TOKENS, dtype=torch.bool),
    )
    text = ModalityFeatures(
        (torch.randn(n, TEXT_DIM, generator=g) + text_shift[y]).half(),
        (torch.randn(n, TEXT_TOKENS, TEXT_DIM, generator=g) + text_shift[y][:, None]).half(),
        text_mask,
    )
    return FeatureSet([f"{prefix}{i}" for i in range(n)], image, text), labels
