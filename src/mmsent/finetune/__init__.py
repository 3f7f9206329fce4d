"""Unimodal fine-tuning of the encoders before fusion (the original design), on CPU within minutes.

* :mod:`~mmsent.finetune.base`, :mod:`~mmsent.finetune.text`, :mod:`~mmsent.finetune.image`: each encoder split
  into a frozen trunk, run once per item and cached in memory, and a trainable top run every step;
* :mod:`~mmsent.finetune.trainer`: the loop (class-weighted loss, warm-up, early stopping on held-out *training*
  rows, mixed precision on CUDA, resumable);
* :mod:`~mmsent.finetune.checkpoint`: safetensors + JSON checkpoints, written atomically;
* :mod:`~mmsent.finetune.finetuned`: fine-tuned encoders on disk and :func:`load_finetuned_encoder`;
* :mod:`~mmsent.finetune.crossfit`: out-of-fold features of the training rows (K more top trainings);
* :mod:`~mmsent.finetune.joint`: end-to-end training of a fusion model together with both tops;
* :mod:`~mmsent.finetune.stage`: the pipeline stage :func:`finetune_encoders`.
"""

from mmsent.finetune.finetuned import apply_finetuned, load_finetuned_encoder
from mmsent.finetune.joint import JointAdapter, JointHead, finetune_joint
from mmsent.finetune.stage import finetune_encoder, finetune_encoders, load_run_encoders, make_adapter
from mmsent.finetune.trainer import FinetuneResult, StepInfo, finetune

__all__ = [
    "FinetuneResult",
    "JointAdapter",
    "JointHead",
    "StepInfo",
    "apply_finetuned",
    "finetune",
    "finetune_encoder",
    "finetune_encoders",
    "finetune_joint",
    "load_finetuned_encoder",
    "load_run_encoders",
    "make_adapter",
]
