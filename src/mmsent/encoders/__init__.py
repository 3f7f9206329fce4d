"""Pretrained encoders behind one small protocol (:class:`~mmsent.encoders.base.Encoder`), and their factories.

Encoder classes are imported lazily: ``import mmsent.encoders`` does not import transformers or the CNN packages.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmsent.encoders.base import Encoder
from mmsent.encoders.registry import (
    UnknownEncoderError,
    create_encoders_from_config,
    create_image_encoder,
    create_text_encoder,
    list_encoders,
)

_LAZY = {
    "ConvImageEncoder": "mmsent.encoders.efficientnet",
    "EfficientNetLiteEncoder": "mmsent.encoders.efficientnet",
    "HFTextEncoder": "mmsent.encoders.hf_text",
    "EncoderLoadError": "mmsent.encoders.hf_text",
    "ResNet50Encoder": "mmsent.encoders.resnet",
}

__all__ = [
    "ConvImageEncoder",
    "EfficientNetLiteEncoder",
    "Encoder",
    "EncoderLoadError",
    "HFTextEncoder",
    "ResNet50Encoder",
    "UnknownEncoderError",
    "create_encoders_from_config",
    "create_image_encoder",
    "create_text_encoder",
    "list_encoders",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmsent.encoders' has no attribute {name!r}")
