"""What every fusion model takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:  # only torch at run time: config validation imports the registry
    from mmsent.features.featureset import FeatureSet


@dataclass
class FusionInputs:
    """A batch of features on one device: pooled ``(B, D)``, tokens ``(B, T, D)``, mask ``(B, T)`` (True = real)."""

    image_pooled: torch.Tensor
    image_tokens: torch.Tensor
    image_mask: torch.Tensor
    text_pooled: torch.Tensor
    text_tokens: torch.Tensor
    text_mask: torch.Tensor

    @classmethod
    def from_features(cls, feats: FeatureSet, idx: torch.Tensor | None = None,
                      device: torch.device | str = "cpu") -> FusionInputs:
        """Rows ``idx`` (all when None) of a FeatureSet, as float32 (masks bool) on ``device``."""
        img, txt = (feats.image, feats.text) if idx is None else (feats.image.index(idx), feats.text.index(idx))
        return cls(
            img.pooled.float().to(device), img.tokens.float().to(device), img.mask.bool().to(device),
            txt.pooled.float().to(device), txt.tokens.float().to(device), txt.mask.bool().to(device),
        )

    def __len__(self) -> int:
        return int(self.image_pooled.shape[0])


class FusionModel(nn.Module):
    """Base class: ``forward(inputs) -> logits (B, num_classes)``; see :mod:`mmsent.fusion.registry`.

    The constructor takes ``image_dim, text_dim``, then named arguments with JSON-able defaults (saved with the
    weights). ``forward`` may fill ``last_explanation`` (e.g. gate values, attention maps); what is needed to read
    it comes from :meth:`explanation_info`.
    """

    #: modalities the model reads (ablation reporting)
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    #: whether ``forward`` reads the token sequences (False: callers need not move them)
    uses_tokens: ClassVar[bool] = True
    #: ``TrainConfig`` fields that ``create_fusion_model`` passes to the constructor
    config_fields: ClassVar[tuple[str, ...]] = ("hidden_dim", "dropout")
    #: registry name and every constructor argument, set by ``create_fusion_model`` and saved with the weights
    fusion_name: str
    hparams: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.last_explanation: dict[str, torch.Tensor] = {}

    def explanation_info(self) -> dict[str, Any]:
        """Fixed facts needed to read ``last_explanation`` (none by default)."""
        return {}

    @property
    def num_classes(self) -> int:
        """The width of the logits, as ``create_fusion_model`` recorded it (3, the sentiment classes, otherwise)."""
        hparams = self.__dict__.get("hparams") or {}
        return int(hparams.get("num_classes", 3))

    def forward(self, inputs: FusionInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
