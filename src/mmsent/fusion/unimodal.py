"""Single-modality heads, for ablations: how much does each modality carry on its own?"""

from __future__ import annotations

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.concat import PooledProjection
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


class _UnimodalHead(FusionModel):
    """MLP on one modality's pooled vector; takes both dims so that every model shares one constructor shape."""

    uses_tokens = False
    _modality: str = ""

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_classes: int = len(LABELS)) -> None:
        super().__init__()
        in_dim = image_dim if self._modality == "image" else text_dim
        self.proj = PooledProjection(in_dim, hidden_dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        x = inputs.image_pooled if self._modality == "image" else inputs.text_pooled
        return self.classifier(self.dropout(self.proj(x)))


@register_fusion_model("text_only")
class TextOnly(_UnimodalHead):
    """Text-only ablation: ignores the image entirely."""

    modalities = ("text",)
    _modality = "text"


@register_fusion_model("image_only")
class ImageOnly(_UnimodalHead):
    """Image-only ablation: ignores the text entirely."""

    modalities = ("image",)
    _modality = "image"
