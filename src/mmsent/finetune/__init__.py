"""Unimodal fine-tuning of the encoders before fusion, on CPU within minutes.

Each encoder is split into a frozen trunk, run once per item and cached, and a trainable top run every step
(:mod:`~mmsent.finetune.text`, :mod:`~mmsent.finetune.image`); :mod:`~mmsent.finetune.trainer` adapts the shared
loop (early stopping on held-out *training* rows, resumable); :mod:`~mmsent.finetune.finetuned` keeps fine-tuned
encoders on disk; :mod:`~mmsent.finetune.crossfit` makes out-of-fold features of the training rows; and
:func:`~mmsent.finetune.stage.finetune_encoders`, the pipeline stage, returns a
:class:`~mmsent.features.extract.FeatureSource`.
"""

from mmsent.finetune.finetuned import apply_finetuned
from mmsent.finetune.stage import finetune_encoder, finetune_encoders, make_adapter
from mmsent.finetune.trainer import FinetuneResult, finetune

__all__ = ["FinetuneResult", "apply_finetuned", "finetune", "finetune_encoder", "finetune_encoders", "make_adapter"]
