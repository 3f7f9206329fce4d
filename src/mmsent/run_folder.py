"""What a finished run predicts with: the chosen design's seed models and the encoders its features came from.

:func:`load_run_models` is the one answer to "which models and encoders does this run predict with?"; ``mmsent
predict``, ``mmsent serve`` and the report's explanations all go through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from mmsent.config import RunConfig, load_config
from mmsent.encoders.base import ImageEncoder, TextEncoder
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import load_model

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODELS_DIR = "models"
FINETUNE_RECORD = "finetune.json"


def model_dir(run_dir: str | Path, name: str, seed: int) -> Path:
    """Where a run keeps the model of design ``name`` trained with ``seed``."""
    return Path(run_dir) / MODELS_DIR / f"{name}_seed{seed}"


@dataclass
class RunModels:
    """A run's predicting ensemble.

    Attributes:
        run_dir: the run folder.
        cfg: the run's saved config.
        name: the chosen design.
        seeds: the seeds of its models, in :attr:`models` order.
        models: the trained models (eval mode), whose mean probability is the prediction.
    """

    run_dir: Path
    cfg: RunConfig
    name: str
    seeds: list[int]
    models: list[FusionModel]

    def encoders(self, device: str = "cpu") -> tuple[ImageEncoder, TextEncoder]:
        """The encoders the run's features came from (its fine-tuned ones when it fine-tuned)."""
        return load_run_encoders(self.run_dir, replace(self.cfg, encoders=replace(self.cfg.encoders, device=device)))


def _chosen(run_dir: Path) -> tuple[str | None, list[int] | None]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None, None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    seeds = metrics.get("seeds")
    return metrics.get("chosen_model"), [int(s) for s in seeds] if seeds else None


def load_run_models(run_dir: str | Path, *, model_name: str | None = None, device: str = "cpu") -> RunModels:
    """The models a finished run predicts with: the chosen design (or ``model_name``), every seed the run trained.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a finished run or a model it names is missing.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / CONFIG_FILE} not found; is {run_dir} a run directory? (`mmsent run "
                                "--out RUN_DIR` makes one)")
    cfg = load_config(run_dir / CONFIG_FILE)
    chosen, seeds = _chosen(run_dir)
    name = model_name or chosen
    if name is None:
        raise FileNotFoundError(f"{run_dir / METRICS_FILE} not found or names no chosen_model: the run did not "
                                "finish; run it again")
    if seeds is None:
        seeds = list(cfg.compare.seeds)
    dirs = [model_dir(run_dir, name, s) for s in seeds]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: no saved {name} model for seed(s) {', '.join(missing)}; the run saves "
                                f"only its chosen design ({chosen})")
    return RunModels(run_dir, cfg, name, seeds, [load_model(d, device) for d in dirs])


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
    record = json.loads(path.read_text(encoding="utf-8"))
    for encoder in (image, text):
        entry = record.get(encoder.modality, {})
        if entry.get("dir"):
            apply_finetuned(encoder, entry["dir"])
    return image, text
