"""What every fusion model takes and returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmsent.features.featureset import FeatureSet


@dataclass
class FusionInputs:
    """A batch of features, as tensors on one device.

    Shapes: ``image_pooled (B, Di)``, ``image_tokens (B, Ti, Di)``, ``image_mask (B, Ti)`` bool (True = real),
    and the same for text.
    """

    image_pooled: torch.Tensor
    image_tokens: torch.Tensor
    image_mask: torch.Tensor
    text_pooled: torch.Tensor
    text_tokens: torch.Tensor
    text_mask: torch.Tensor

    @classmethod
    def from_features(cls, feats: FeatureSet, idx: torch.Tensor | None = None,
                      device: torch.device | str = "cpu") -> "FusionInputs":
        """Slices rows ``idx`` (all when None) of a FeatureSet, casts to float32 and moves to ``device``."""
        img, txt = (feats.image, feats.text) if idx is None else (feats.image.index(idx), feats.text.index(idx))
        return cls(
            img.pooled.float().to(device), img.tokens.float().to(device), img.mask.bool().to(device),
            txt.pooled.float().to(device), txt.tokens.float().to(device), txt.mask.bool().to(device),
        )

    def __len__(self) -> int:
        return int(self.image_pooled.shape[0])


class FusionModel(nn.Module):
    """Base class: ``forward(inputs) -> logits (B, num_classes)``.

    Subclasses may fill ``self.last_explanation`` (a dict of tensors, e.g. gate values or attention maps)
    during ``forward`` so that callers can show which modality drove a decision.
    """

    #: which modalities the model reads; used by ablation reporting
    modalities: tuple[str, ...] = ("image", "text")

    def __init__(self) -> None:
        super().__init__()
        self.last_explanation: dict[str, torch.Tensor] = {}

    def forward(self, inputs: FusionInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
