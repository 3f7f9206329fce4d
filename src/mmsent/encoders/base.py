"""The small protocol every encoder follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import torch

from mmsent.features.featureset import ModalityFeatures


class Encoder(ABC):
    """A pretrained encoder that maps raw inputs to a pooled vector plus a token sequence with mask.

    Attributes:
        name: registry name (or hub id / local path) it was created from.
        modality: ``"image"`` or ``"text"``.
        dim: feature width of both the pooled vector and the tokens.
    """

    name: str
    modality: str
    dim: int

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the weights or the preprocessing change (feeds the cache key)."""

    @abstractmethod
    def encode(self, items: Sequence, batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        """Encodes ``items`` (image paths for image encoders, cleaned strings for text encoders).

        Returns float32 pooled ``(N, D)``, tokens ``(N, T, D)`` and a bool mask ``(N, T)``.
        """

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> "Encoder":
        """Moves the underlying network; encoders default to CPU."""
        return self

    def mark_weights_changed(self) -> None:
        """Declares that the network's weights were changed in place (fine-tuning).

        From then on the fingerprint hashes the weights in memory instead of naming the files they came from, so
        features of the changed encoder get their own cache key. Encoders that cannot be fine-tuned raise.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support changing its weights in place")


ImageItem = Path | str
