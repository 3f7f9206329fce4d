"""Single-stream fusion, and the token embedding and transformer it shares with :mod:`mmsent.fusion.dual_stream`.

Every sample is its own batch-first token sequence whose padding is masked out of attention and pooling, so a
prediction never depends on its batch mates.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmsent.features.featureset import masked_mean
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


class TokenEmbedding(nn.Module):
    """LayerNorm + Linear projection of tokens, plus learned positions; padding is zeroed first (junk never leaks)."""

    def __init__(self, in_dim: int, hidden_dim: int, max_tokens: int, name: str) -> None:
        super().__init__()
        self.name = name
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, hidden_dim)
        self.position = nn.Parameter(torch.empty(max_tokens, hidden_dim))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.position.shape[0]:
            raise ValueError(f"{self.name} input has {t} tokens but the model was built with "
                             f"max_{self.name}_tokens={self.position.shape[0]}")
        x = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.proj(self.norm(x)) + self.position[:t]


def transformer_encoder(hidden_dim: int, num_heads: int, num_layers: int, dropout: float) -> nn.TransformerEncoder:
    """A pre-LN, batch-first ``nn.TransformerEncoder`` with a 2x-wide GELU feed-forward."""
    layer = nn.TransformerEncoderLayer(hidden_dim, num_heads, dim_feedforward=2 * hidden_dim, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    # Nested tensors would only change how padded positions are computed; off keeps train and eval paths alike.
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


class TokenFusion(FusionModel):
    """Base of the token models: builds ``image_embed``, ``text_embed`` and ``embed_dropout``.

    Their shared arguments: ``hidden_dim`` (model width), ``dropout`` (before the classifier), ``num_layers``,
    ``num_heads`` (must divide ``hidden_dim``), ``attn_dropout`` (inside the transformer, kept below ``dropout``:
    attention is fragile with little data) and ``max_image_tokens``/``max_text_tokens`` (position embeddings).
    """

    config_fields = ("hidden_dim", "dropout", "num_layers", "num_heads")

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int, attn_dropout: float, max_image_tokens: int,
                 max_text_tokens: int) -> None:
        super().__init__()
        self.image_embed = TokenEmbedding(image_dim, hidden_dim, max_image_tokens, "image")
        self.text_embed = TokenEmbedding(text_dim, hidden_dim, max_text_tokens, "text")
        self.embed_dropout = nn.Dropout(attn_dropout)


@register_fusion_model("single_stream")
class SingleStreamFusion(TokenFusion):
    """One transformer encoder over ``[CLS] + image tokens + text tokens`` per sample (see :class:`TokenFusion`).

    Args:
        pool: ``"cls"`` classifies from the CLS state; ``"cls_mean"`` also concatenates the masked means of the
            image and text states, which helps a shallow stack where CLS has seen only un-fused tokens.
    """

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_layers: int = 1, num_heads: int = 4, attn_dropout: float = 0.1,
                 pool: Literal["cls", "cls_mean"] = "cls_mean", max_image_tokens: int = 144,
                 max_text_tokens: int = 256, num_classes: int = len(LABELS)) -> None:
        if pool not in ("cls", "cls_mean"):
            raise ValueError(f"pool must be 'cls' or 'cls_mean', got {pool!r}")
        super().__init__(image_dim, text_dim, hidden_dim, attn_dropout, max_image_tokens, max_text_tokens)
        self.pool = pool
        self.cls = nn.Parameter(torch.empty(1, 1, hidden_dim))
        self.modality = nn.Parameter(torch.empty(2, hidden_dim))  # type embeddings: 0 image, 1 text
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.modality, std=0.02)
        self.encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear((3 if pool == "cls_mean" else 1) * hidden_dim, num_classes)

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        image_mask, text_mask = inputs.image_mask, inputs.text_mask
        image = self.image_embed(inputs.image_tokens, image_mask) + self.modality[0]
        text = self.text_embed(inputs.text_tokens, text_mask) + self.modality[1]
        b, ti = image.shape[0], image.shape[1]
        x = torch.cat([self.cls.expand(b, -1, -1), image, text], dim=1)
        real = torch.cat([image_mask.new_ones((b, 1)), image_mask, text_mask], dim=1)
        x = self.norm(self.encoder(self.embed_dropout(x), src_key_padding_mask=~real))
        pooled = x[:, 0]
        if self.pool == "cls_mean":
            pooled = torch.cat([pooled, masked_mean(x[:, 1:1 + ti], image_mask),
                                masked_mean(x[:, 1 + ti:], text_mask)], dim=-1)
        return self.classifier(self.dropout(pooled))
