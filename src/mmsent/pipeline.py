"""The main job, stage by stage: load → split → extract (cached) → compare → predict.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.config import RunConfig
from mmsent.data.lab_format import load_lab_dataset
from mmsent.data.records import Example, LabDataset
from mmsent.data.sample import sample_dataset_path
from mmsent.data.splits import Split, check_split, kfold_splits, load_split, make_split, save_split
from mmsent.data.text import TextCleaner
from mmsent.device import resolve_device, torch_threads
from mmsent.encoders.base import Encoder
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.features.cache import FeatureCache
from mmsent.features.extract import extract_features, extract_image_features, extract_text_features
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.fusion.registry import load_model, save_model
from mmsent.labels import LABELS
from mmsent.predict import write_predictions
from mmsent.training.compare import Comparison, compare_models
from mmsent.training.metrics import compute_metrics
from mmsent.training.trainer import predict_proba

log = logging.getLogger("mmsent.pipeline")

PREDICTIONS_FILE = "predictions.txt"
MODELS_DIR = "models"


@dataclass
class RunResult:
    """What :func:`run` produced; every path lies under ``run_dir``."""

    run_dir: Path
    comparison: Comparison
    chosen_model: str
    predictions_path: Path | None
    timings: dict[str, float] = field(default_factory=dict)


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
    elif cfg.data.kfold > 1:
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


def extract(cfg: RunConfig, dataset: LabDataset, progress: bool = True,
            stats: dict[str, Any] | None = None, encoders: tuple[Encoder, Encoder] | None = None,
            examples: Sequence[Example] | None = None) -> FeatureSet:
    """Features for every train and test row (or just ``examples``), from the content-keyed cache where possible.

    ``stats``, when given, receives per-modality cache and throughput figures. ``encoders`` (image, text) replaces
    the configured ones, e.g. fine-tuned encoders; their fingerprints key the cache.
    """
    cache_dir = Path(cfg.cache_dir).expanduser()
    image_encoder, text_encoder = encoders or create_encoders_from_config(cfg.encoders, cache_dir=cache_dir / "models")
    return extract_features(
        list(examples) if examples is not None else dataset.train + dataset.test, image_encoder, text_encoder, TextCleaner(cfg.cleaning), FeatureCache(cache_dir),
        batch_size=cfg.encoders.batch_size, progress=progress, max_image_pixels=cfg.data.max_image_pixels,
        num_threads=cfg.encoders.num_threads, stats=stats,
    )


def _training_rows_features(cfg: RunConfig, dataset: LabDataset, split: Split, encoders: tuple[Encoder, Encoder],
                            skip: set[str], stats: dict[str, Any]) -> dict[str, tuple[list[str], ModalityFeatures]]:
    """The encoders' own features of the split's training rows, for the modalities not in ``skip``.

    Their figures are added to ``stats[modality]`` (rows encoded/reused, seconds).
    """
    trained = set(split.train)
    rows = [ex for ex in dataset.train if ex.guid in trained]
    guids = [ex.guid for ex in rows]
    cache = FeatureCache(Path(cfg.cache_dir).expanduser())
    out: dict[str, tuple[list[str], ModalityFeatures]] = {}
    with torch_threads(cfg.encoders.num_threads):
        for encoder in encoders:
            modality = encoder.modality
            if modality in skip:
                continue
            part: dict[str, Any] = {}
            kw = {"batch_size": cfg.encoders.batch_size, "progress": False, "stats": part}
            if modality == "image":
                feats = extract_image_features(rows, encoder, cache, max_image_pixels=cfg.data.max_image_pixels, **kw)
            else:
                feats = extract_text_features(rows, encoder, TextCleaner(cfg.cleaning), cache, **kw)
            entry = stats.setdefault(modality, {})
            for key in ("encoded", "reused", "seconds", "encode_seconds"):
                entry[key] = entry.get(key, 0) + (part.get(key) or 0)
            if entry.get("encode_seconds"):
                entry["items_per_second"] = entry["encoded"] / entry["encode_seconds"]
            out[modality] = (guids, feats)
    return out


def compare(cfg: RunConfig, feats: FeatureSet, split: Split, labels: dict[str, str],
            progress: bool = True) -> Comparison:
    """Every model of ``compare.models`` × every seed on the split, with the per-model overrides that apply."""
    overrides = {name: o for name, o in cfg.compare.model_overrides.items() if name in cfg.compare.models}
    return compare_models(feats.select(split.train + split.val), labels, split, cfg.compare.models,
                          cfg.compare.seeds, cfg.training, progress=progress, model_overrides=overrides,
                          workers=cfg.compare.workers)


def check_predict_with(cfg: RunConfig) -> None:
    """Fails before any work if ``compare.predict_with`` names a model the run will not compare."""
    allowed = ["best", *cfg.compare.models]
    if cfg.finetune.enabled and cfg.finetune.joint.enabled:
        from mmsent.finetune.joint import joint_model_name

        allowed.append(joint_model_name(cfg.finetune.joint.fusion))
    if cfg.compare.predict_with not in allowed:
        raise ValueError(f"compare.predict_with={cfg.compare.predict_with!r} is not among the models this run compares;"
                         f" use one of {', '.join(allowed)}")


def choose_model(cfg: RunConfig, comparison: Comparison) -> str:
    """The model that predicts: the config's choice, or the highest mean validation macro-F1."""
    if cfg.compare.predict_with == "best":
        return comparison.best_model()
    if cfg.compare.predict_with not in comparison.model_names():
        raise ValueError(f"compare.predict_with={cfg.compare.predict_with!r} is not among the compared models "
                         f"{comparison.model_names()}; use 'best' or one of those")
    return cfg.compare.predict_with


