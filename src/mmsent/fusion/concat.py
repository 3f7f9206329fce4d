"""Late concatenation of the two pooled vectors."""

from __future__ import annotations

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


class PooledProjection(nn.Module):
    """LayerNorm (the encoders' pooled vectors have very different scales), dropout, Linear, GELU."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, out_dim), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_fusion_model("concat")
class ConcatFusion(FusionModel):
    """Projects each pooled vector to ``hidden_dim``, concatenates them and classifies with one linear layer.

    ``dropout`` applies to the inputs and before the classifier.
    """

    uses_tokens = False

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.image_proj = PooledProjection(image_dim, hidden_dim, dropout)
        self.text_proj = PooledProjection(text_dim, hidden_dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden_dim, num_classes)

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        fused = torch.cat([self.image_proj(inputs.image_pooled), self.text_proj(inputs.text_pooled)], dim=-1)
        return self.classifier(self.dropout(fused))
