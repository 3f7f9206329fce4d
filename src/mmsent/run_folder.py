"""What a finished run predicts with: the chosen design's seed models and the encoders its features came from.

:func:`load_run_models` is the one answer to "which models and encoders does this run predict with?"; ``mmsent
predict``, ``mmsent serve`` and the report's explanations all go through it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mmsent.config import RunConfig, load_config
from mmsent.encoders.base import ImageEncoder, TextEncoder
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import load_model
from mmsent.training.ensemble import Predictor

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODELS_DIR = "models"
PREDICTOR_FILE = "predictor.json"
VALIDATION_FILE = "validation_predictions.csv"
OOF_FILE = "oof_predictions.csv"
FINETUNE_RECORD = "finetune.json"
_MODEL_DIR = re.compile(r"(?P<name>[a-z][a-z0-9_]*?)(?:_fold(?P<fold>\d+))?_seed(?P<seed>\d+)")


def model_dir(run_dir: str | Path, name: str, seed: int, fold: int | None = None) -> Path:
    """Where a run keeps the model of design ``name`` trained with ``seed`` (on cross-validation fold ``fold``)."""
    return Path(run_dir) / MODELS_DIR / (f"{name}_seed{seed}" if fold is None else f"{name}_fold{fold}_seed{seed}")


@dataclass
class RunModels:
    """A run's predictor, loaded.

    Attributes:
        run_dir: the run folder.
        cfg: the run's saved config.
        name: what predicts (``ensemble`` or a design).
        seeds: the seeds of its models.
        models: the trained models (eval mode), whose mean probability is the prediction.
        class_weights: the decision rule applied to that mean before the argmax, or None.
    """

    run_dir: Path
    cfg: RunConfig
    name: str
    seeds: list[int]
    models: list[FusionModel]
    class_weights: list[float] | None = None

    def encoders(self, device: str = "cpu") -> tuple[ImageEncoder, TextEncoder]:
        """The encoders the run's features came from (its fine-tuned ones when it fine-tuned)."""
        return load_run_encoders(self.run_dir, replace(self.cfg, encoders=replace(self.cfg.encoders, device=device)))


def _read_json(path: Path, fix: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object; {fix}")
    return data


def _predictor_models(run_dir: Path) -> tuple[str, list[str], list[float] | None]:
    """(name, model folder names, class weights) from ``predictor.json``, or for runs made before it existed, the
    chosen design's seed models named in ``metrics.json``."""
    fix = "run the job again"
    if (run_dir / PREDICTOR_FILE).is_file():
        data = _read_json(run_dir / PREDICTOR_FILE, fix)
        predictor = Predictor.from_dict(data, str(run_dir / PREDICTOR_FILE))
        names = data.get("models")
        if not names or not all(isinstance(n, str) and _MODEL_DIR.fullmatch(n) for n in names):
            raise ValueError(f"{run_dir / PREDICTOR_FILE}: 'models' must list folder names like gated_seed0 or "
                             f"gated_fold0_seed0; {fix}")
        return predictor.name, list(names), predictor.class_weights
    if not (run_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / PREDICTOR_FILE} not found: the run did not finish; {fix}")
    metrics = _read_json(run_dir / METRICS_FILE, fix)
    chosen = metrics.get("chosen_model")
    if not isinstance(chosen, str) or not _MODEL_DIR.fullmatch(f"{chosen}_seed0"):
        raise FileNotFoundError(f"{run_dir / METRICS_FILE} names no chosen_model: the run did not finish; {fix}")
    return chosen, [f"{chosen}_seed{int(s)}" for s in metrics.get("seeds") or [0]], None


def load_run_models(run_dir: str | Path, *, model_name: str | None = None, device: str = "cpu") -> RunModels:
    """The models a finished run predicts with (``predictor.json``), or only those of design ``model_name``.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a finished run or a model it names is missing.
        ValueError: if a run file is damaged (naming the file and the fix).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / CONFIG_FILE} not found; is {run_dir} a run directory? (`mmsent run "
                                "--out RUN_DIR` makes one)")
    cfg = load_config(run_dir / CONFIG_FILE)
    name, names, class_weights = _predictor_models(run_dir)
    if model_name and model_name != name:
        names = [n for n in names if _MODEL_DIR.fullmatch(n)["name"] == model_name]
        name, class_weights = model_name, None
        if not names:
            raise FileNotFoundError(f"{run_dir}: no saved {model_name} models; the run saved only its predictor's "
                                    "members (see predictor.json)")
    dirs = [run_dir / MODELS_DIR / n for n in names]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: saved model folder(s) missing: {', '.join(missing)}; run the job again")
    seeds = sorted({int(_MODEL_DIR.fullmatch(n)["seed"]) for n in names})
    return RunModels(run_dir, cfg, name, seeds, [load_model(d, device) for d in dirs], class_weights)


def load_run_encoders(run_dir: str | Path, cfg: RunConfig) -> tuple[ImageEncoder, TextEncoder]:
    """The encoders a run extracted with: built from its config, with its fine-tuned weights when it fine-tuned.

    Raises:
        FileNotFoundError: if the run fine-tuned but its record or a fine-tuned folder it names is gone.
    """
    image, text = create_encoders_from_config(cfg.encoders, cache_dir=Path(cfg.cache_dir).expanduser() / "models")
    if not cfg.finetune.enabled:
        return image, text
    from mmsent.finetune.finetuned import apply_finetuned  # local: only fine-tuned runs need it

    path = Path(run_dir) / FINETUNE_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run's fine-tuning did not finish; run it again")
    record = _read_json(path, "run the job again")
    for encoder in (image, text):
        entry = record.get(encoder.modality, {})
        if entry.get("dir"):  # absolute in a run, relative to the folder in an exported one
            apply_finetuned(encoder, Path(run_dir) / entry["dir"])
    return image, text
