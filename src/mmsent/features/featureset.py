"""In-memory container of extracted features for a list of examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


@dataclass
class ModalityFeatures:
    """Features of one modality for N examples.

    Attributes:
        pooled: ``(N, D)`` one vector per example.
        tokens: ``(N, T, D)`` token sequence (text token states, or image feature-map cells).
        mask: ``(N, T)`` bool, True where a token is real (not padding).
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.pooled.shape[-1])

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def index(self, idx: torch.Tensor | Sequence[int]) -> ModalityFeatures:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return ModalityFeatures(self.pooled[idx_t], self.tokens[idx_t], self.mask[idx_t])

    @staticmethod
    def concat(parts: Sequence[ModalityFeatures]) -> ModalityFeatures:
        return ModalityFeatures(
            torch.cat([p.pooled for p in parts]),
            torch.cat([p.tokens for p in parts]),
            torch.cat([p.mask for p in parts]),
        )


@dataclass
class FeatureSet:
    """Image and text features aligned with ``guids``."""

    guids: list[str]
    image: ModalityFeatures
    text: ModalityFeatures

    def __post_init__(self) -> None:
        n = len(self.guids)
        for f in fields(self):
            if f.name != "guids" and len(getattr(self, f.name)) != n:
                raise ValueError(f"FeatureSet.{f.name} has {len(getattr(self, f.name))} rows, guids has {n}")

    def __len__(self) -> int:
        return len(self.guids)

    def select(self, guids: Sequence[str]) -> FeatureSet:
        """Returns the rows for ``guids`` in that order.

        Raises:
            KeyError: naming the first guid that has no features.
        """
        pos = {g: i for i, g in enumerate(self.guids)}
        missing = [g for g in guids if g not in pos]
        if missing:
            raise KeyError(f"no features for guid(s) {missing[:5]} ({len(missing)} in all)")
        idx = [pos[g] for g in guids]
        return FeatureSet(list(guids), self.image.index(idx), self.text.index(idx))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: ``(B, T, D)`` states and a ``(B, T)`` mask -> ``(B, D)`` (0 for no real one)."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)
