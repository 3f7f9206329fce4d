"""What every fusion model takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:  # the fusion package needs only torch at run time (config validation imports its registry)
    from mmsent.features.featureset import FeatureSet


@dataclass
class FusionInputs:
    """A batch of features, as tensors on one device.

    Shapes: ``image_pooled (B, Di)``, ``image_tokens (B, Ti, Di)``, ``image_mask (B, Ti)`` bool (True = real),
    and the same for text.
    """

    image_pooled: torch.Tensor
    image_tokens: torch.Tensor
    image_mask: torch.Tensor
    text_pooled: torch.Tensor
    text_tokens: torch.Tensor
    text_mask: torch.Tensor

    @classmethod
    def from_features(cls, feats: FeatureSet, idx: torch.Tensor | None = None,
                      device: torch.device | str = "cpu") -> FusionInputs:
        """Slices rows ``idx`` (all when None) of a FeatureSet, casts to float32 and moves to ``device``."""
        img, txt = (feats.image, feats.text) if idx is None else (feats.image.index(idx), feats.text.index(idx))
        return cls(
            img.pooled.float().to(device), img.tokens.float().to(device), img.mask.bool().to(device),
            txt.pooled.float().to(device), txt.tokens.float().to(device), txt.mask.bool().to(device),
        )

    def __len__(self) -> int:
        return int(self.image_pooled.shape[0])


class FusionModel(nn.Module):
    """Base class: ``forward(inputs) -> logits (B, num_classes)``.

    Subclasses are built by name through :func:`mmsent.fusion.registry.create_fusion_model` after registering with
    :func:`mmsent.fusion.registry.register_fusion_model`. Their constructor takes ``image_dim`` and ``text_dim``
    first, then keyword arguments with defaults that are plain JSON values (they are saved with the weights).

    Subclasses may fill ``self.last_explanation`` (a dict of tensors, e.g. gate values or attention maps)
    during ``forward`` so that callers can show which modality drove a decision; what a caller needs to read those
    tensors (e.g. which modality computed a gate) comes from :meth:`explanation_info`.
    """

    #: which modalities the model reads; used by ablation reporting
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    #: whether ``forward`` reads the token sequences; pooled-only models set False so callers can skip moving tokens
    uses_tokens: ClassVar[bool] = True
    #: training-config fields (``TrainConfig`` attribute names) that ``create_fusion_model`` passes to the
    #: constructor when given a config; each must be a constructor argument
    config_fields: ClassVar[tuple[str, ...]] = ("hidden_dim", "dropout")

    #: the registry name the model was built under (set by ``create_fusion_model``; saved with the weights)
    fusion_name: str
    #: every constructor argument, defaults included (set by ``create_fusion_model``); rebuilds the model on loading
    hparams: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.last_explanation: dict[str, torch.Tensor] = {}

    def explanation_info(self) -> dict[str, Any]:
        """Fixed facts about this model that ``last_explanation`` needs to be read (none by default)."""
        return {}

    def forward(self, inputs: FusionInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
