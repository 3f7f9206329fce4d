"""Dual-stream (ViLBERT-style) fusion: per-modality self-attention, then co-attention in both directions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.fusion.single_stream import TokenEmbedding, ensure_nonempty, masked_mean, transformer_encoder
from mmsent.labels import LABELS


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention (queries from one stream, keys/values from the other) + residual, then FFN + residual.

    Args:
        hidden_dim: model width.
        num_heads: attention heads.
        dropout: attention and residual dropout.
    """

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


class CoAttentionLayer(nn.Module):
    """Both directions computed from the same inputs (as in ViLBERT), so neither stream sees the other's update."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.image_from_text = CrossAttentionBlock(hidden_dim, num_heads, dropout)
        self.text_from_image = CrossAttentionBlock(hidden_dim, num_heads, dropout)

    def forward(self, image: torch.Tensor, image_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns new image and text states and the text->image attention ``(B, Tt, Ti)`` when asked."""
        new_image, _ = self.image_from_text(image, text, text_mask)
        new_text, text_to_image = self.text_from_image(text, image, image_mask, need_weights=need_weights)
        return new_image, new_text, text_to_image


@register_fusion_model("dual_stream")
class DualStreamFusion(FusionModel):
    """Self-attention within each modality, co-attention across them, masked-mean pooling per stream.

    After each forward pass ``last_explanation["text_to_image_attention"]`` holds the last co-attention layer's
    text->image weights ``(B, Tt, Ti)``, averaged over heads; each real text token's row sums to 1 over the real
    image cells, and rows of padded text positions are zero.

    Args:
        image_dim: width of the image tokens.
        text_dim: width of the text tokens.
        hidden_dim: model width.
        dropout: dropout before the classifier.
        num_layers: self-attention layers per stream, and co-attention layers.
        num_heads: attention heads; must divide ``hidden_dim``.
        attn_dropout: dropout inside the attention blocks.
        combine: ``"concat"`` the two pooled streams, or take their element-wise ``"product"``.
        max_image_tokens: image position embeddings.
        max_text_tokens: text position embeddings.
    """

    config_fields = ("hidden_dim", "dropout", "num_layers", "num_heads")

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 num_layers: int = 1, num_heads: int = 4, attn_dropout: float = 0.1,
                 combine: Literal["concat", "product"] = "concat", max_image_tokens: int = 144,
                 max_text_tokens: int = 256) -> None:
        super().__init__()
        if combine not in ("concat", "product"):
            raise ValueError(f"combine must be 'concat' or 'product', got {combine!r}")
        self.combine = combine
        self.image_embed = TokenEmbedding(image_dim, hidden_dim, max_image_tokens, "image")
        self.text_embed = TokenEmbedding(text_dim, hidden_dim, max_text_tokens, "text")
        self.embed_dropout = nn.Dropout(attn_dropout)
        self.image_encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.text_encoder = transformer_encoder(hidden_dim, num_heads, num_layers, attn_dropout)
        self.co_layers = nn.ModuleList(CoAttentionLayer(hidden_dim, num_heads, attn_dropout) for _ in range(num_layers))
        self.image_norm = nn.LayerNorm(hidden_dim)
        self.text_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear((2 if combine == "concat" else 1) * hidden_dim, len(LABELS))

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
            image, text, attention = layer(image, image_mask, text, text_mask,
                                           need_weights=i == len(self.co_layers) - 1)
        if attention is not None:
            attention = attention * text_mask.unsqueeze(-1).to(attention.dtype)
            # Drop the stand-in column ensure_nonempty added for a zero-length text, keeping the (B, Tt, Ti) shape.
            attention = attention[:, :inputs.text_tokens.shape[1], :inputs.image_tokens.shape[1]]
            self.last_explanation = {"text_to_image_attention": attention.detach()}
        image_vec = masked_mean(self.image_norm(image), image_mask)
        text_vec = masked_mean(self.text_norm(text), text_mask)
        fused = torch.cat([image_vec, text_vec], dim=-1) if self.combine == "concat" else image_vec * text_vec
        return self.classifier(self.dropout(fused))
