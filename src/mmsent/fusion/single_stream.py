"""Single-stream fusion: one transformer over each sample's joint [CLS] + image + text token sequence.

The original design fed a ``(batch, dim)`` tensor to a sequence-first encoder, so attention ran across the
samples of a batch. Here every sample is its own ``(1 + Ti + Tt)``-token sequence (``batch_first=True``) and
padded positions are masked out of attention and pooling, so a prediction never depends on its batch mates.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x (B, T, H)`` over the positions where ``mask (B, T)`` is True; zeros for rows with none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def ensure_nonempty(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Marks the first position real in rows that have no real token (adding one zero token when ``T == 0``).

    Attention whose keys are all masked gives NaN; an empty text (say a tweet that was only a link) instead
    attends to a single zero token, which is also what that row gets when it is trimmed and run alone.
    """
    if tokens.shape[1] == 0:
        tokens = tokens.new_zeros((tokens.shape[0], 1, tokens.shape[2]))
        return tokens, torch.ones((tokens.shape[0], 1), dtype=torch.bool, device=tokens.device)
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        # The stand-in was padding, so its stored value is arbitrary: zero it, as TokenEmbedding does for padding.
        tokens, mask = tokens.clone(), mask.clone()
        tokens[empty, 0] = 0.0
        mask[empty, 0] = True
    return tokens, mask


class TokenEmbedding(nn.Module):
    """LayerNorm + Linear projection of a token sequence plus learned position embeddings.

    Padded positions are zeroed *before* the projection so that whatever the feature extractor left there
    (garbage, NaN) can never reach the output.

    Args:
        in_dim: token width from the encoder.
        hidden_dim: model width.
        max_tokens: number of position embeddings; longer inputs raise.
        name: for error messages (``"image"``/``"text"``).
    """

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


@register_fusion_model("single_stream")
class SingleStreamFusion(FusionModel):
    """One transformer encoder over ``[CLS] + image tokens + text tokens`` per sample.

    Args:
        image_dim: width of the image tokens (and pooled vector, unused here).
        text_dim: width of the text tokens.
        hidden_dim: model width.
        dropout: dropout before the classifier.
        num_layers: transformer layers.
        num_heads: attention heads; must divide ``hidden_dim``.
        attn_dropout: dropout inside the transformer (kept below ``dropout``: attention is fragile with little data).
        pool: ``"cls"`` classifies from the CLS state; ``"cls_mean"`` also concatenates the masked means of the
            image and text states, which helps a shallow stack where CLS has seen only un-fused tokens.
        max_image_tokens: image position embeddings.
        max_text_tokens: text position embeddings.
    """

    config_fields = ("hidden_dim", "dropout", "num_layers", "num_heads")

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_layers: int = 1, num_heads: int = 4, attn_dropout: float = 0.1,
                 pool: Literal["cls", "cls_mean"] = "cls_mean", max_image_tokens: int = 144,
                 max_text_tokens: int = 256) -> None:
        super().__init__()
        if pool not in ("cls", "cls_mean"):
            raise ValueError(f"pool must be 'cls' or 'cls_mean', got {pool!r}")
        self.pool = pool
        self.image_embed = TokenEmbedding(image_dim, hidden_dim, max_image_tokens, "image")
        self.text_embed = TokenEmbedding(text_dim, hidden_dim, max_text_tokens, "text")
        self.cls = nn.Parameter(torch.empty(1, 1, hidden_dim))
        self.modality = nn.Parameter(torch.empty(2, hidden_dim))  # type embeddings: 0 image, 1 text
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.modality, std=0.02)
        self.embed_dropout = nn.Dropout(attn_dropout)
        self.encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear((3 if pool == "cls_mean" else 1) * hidden_dim, len(LABELS))

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        image_mask, text_mask = inputs.image_mask, inputs.text_mask
        image = self.image_embed(inputs.image_tokens, image_mask) + self.modality[0]
        text = self.text_embed(inputs.text_tokens, text_mask) + self.modality[1]
        b, ti = image.shape[0], image.shape[1]
        x = torch.cat([self.cls.expand(b, -1, -1), image, text], dim=1)
        real = torch.cat([image_mask.new_ones((b, 1)), image_mask, text_mask], dim=1)
        x = self.encoder(self.embed_dropout(x), src_key_padding_mask=~real)
        x = self.norm(x)
        pooled = x[:, 0]
        if self.pool == "cls_mean":
            pooled = torch.cat([pooled, masked_mean(x[:, 1:1 + ti], image_mask),
                                masked_mean(x[:, 1 + ti:], text_mask)], dim=-1)
        return self.classifier(self.dropout(pooled))
