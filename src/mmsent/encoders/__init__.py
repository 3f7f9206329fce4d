"""Pretrained encoders (:class:`~mmsent.encoders.base.Encoder`) and their factories; classes are imported lazily."""

from __future__ import annotations

import importlib

from mmsent.encoders.registry import (
    UnknownEncoderError,
    create_encoders_from_config,
    create_image_encoder,
    create_text_encoder,
    list_encoders,
)

_LAZY = {
    "Encoder": "mmsent.encoders.base",
    "ImageEncoder": "mmsent.encoders.base",
    "TextEncoder": "mmsent.encoders.base",
    "ConvImageEncoder": "mmsent.encoders.efficientnet",
    "EfficientNetLiteEncoder": "mmsent.encoders.efficientnet",
    "HFTextEncoder": "mmsent.encoders.hf_text",
    "EncoderLoadError": "mmsent.encoders.base",
    "TimmImageEncoder": "mmsent.encoders.timm_image",
}

__all__ = [
    "ConvImageEncoder",
    "EfficientNetLiteEncoder",
    "Encoder",
    "EncoderLoadError",
    "ImageEncoder",
    "TextEncoder",
    "HFTextEncoder",
    "TimmImageEncoder",
    "UnknownEncoderError",
    "create_encoders_from_config",
    "create_image_encoder",
    "create_text_encoder",
    "list_encoders",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmsent.encoders' has no attribute {name!r}")