def save_chosen_models(comparison: Comparison, name: str, run_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """Saves every seed's model of ``name`` under ``run_dir/models`` (safetensors + JSON)."""
    paths = []
    for run in comparison.runs:
        if run.model != name:
            continue
        path = run_dir / MODELS_DIR / f"{name}_seed{run.seed}"
        save_model(comparison.models[(name, run.seed)], path, {**meta, "seed": run.seed, "val_metrics": run.metrics})
        paths.append(path)
    return paths


def ensemble_proba(models: list, feats: FeatureSet, device: str = "auto") -> np.ndarray:
    """Mean class probabilities of several models (the seeds of one design)."""
    dev = resolve_device(device)
    return np.mean([predict_proba(m, feats, device=dev) for m in models], axis=0)


def run(cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> RunResult:
    """The whole main job on one dataset; writes config, split, comparison, models, predictions and metrics."""
    check_predict_with(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    dataset = load_dataset(cfg)
    (run_dir / "data_report.json").write_text(json.dumps(_report_dict(dataset), indent=2), encoding="utf-8")
    split = prepare_split(cfg, dataset, run_dir)
    timings["load_seconds"] = time.perf_counter() - t0

    encoders, examples, out_of_fold, joint = None, None, {}, None
    if cfg.finetune.enabled:  # fine-tune on the split's training rows, then extract with the fine-tuned encoders
        from mmsent.finetune import finetune_encoders  # local: the default pipeline never imports it

        t = time.perf_counter()
        tuned = finetune_encoders(cfg, dataset, split, run_dir, progress=progress)
        encoders, out_of_fold, joint = tuned.encoders, tuned.out_of_fold, tuned.joint
        timings["finetune_seconds"] = time.perf_counter() - t
        if out_of_fold:  # the fine-tuning already made these modalities' training-row features: encode the rest
            trained = set(split.train)
            examples = [ex for ex in dataset.train if ex.guid not in trained] + dataset.test

    t = time.perf_counter()
    extraction: dict[str, Any] = {}
    feats = extract(cfg, dataset, progress=progress, stats=extraction, encoders=encoders, examples=examples)
    if out_of_fold:
        from mmsent.finetune.crossfit import merge_out_of_fold

        own = _training_rows_features(cfg, dataset, split, encoders, skip=set(out_of_fold), stats=extraction)
        feats = merge_out_of_fold(feats, {**out_of_fold, **own})
    timings["extract_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = {ex.guid: ex.label for ex in dataset.train}
    comparison = compare(cfg, feats, split, labels, progress=progress)
    if joint is not None:  # the fusion model trained end to end reads the same features: score it beside the others
        result = joint.record.get("result", {})
        comparison.add_trained(joint.name, cfg.finetune.seed, joint.fusion, feats, labels,
                               train_seconds=float(result.get("seconds", 0.0)),
                               best_epoch=int(result.get("best_epoch", 0)), history=result.get("history"))
    comparison.save(run_dir)
    write_validation_predictions(run_dir / "validation_predictions.csv", comparison, labels)
    timings["compare_seconds"] = time.perf_counter() - t
    print(comparison.to_markdown())

    chosen = choose_model(cfg, comparison)
    models = [comparison.models[(r.model, r.seed)] for r in comparison.runs if r.model == chosen]
    meta = {"model": chosen, "labels": list(LABELS), "encoders": cfg.to_dict()["encoders"],
            "cleaning": cfg.to_dict()["cleaning"]}
    save_chosen_models(comparison, chosen, run_dir, meta)

    # The seed ensemble is what predicts, so its validation score is reported too.
    val_feats = feats.select(split.val)
    val_probs = ensemble_proba(models, val_feats, cfg.training.device)
    val_true = [LABELS.index(labels[g]) for g in split.val]
    ensemble_metrics = compute_metrics(val_true, val_probs.argmax(1))

    predictions_path = None
    if dataset.test:
        test_feats = feats.select([ex.guid for ex in dataset.test])
        predictions_path = run_dir / PREDICTIONS_FILE
        write_predictions(predictions_path, dataset.test, ensemble_proba(models, test_feats, cfg.training.device))
        log.info("wrote %d predictions to %s", len(dataset.test), predictions_path)
    else:
        log.warning("the dataset has no unlabeled test rows; no prediction file written")
    timings["total_seconds"] = time.perf_counter() - t0
    # ru_maxrss is in KiB on Linux
    timings["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    summary = {
        "chosen_model": chosen,
        "chosen_by": cfg.compare.predict_with,
        "seeds": cfg.compare.seeds,
        "validation_rows": len(split.val),
        "ensemble_validation_metrics": ensemble_metrics,
        "timings": timings,
        "extraction": extraction,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "data_root": str(resolve_data_root(cfg)),
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    try:
        from mmsent.report import build_report  # local: matplotlib is needed only here

        build_report(run_dir)
    except Exception:
        log.exception("building the HTML report failed; rebuild it with `mmsent report %s`", run_dir)
    return RunResult(run_dir, comparison, chosen, predictions_path, timings)


def predict_from_run(run_dir: str | Path, cfg: RunConfig, out: str | Path | None = None,
                     progress: bool = True) -> Path:
    """Predicts the test rows of ``cfg.data`` with the models a finished run saved.

    The encoder and cleaning settings are taken from the run's own saved config, so features match training.
    """
    run_dir = Path(run_dir)
    model_dirs = sorted((run_dir / MODELS_DIR).glob("*_seed*"))
    if not model_dirs:
        raise FileNotFoundError(f"{run_dir / MODELS_DIR}: no saved models; run `mmsent run --out RUN_DIR` "
                                "to train and save them first")
    from mmsent.config import load_config  # local: only this entry point needs the run's saved config

    run_cfg = load_config(run_dir / "config.yaml")
    run_cfg.data = cfg.data
    run_cfg.cache_dir = cfg.cache_dir
    dataset = load_dataset(run_cfg)
    if not dataset.test:
        raise ValueError(f"{resolve_data_root(run_cfg)}: no unlabeled rows to predict (test_without_label.txt)")
    encoders = None
    if run_cfg.finetune.enabled:  # the run's fine-tuned encoders, as recorded in its finetune.json
        from mmsent.finetune import load_run_encoders

        encoders = load_run_encoders(run_dir, run_cfg)
    feats = extract(run_cfg, dataset, progress=progress, encoders=encoders, examples=dataset.test)
    models = [load_model(p) for p in model_dirs]
    out_path = Path(out) if out else run_dir / PREDICTIONS_FILE
    write_predictions(out_path, dataset.test, ensemble_proba(models, feats, run_cfg.training.device))
    return out_path


def write_validation_predictions(path: Path, comparison: Comparison, labels: dict[str, str]) -> None:
    """Every run's validation probabilities in long form (guid, gold, model, seed, p_*), for reports and audits."""
    header = "guid,gold,model,seed," + ",".join(f"p_{name}" for name in LABELS) + "\n"
    lines = [header]
    for run in comparison.runs:
        for guid, row in zip(comparison.val_guids, run.val_probs):
            lines.append(f"{guid},{labels[guid]},{run.model},{run.seed}," + ",".join(f"{p:.6f}" for p in row) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def _report_dict(dataset: LabDataset) -> dict[str, Any]:
    rep = dataset.report
    return {
        "root": str(dataset.root),
        "counts": rep.counts,
        "encodings": rep.encodings,
        "skipped": rep.skipped,
        "issues": [str(i) for i in rep.issues],
        "label_counts": {name: sum(ex.label == name for ex in dataset.train) for name in LABELS},
    }
