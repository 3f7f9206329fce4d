"""Unimodal fine-tuning of the encoders before fusion (the original design), on CPU within minutes.

* :mod:`~mmsent.finetune.base`, :mod:`~mmsent.finetune.text`, :mod:`~mmsent.finetune.image`: each encoder split
  into a frozen trunk, run once per item and cached in memory, and a trainable top run every step;
* :mod:`~mmsent.finetune.trainer`: the encoder + head task for the shared loop (:mod:`mmsent.training.loop`), early
  stopping on held-out *training* rows, resumable;
* :mod:`~mmsent.finetune.finetuned`: fine-tuned encoders on disk and :func:`load_finetuned_encoder`;
* :mod:`~mmsent.finetune.crossfit`: out-of-fold features of the training rows (K more top trainings);
* :mod:`~mmsent.finetune.stage`: the pipeline stage :func:`finetune_encoders`, which hands back a
  :class:`~mmsent.features.extract.FeatureSource`.
"""

from mmsent.finetune.finetuned import apply_finetuned, load_finetuned_encoder
from mmsent.finetune.stage import finetune_encoder, finetune_encoders, make_adapter
from mmsent.finetune.trainer import FinetuneResult, finetune

__all__ = [
    "FinetuneResult",
    "apply_finetuned",
    "finetune",
    "finetune_encoder",
    "finetune_encoders",
    "load_finetuned_encoder",
    "make_adapter",
]
