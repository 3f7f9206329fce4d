"""Dual-stream (ViLBERT-style) fusion: per-modality self-attention, then co-attention in both directions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmsent.features.featureset import masked_mean
from mmsent.fusion.base import FusionInputs
from mmsent.fusion.registry import register_fusion_model
from mmsent.fusion.single_stream import TokenFusion, transformer_encoder
from mmsent.labels import LABELS


def ensure_nonempty(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Marks the first position real in rows without a real token (adding a zero token when ``T == 0``).

    Attention over all-masked keys gives NaN; an empty text instead attends to one zero token, as it does alone.
    """
    if tokens.shape[1] == 0:
        tokens = tokens.new_zeros((tokens.shape[0], 1, tokens.shape[2]))
        return tokens, torch.ones((tokens.shape[0], 1), dtype=torch.bool, device=tokens.device)
    # Without a data-dependent branch: no host sync on a GPU.
    first = torch.zeros_like(mask)
    first[:, 0] = True
    revive = first & ~mask.any(dim=1, keepdim=True)  # the first position of each empty row
    # it was padding, so its value is arbitrary: zero it, as TokenEmbedding does
    return tokens.masked_fill(revive.unsqueeze(-1), 0.0), mask | revive


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention (queries from one stream, keys/values from the other) + residual, then FFN + residual."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(hidden_dim)
        self.norm_kv = nn.LayerNorm(hidden_dim)
        self.attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(hidden_dim)
        self.ff = nn.Sequential(nn.Linear(hidden_dim, 2 * hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * hidden_dim, hidden_dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the updated query stream and, if asked, head-averaged weights ``(B, Tq, Tk)``."""
        kv = self.norm_kv(context)
        out, weights = self.attn(self.norm_q(query), kv, kv, key_padding_mask=~context_mask,
                                 need_weights=need_weights, average_attn_weights=True)
        x = query + self.dropout(out)
        x = x + self.dropout(self.ff(self.norm_ff(x)))
        return x, weights


@register_fusion_model("dual_stream")
class DualStreamFusion(TokenFusion):
    """Self-attention within each modality, co-attention across them, masked-mean pooling per stream.

    ``num_layers`` counts the self-attention layers per stream and the co-attention layers (other arguments: see
    :class:`TokenFusion`). After each forward pass ``last_explanation["text_to_image_attention"]`` holds the last
    co-attention layer's text->image weights ``(B, Tt, Ti)``, averaged over heads: each real text token's row sums
    to 1 over the real image cells; rows of padded text positions are zero.

    Args:
        combine: ``"concat"`` the two pooled streams, or take their element-wise ``"product"``.
    """

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_layers: int = 1, num_heads: int = 4, attn_dropout: float = 0.1,
                 combine: Literal["concat", "product"] = "concat", max_image_tokens: int = 144,
                 max_text_tokens: int = 256, num_classes: int = len(LABELS)) -> None:
        if combine not in ("concat", "product"):
            raise ValueError(f"combine must be 'concat' or 'product', got {combine!r}")
        super().__init__(image_dim, text_dim, hidden_dim, attn_dropout, max_image_tokens, max_text_tokens)
        self.combine = combine
        self.image_encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.text_encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.co_layers = nn.ModuleList(nn.ModuleDict({
            "image_from_text": CrossAttentionBlock(hidden_dim, num_heads, attn_dropout),
            "text_from_image": CrossAttentionBlock(hidden_dim, num_heads, attn_dropout),
        }) for _ in range(num_layers))
        self.image_norm = nn.LayerNorm(hidden_dim)
        self.text_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear((2 if combine == "concat" else 1) * hidden_dim, num_classes)

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        image_tokens, image_mask = ensure_nonempty(inputs.image_tokens, inputs.image_mask)
        text_tokens, text_mask = ensure_nonempty(inputs.text_tokens, inputs.text_mask)
        image = self.image_encoder(self.embed_dropout(self.image_embed(image_tokens, image_mask)),
                                   src_key_padding_mask=~image_mask)
        text = self.text_encoder(self.embed_dropout(self.text_embed(text_tokens, text_mask)),
                                 src_key_padding_mask=~text_mask)
        attention: torch.Tensor | None = None
        for i, layer in enumerate(self.co_layers):
            # Re-zero padded states: they are never attended to, but this keeps them from ever holding NaN/inf.
            image = image.masked_fill(~image_mask.unsqueeze(-1), 0.0)
            text = text.masked_fill(~text_mask.unsqueeze(-1), 0.0)
            # Both directions read the same inputs (as in ViLBERT): neither stream sees the other's update.
            new_image, _ = layer["image_from_text"](image, text, text_mask)
            text, attention = layer["text_from_image"](text, image, image_mask,
                                                       need_weights=i == len(self.co_layers) - 1)
            image = new_image
        if attention is not None:
            attention = attention * text_mask.unsqueeze(-1).to(attention.dtype)
            # Drop the stand-in column ensure_nonempty added for a zero-length text, keeping the (B, Tt, Ti) shape.
            attention = attention[:, :inputs.text_tokens.shape[1], :inputs.image_tokens.shape[1]]
            self.last_explanation = {"text_to_image_attention": attention.detach()}
        image_vec = masked_mean(self.image_norm(image), image_mask)
        text_vec = masked_mean(self.text_norm(text), text_mask)
        fused = torch.cat([image_vec, text_vec], dim=-1) if self.combine == "concat" else image_vec * text_vec
        return self.classifier(self.dropout(fused))
