"""Pixel augmentation for image fine-tuning: a random resized crop and a horizontal flip per image, on the device.

Batched through one affine grid per image (``affine_grid`` + ``grid_sample``), so it costs one bilinear resample of the
batch wherever the batch lives (no torchvision, no per-image Python work). The random draws use the global CPU
generator, which the fine-tuning checkpoints save and restore: a resumed run draws the same crops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop_flip(x: torch.Tensor, scale: tuple[float, float] = (0.5, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> torch.Tensor:
    """Each image of ``x (B, C, H, W)`` -> a random crop covering ``scale`` of its area with aspect ``ratio``,
    resized back to ``H x W``, flipped left-right with probability ``flip_p``.

    Crops that would leave the image are shrunk to fit (so every output pixel comes from the image).
    """
    b = x.shape[0]
    if b == 0:
        return x
    area = torch.empty(b).uniform_(*scale)
    log_ratio = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    # Width and height as fractions of the side (the image is square after the encoder's center crop).
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    # Centre offsets in [-1, 1] grid units that keep the crop inside the image.
    cx = (torch.rand(b) * 2 - 1) * (1 - w)
    cy = (torch.rand(b) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
