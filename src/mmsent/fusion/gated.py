"""Gated fusion: one modality decides how much of the other's features pass through."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


# Decorators apply bottom-up: "gated" registers first.
@register_fusion_model("gated_text", gate_from="text")
@register_fusion_model("gated_image", gate_from="image")
@register_fusion_model("gated")
class GatedFusion(FusionModel):
    """``logits = W(sigmoid(U x_g) * V x_o)`` with ``x_g`` the gating modality's pooled vector, ``x_o`` the other's.

    ``gate_from`` names the gating modality; ``dropout`` applies to the normalised inputs and before the classifier.
    The latest gate values ``(B, hidden_dim)`` are kept in ``last_explanation["gate"]``: they depend on the gating
    modality only, so they show how strongly it let the other one through.
    """

    uses_tokens = False
    config_fields = ("hidden_dim", "dropout", "gate_from")

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 256, dropout: float = 0.3,
                 gate_from: Literal["image", "text"] = "image", num_classes: int = len(LABELS)) -> None:
        super().__init__()
        if gate_from not in ("image", "text"):
            raise ValueError(f"gate_from must be 'image' or 'text', got {gate_from!r}")
        self.gate_from = gate_from
        gate_dim, other_dim = (image_dim, text_dim) if gate_from == "image" else (text_dim, image_dim)
        # LayerNorm first: without it the sigmoid saturates on the CNN's large unnormalised activations.
        self.gate_norm = nn.LayerNorm(gate_dim)
        self.other_norm = nn.LayerNorm(other_dim)
        self.input_dropout = nn.Dropout(dropout)
        self.gate = nn.Linear(gate_dim, hidden_dim)  # U
        self.value = nn.Linear(other_dim, hidden_dim)  # V
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim, num_classes)  # W

    def explanation_info(self) -> dict[str, Any]:
        """``{"gate_from": ...}``: the modality that computed ``last_explanation["gate"]``."""
        return {"gate_from": self.gate_from}

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        x_g, x_o = ((inputs.image_pooled, inputs.text_pooled) if self.gate_from == "image"
                    else (inputs.text_pooled, inputs.image_pooled))
        gate = torch.sigmoid(self.gate(self.input_dropout(self.gate_norm(x_g))))
        value = self.value(self.input_dropout(self.other_norm(x_o)))
        self.last_explanation = {"gate": gate.detach()}
        return self.classifier(self.dropout(gate * value))
