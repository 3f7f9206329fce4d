"""Training fusion models on cached features, metrics, and multi-model / multi-seed comparisons."""

from mmsent.fusion.registry import load_model, save_model
from mmsent.training.compare import Comparison, ModelRun, compare_models
from mmsent.training.loop import class_weights, fit
from mmsent.training.metrics import compute_metrics, format_metrics
from mmsent.training.seed import set_seed
from mmsent.training.trainer import TrainResult, predict_proba, train_model

__all__ = [
    "Comparison",
    "ModelRun",
    "TrainResult",
    "class_weights",
    "compare_models",
    "compute_metrics",
    "fit",
    "format_metrics",
    "load_model",
    "predict_proba",
    "save_model",
    "set_seed",
    "train_model",
]
