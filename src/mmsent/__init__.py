"""mmsent: multimodal (image + text) sentiment analysis.

The library is usable without the CLI::

    from mmsent import load_config, run, load_lab_dataset, create_image_encoder, create_text_encoder
    from mmsent import create_fusion_model, compare_models

Heavy names (torch, transformers) are imported on first use, so ``import mmsent`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmsent.labels import LABELS, index_to_label, label_to_index

__version__ = "0.1.0"

_LAZY = {
    "load_config": "mmsent.config",
    "RunConfig": "mmsent.config",
    "run": "mmsent.pipeline",
    "load_lab_dataset": "mmsent.data.lab_format",
    "TextCleaner": "mmsent.data.text",
    "load_image": "mmsent.data.images",
    "create_image_encoder": "mmsent.encoders",
    "create_text_encoder": "mmsent.encoders",
    "extract_features": "mmsent.features.extract",
    "FeatureCache": "mmsent.features.cache",
    "create_fusion_model": "mmsent.fusion",
    "train_model": "mmsent.training",
    "compare_models": "mmsent.training",
    "write_predictions": "mmsent.predict",
    "load": "mmsent.export",
    "export_run": "mmsent.export",
}

__all__ = ["LABELS", "label_to_index", "index_to_label", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmsent' has no attribute {name!r}")
