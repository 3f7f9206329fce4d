"""Fusion models: each maps a batch of image + text features to logits over :data:`mmsent.labels.LABELS`.

Importing this package registers the built-in models, in the order :func:`list_fusion_models` keeps; a module added
to this folder registers its models when the registry is first queried (see :mod:`mmsent.fusion.registry`).
"""

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.concat import ConcatFusion
from mmsent.fusion.dual_stream import DualStreamFusion
from mmsent.fusion.gated import GatedFusion
from mmsent.fusion.registry import (
    create_fusion_model,
    list_fusion_models,
    load_model,
    register_fusion_model,
    save_model,
)
from mmsent.fusion.single_stream import SingleStreamFusion
from mmsent.fusion.unimodal import ImageOnly, TextOnly

__all__ = [
    "ConcatFusion", "DualStreamFusion", "FusionInputs", "FusionModel", "GatedFusion", "ImageOnly",
    "SingleStreamFusion", "TextOnly", "create_fusion_model", "list_fusion_models", "load_model",
    "register_fusion_model", "save_model",
]
