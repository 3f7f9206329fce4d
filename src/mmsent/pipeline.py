"""The main job, stage by stage: load → split → features (fine-tuned encoders when enabled; cached) → compare →
choose → predict → report.

Each stage is a plain function so the library can be driven without the CLI; :func:`run` chains them and writes
everything under one run directory::

    from mmsent.config import load_config
    from mmsent.pipeline import run
    result = run(load_config(overrides=["data.root=/path/to/lab5"]), "runs/lab5")
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.config import RunConfig, validate
from mmsent.data.lab_format import load_lab_dataset
from mmsent.data.records import LabDataset
from mmsent.data.sample import sample_dataset_path
from mmsent.data.splits import Split, check_split, kfold_splits, load_split, make_split, save_split
from mmsent.data.text import TextCleaner
from mmsent.device import resolve_device
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.features.cache import FeatureCache
from mmsent.features.extract import FeatureSource, extract_features
from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import save_model
from mmsent.labels import LABELS
from mmsent.predict import write_predictions
from mmsent.run_folder import METRICS_FILE, MODELS_DIR, load_run_models, model_dir
from mmsent.training.compare import Comparison, compare_models
from mmsent.training.metrics import compute_metrics
from mmsent.training.trainer import predict_proba

log = logging.getLogger("mmsent.pipeline")

PREDICTIONS_FILE = "predictions.txt"


@dataclass
class PipelineResult:
    """What :func:`run` produced; every path lies under ``run_dir``."""

    run_dir: Path
    comparison: Comparison
    chosen_model: str
    predictions_path: Path | None
    timings: dict[str, float] = field(default_factory=dict)


class Stopwatch:
    """Wall-clock seconds per named stage (``with clock("extract_seconds"): ...``) and in total."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - t

    def finish(self) -> dict[str, float]:
        self.timings["total_seconds"] = time.perf_counter() - self.start
        # ru_maxrss is in KiB on Linux
        self.timings["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self.timings


def resolve_data_root(cfg: RunConfig) -> Path:
    """The dataset folder of a config: ``data.root`` or, when unset, the bundled sample."""
    return Path(cfg.data.root).expanduser() if cfg.data.root else sample_dataset_path()


def load_dataset(cfg: RunConfig) -> LabDataset:
    """Reads and validates the dataset named by ``cfg.data`` (raises or skips per ``data.on_error``)."""
    root = resolve_data_root(cfg)
    log.info("reading dataset %s", root)
    return load_lab_dataset(root, on_error=cfg.data.on_error, max_image_pixels=cfg.data.max_image_pixels)


def prepare_split(cfg: RunConfig, dataset: LabDataset, run_dir: Path | None = None) -> Split:
    """Makes (or reuses, with ``data.split_file``) the train/validation split and writes it to the run dir."""
    if cfg.data.split_file:
        split = load_split(cfg.data.split_file)
        log.info("reusing split %s", cfg.data.split_file)
    elif cfg.data.kfold:
        folds = kfold_splits(dataset.train, cfg.data.kfold, cfg.data.split_seed)
        if not 0 <= cfg.data.fold < len(folds):
            raise ValueError(f"data.fold={cfg.data.fold} is out of range for data.kfold={cfg.data.kfold} "
                             f"(use 0..{len(folds) - 1})")
        if run_dir is not None:
            for i, fold in enumerate(folds):
                save_split(fold, Path(run_dir) / f"split_fold{i}.csv")
        split = folds[cfg.data.fold]
        log.info("fold %d of %d (all folds written; run the others with --set data.fold=N)", cfg.data.fold,
                 len(folds))
    else:
        split = make_split(dataset.train, cfg.data.val_fraction, cfg.data.split_seed)
    check_split(split, dataset.train)
    if run_dir is not None:
        save_split(split, Path(run_dir) / "split.csv")
    log.info("split: %d train / %d validation rows", len(split.train), len(split.val))
    return split


def feature_source(cfg: RunConfig, dataset: LabDataset, split: Split, run_dir: Path | None = None,
                   progress: bool = True) -> FeatureSource:
    """The encoders to extract with: the configured ones, or (``finetune.enabled``) fine-tuned on the split's training
    rows, with out-of-fold features for the cross-fitted modalities' training rows."""
    if cfg.finetune.enabled:
        from mmsent.finetune import finetune_encoders  # local: the default pipeline never imports it

        return finetune_encoders(cfg, dataset, split, run_dir, progress=progress)
    return configured_source(cfg)


def configured_source(cfg: RunConfig) -> FeatureSource:
    """The encoders ``cfg.encoders`` names, as built (pretrained weights)."""
    cache_dir = Path(cfg.cache_dir).expanduser() / "models"
    return FeatureSource(*create_encoders_from_config(cfg.encoders, cache_dir=cache_dir))


def extract(cfg: RunConfig, examples: list, source: FeatureSource | None = None, progress: bool = True,
            stats: dict[str, Any] | None = None) -> FeatureSet:
    """Features of ``examples``, from the content-keyed cache where possible.

    ``source`` defaults to the configured encoders; ``stats``, when given, receives per-modality cache and
    throughput figures.
    """
    return extract_features(examples, source or configured_source(cfg), TextCleaner(cfg.cleaning),
                            FeatureCache(Path(cfg.cache_dir).expanduser()),
                            batch_size=cfg.encoders.batch_size, progress=progress,
                            max_image_pixels=cfg.data.max_image_pixels, num_threads=cfg.encoders.num_threads,
                            stats=stats)


def compare(cfg: RunConfig, feats: FeatureSet, split: Split, labels: dict[str, str],
            progress: bool = True) -> Comparison:
    """Every model of ``compare.models`` × every seed on the split, with the per-model overrides that apply."""
    overrides = {name: o for name, o in cfg.compare.model_overrides.items() if name in cfg.compare.models}
    return compare_models(feats.select(split.train + split.val), labels, split, cfg.compare.models,
                          cfg.compare.seeds, cfg.training, progress=progress, model_overrides=overrides,
                          workers=cfg.compare.workers)


def choose_model(cfg: RunConfig, comparison: Comparison) -> str:
    """The model that predicts: the config's choice, or the highest mean validation macro-F1."""
    if cfg.compare.predict_with == "best":
        return comparison.best_model()
    if cfg.compare.predict_with not in comparison.model_names():
        raise ValueError(f"compare.predict_with={cfg.compare.predict_with!r} is not among the compared models "
                         f"{comparison.model_names()}; use 'best' or one of those")
    return cfg.compare.predict_with


def save_chosen_models(comparison: Comparison, name: str, cfg: RunConfig, run_dir: Path) -> list[FusionModel]:
    """Replaces ``run_dir/models`` with every seed's model of ``name`` (safetensors + JSON); returns them.

    Models of an earlier run into the same folder are removed first, so nothing stale is ever loaded with them.
    """
    shutil.rmtree(run_dir / MODELS_DIR, ignore_errors=True)
    meta = {"model": name, "labels": list(LABELS), "encoders": cfg.to_dict()["encoders"],
            "cleaning": cfg.to_dict()["cleaning"]}
    models = []
    for run in comparison.runs:
        if run.model == name:
            model = comparison.models[(name, run.seed)]
            save_model(model, model_dir(run_dir, name, run.seed), {**meta, "seed": run.seed,
                                                                   "val_metrics": run.metrics})
            models.append(model)
    return models


def ensemble_proba(models: list, feats: FeatureSet, device: str = "auto") -> np.ndarray:
    """Mean class probabilities of several models (the seeds of one design)."""
    dev = resolve_device(device)
    return np.mean([predict_proba(m, feats, device=dev) for m in models], axis=0)


def predict_test(cfg: RunConfig, dataset: LabDataset, feats: FeatureSet, models: list, run_dir: Path) -> Path | None:
    """Writes the seed ensemble's predictions for the unlabeled rows (``predictions.txt``), if there are any."""
    if not dataset.test:
        log.warning("the dataset has no unlabeled test rows; no prediction file written")
        return None
    path = run_dir / PREDICTIONS_FILE
    test_feats = feats.select([ex.guid for ex in dataset.test])
    write_predictions(path, dataset.test, ensemble_proba(models, test_feats, cfg.training.device))
    log.info("wrote %d predictions to %s", len(dataset.test), path)
    return path


def write_summary(run_dir: Path, cfg: RunConfig, chosen: str, split: Split, ensemble_metrics: dict[str, Any],
                  timings: dict[str, float], extraction: dict[str, Any]) -> None:
    """``metrics.json``: the chosen model and seeds, the seed ensemble's validation metrics, timings, machine."""
    summary = {"chosen_model": chosen, "chosen_by": cfg.compare.predict_with, "seeds": cfg.compare.seeds,
               "validation_rows": len(split.val), "ensemble_validation_metrics": ensemble_metrics,
               "timings": timings, "extraction": extraction, "data_root": str(resolve_data_root(cfg)),
               "machine": {"python": platform.python_version(), "platform": platform.platform()}}
    (run_dir / METRICS_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")


def build_report_safely(run_dir: Path) -> None:
    """The HTML report; a failure is logged with the command that rebuilds it, never fatal to the run."""
    try:
        from mmsent.report import build_report  # local: matplotlib is needed only here

        build_report(run_dir)
    except Exception:
        log.exception("building the HTML report failed; rebuild it with `mmsent report %s`", run_dir)


def run(cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> PipelineResult:
    """The whole main job on one dataset; writes config, split, comparison, models, predictions, metrics, report."""
    validate(cfg)  # a config changed in code is checked like a loaded one, before any work
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    clock, extraction = Stopwatch(), {}
    with clock("load_seconds"):
        dataset = load_dataset(cfg)
        write_data_report(run_dir / "data_report.json", dataset)
        split = prepare_split(cfg, dataset, run_dir)
    with clock("finetune_seconds"):
        source = feature_source(cfg, dataset, split, run_dir, progress)
    with clock("extract_seconds"):
        feats = extract(cfg, dataset.train + dataset.test, source, progress, extraction)
    with clock("compare_seconds"):
        labels = dataset.labels()
        comparison = compare(cfg, feats, split, labels, progress=progress)
        comparison.save(run_dir)
        write_validation_predictions(run_dir / "validation_predictions.csv", comparison, labels)
    print(comparison.to_markdown())
    chosen = choose_model(cfg, comparison)
    models = save_chosen_models(comparison, chosen, cfg, run_dir)
    # The seed ensemble is what predicts, so its validation score is reported too.
    val_probs = ensemble_proba(models, feats.select(split.val), cfg.training.device)
    ensemble_metrics = compute_metrics([LABELS.index(labels[g]) for g in split.val], val_probs.argmax(1))
    predictions_path = predict_test(cfg, dataset, feats, models, run_dir)
    write_summary(run_dir, cfg, chosen, split, ensemble_metrics, clock.finish(), extraction)
    build_report_safely(run_dir)
    return PipelineResult(run_dir, comparison, chosen, predictions_path, clock.timings)


def predict_from_run(run_dir: str | Path, cfg: RunConfig, out: str | Path | None = None,
                     progress: bool = True) -> Path:
    """Predicts the test rows of ``cfg.data`` with the models a finished run saved.

    The encoder and cleaning settings are taken from the run's own saved config, so features match training.
    """
    ensemble = load_run_models(run_dir)
    run_cfg = ensemble.cfg
    run_cfg.data, run_cfg.cache_dir = cfg.data, cfg.cache_dir
    dataset = load_dataset(run_cfg)
    if not dataset.test:
        raise ValueError(f"{resolve_data_root(run_cfg)}: no unlabeled rows to predict (test_without_label.txt)")
    source = FeatureSource(*ensemble.encoders(run_cfg.encoders.device))
    feats = extract(run_cfg, dataset.test, source, progress=progress)
    out_path = Path(out) if out else Path(run_dir) / PREDICTIONS_FILE
    write_predictions(out_path, dataset.test, ensemble_proba(ensemble.models, feats, run_cfg.training.device))
    return out_path


def write_validation_predictions(path: Path, comparison: Comparison, labels: dict[str, str]) -> None:
    """Every run's validation probabilities in long form (guid, gold, model, seed, p_*), for reports and audits."""
    header = "guid,gold,model,seed," + ",".join(f"p_{name}" for name in LABELS) + "\n"
    lines = [header]
    for run in comparison.runs:
        for guid, row in zip(comparison.val_guids, run.val_probs):
            lines.append(f"{guid},{labels[guid]},{run.model},{run.seed}," + ",".join(f"{p:.6f}" for p in row) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def data_report(dataset: LabDataset) -> dict[str, Any]:
    """What ``data_report.json`` holds: counts, encodings, skipped rows, issues and label counts."""
    rep = dataset.report
    return {
        "root": str(dataset.root),
        "counts": rep.counts,
        "encodings": rep.encodings,
        "skipped": rep.skipped,
        "issues": [str(i) for i in rep.issues],
        "label_counts": {name: sum(ex.label == name for ex in dataset.train) for name in LABELS},
    }


def write_data_report(path: Path, dataset: LabDataset) -> None:
    path.write_text(json.dumps(data_report(dataset), indent=2), encoding="utf-8")
