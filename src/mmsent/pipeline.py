"""The main job, stage by stage: load → split → features (fine-tuned encoders when enabled; cached) → compare →
choose → predict → report.

Each stage is a plain function so the library can be driven without the CLI; :func:`run` chains them and writes
everything under one run directory::

    from mmsent.config import load_config
    from mmsent.pipeline import run
    result = run(load_config(overrides=["data.root=/path/to/lab5"]), "runs/lab5")
"""

from __future__ import annotations

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
from mmsent.data.splits import Split, SplitError, check_split, kfold_splits, load_split, make_split, save_split
from mmsent.data.text import TextCleaner
from mmsent.device import resolve_device
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.features.cache import FeatureCache
from mmsent.features.extract import FeatureSource, extract_features
from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import fusion_key, save_model
from mmsent.evaluate import check_labels, labelled, refuse_seen_rows, score_rows, write_test_metrics
from mmsent.io import write_json
from mmsent.labels import LabelSet
from mmsent.predict import prediction_path, write_predictions
from mmsent.run_files import (
    CONFIG_FILE,
    DATA_REPORT_FILE,
    METRICS_FILE,
    OOF_FILE,
    PREDICTIONS_FILE,
    PREDICTOR_FILE,
    RUN_OUTPUTS,
    VALIDATION_FILE,
    RunFolder,
    split_file,
)
from mmsent.run_folder import load_run_models, model_dir, seal_run
from mmsent.training.compare import Comparison, combine_folds, compare_models, held_out_probs
from mmsent.training.ensemble import Predictor, build_predictor
from mmsent.training.trainer import mean_proba

log = logging.getLogger("mmsent.pipeline")



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


def clear_run_dir(run_dir: str | Path) -> Path:
    """Creates ``run_dir``, or removes an earlier run's outputs from it (other files are left alone)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_OUTPUTS:  # a rerun never reads a file of the earlier run with its own
        for path in run_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return run_dir


def resolve_data_root(cfg: RunConfig) -> Path:
    """The dataset folder of a config: ``data.root`` or, when unset, the bundled sample."""
    return Path(cfg.data.root).expanduser() if cfg.data.root else sample_dataset_path()


def load_dataset(cfg: RunConfig) -> LabDataset:
    """Reads and validates the dataset named by ``cfg.data`` (raises or skips per ``data.on_error``)."""
    root = resolve_data_root(cfg)
    log.info("reading dataset %s (%s format)", root, cfg.data.format)
    if cfg.data.format == "table":
        from mmsent.data.table import load_table_dataset

        if not cfg.data.root:
            raise ValueError("data.format=table needs data.root: the CSV, JSONL or Parquet file of the posts")
        return load_table_dataset(root, on_error=cfg.data.on_error, max_image_pixels=cfg.data.max_image_pixels)
    if cfg.data.format in ("mvsa-single", "mvsa-multiple"):
        from mmsent.data.mvsa import load_mvsa_dataset

        return load_mvsa_dataset(root, "single" if cfg.data.format == "mvsa-single" else "multiple",
                                 on_error=cfg.data.on_error, max_image_pixels=cfg.data.max_image_pixels)
    if cfg.data.format in ("splits", "hfm", "tumemo"):
        return load_release(cfg, root)
    return load_lab_dataset(root, on_error=cfg.data.on_error, max_image_pixels=cfg.data.max_image_pixels)


def load_release(cfg: RunConfig, root: Path) -> LabDataset:
    """A published protocol's train / dev / test files: a split-files folder, or the HFM or TumEmo release."""
    options = {"on_error": cfg.data.on_error, "max_image_pixels": cfg.data.max_image_pixels}
    if cfg.data.format == "hfm":
        from mmsent.data.hfm import load_hfm_dataset

        return load_hfm_dataset(root, **options)
    if cfg.data.format == "tumemo":
        from mmsent.data.tumemo import load_tumemo_dataset

        return load_tumemo_dataset(root, split_seed=cfg.data.split_seed, **options)
    from mmsent.data.split_files import load_split_files

    return load_split_files(root, labels=cfg.data.labels, **options)


def prepare_splits(cfg: RunConfig, dataset: LabDataset, run_dir: Path | None = None,
                   label_set: LabelSet | None = None) -> list[Split]:
    """The train/validation split (made, or reused with ``data.split_file``), or with ``data.kfold`` every fold of a
    stratified K-fold cross-validation; each is written to the run dir (``split.csv`` / ``split_fold{k}.csv``)."""
    if dataset.validation and (cfg.data.kfold or cfg.data.split_file):
        log.warning("the data names %d validation rows (split=val), but %s decides the split: they are used as "
                    "ordinary labelled rows", len(dataset.validation),
                    "data.kfold" if cfg.data.kfold else "data.split_file")
    if cfg.data.kfold:
        splits = kfold_splits(dataset.train, cfg.data.kfold, cfg.data.split_seed)
    elif cfg.data.split_file:
        log.info("reusing split %s", cfg.data.split_file)
        splits = [load_split(cfg.data.split_file)]
    elif dataset.validation:
        log.info("using the %d validation rows the data names (split=val)", len(dataset.validation))
        given = set(dataset.validation)
        train = [ex for ex in dataset.train if ex.guid not in given]
        classes = label_set or dataset.label_set(cfg.data.labels)
        missing = [name for name in classes if name not in {ex.label for ex in train}]
        if missing:
            raise SplitError(f"the data's split=val rows leave {len(train)} training rows, with no "
                             f"{', '.join(missing)} row: mark fewer rows val, or leave the split column empty")
        splits = [Split([ex.guid for ex in train], list(dataset.validation), cfg.data.split_seed,
                        len(given) / len(dataset.train))]
    else:
        splits = [make_split(dataset.train, cfg.data.val_fraction, cfg.data.split_seed)]
    for k, split in enumerate(splits):
        check_split(split, dataset.train)
        if run_dir is not None:
            save_split(split, Path(run_dir) / split_file(k if cfg.data.kfold else None))
    log.info("%s: %d train / %d validation rows", f"{len(splits)} folds" if cfg.data.kfold else "split",
             len(splits[0].train), len(splits[0].val))
    return splits


def prepare_split(cfg: RunConfig, dataset: LabDataset, run_dir: Path | None = None) -> Split:
    """The single train/validation split (the first fold with ``data.kfold``); see :func:`prepare_splits`."""
    return prepare_splits(cfg, dataset, run_dir)[0]


def feature_source(cfg: RunConfig, dataset: LabDataset, splits: list[Split], run_dir: Path | None = None,
                   progress: bool = True, label_set: LabelSet | None = None) -> FeatureSource:
    """The encoders to extract with: the configured ones, or (``finetune.enabled``) fine-tuned on the split's training
    rows (with ``data.kfold``: on every labelled row, cross-fitted over the folds), with out-of-fold features for the
    cross-fitted modalities' training rows."""
    if cfg.finetune.enabled:
        from mmsent.finetune import finetune_encoders  # local: the default pipeline never imports it

        return finetune_encoders(cfg, dataset, splits, run_dir, progress=progress, label_set=label_set)
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
            progress: bool = True, label_set: LabelSet | None = None) -> Comparison:
    """Every model of ``compare.models`` × every seed on the split, with the per-model overrides that apply."""
    overrides = {name: o for name, o in cfg.compare.model_overrides.items() if name in cfg.compare.models}
    return compare_models(feats.select(split.train + split.val), labels, split, cfg.compare.models,
                          cfg.compare.seeds, cfg.training, progress=progress, model_overrides=overrides,
                          workers=cfg.compare.workers, label_set=label_set)


def compare_folds(cfg: RunConfig, feats: FeatureSet, splits: list[Split], labels: dict[str, str],
                  progress: bool = True, label_set: LabelSet | None = None) -> tuple[list[Comparison], Comparison]:
    """:func:`compare` on every split; returns the per-fold comparisons (they hold the models) and one table of all."""
    parts = [compare(cfg, feats, split, labels, progress, label_set) for split in splits]
    return parts, combine_folds(parts)


def choose_predictor(cfg: RunConfig, parts: list[Comparison], table: Comparison,
                     labels: dict[str, str], label_set: LabelSet | None = None) -> tuple[Predictor, np.ndarray]:
    """The predictor ``compare.predict_with`` asks for, scored on held-out rows; and its held-out probabilities.

    ``ensemble`` averages every compared design, ``best`` takes the design with the best mean macro-F1, a name takes
    that design.
    """
    choice = fusion_key(cfg.compare.predict_with)
    designs = table.model_names()
    members = designs if choice == "ensemble" else [table.best_model() if choice == "best" else choice]
    probs = {d: held_out_probs(parts, d) for d in designs}
    classes = label_set or LabelSet.of_labels(labels.values())
    y = np.array([classes.index(labels[g]) for g in table.val_guids])
    predictor = build_predictor(probs, y, members, classes, cfg.data.positive_label)
    return predictor, np.mean([probs[m] for m in members], axis=0)


def score_baselines(cfg: RunConfig, dataset: LabDataset, guids: list[str],
                    label_set: LabelSet | None = None) -> list[dict[str, Any]]:
    """The zero-shot baseline ``compare.zero_shot`` asks for, scored on the held-out rows ``guids`` (or nothing)."""
    from mmsent.zeroshot import zero_shot_model, zero_shot_scores  # local: loads transformers' CLIP only when used

    source = zero_shot_model(cfg.compare.zero_shot, cfg.encoders.image, cfg.encoders.text)
    if source is None:
        return []
    by_guid = {ex.guid: ex for ex in dataset.train}
    try:
        return zero_shot_scores(source, [by_guid[g] for g in guids], TextCleaner(cfg.cleaning), labels=label_set,
                                positive_label=cfg.data.positive_label, device=cfg.encoders.device,
                                max_pixels=cfg.data.max_image_pixels)
    except Exception:  # a baseline, not the run's product: the trained models are still saved and predict
        log.exception("the zero-shot baseline of %s failed; the run goes on without it (compare.zero_shot=off "
                      "skips it)", source)
        return []


def save_predictor(run_dir: Path, cfg: RunConfig, parts: list[Comparison], predictor: Predictor,
                   label_set: LabelSet) -> list[FusionModel]:
    """Replaces ``run_dir/models`` with every model of the predictor's members (each fold's, each seed's) and writes
    ``predictor.json`` naming them and the classes (``id2label``); returns the models.
    """
    meta = {"encoders": cfg.to_dict()["encoders"], "cleaning": cfg.to_dict()["cleaning"]}
    models, names = [], []
    for k, part in enumerate(parts):
        for run in (r for r in part.runs if r.model in predictor.members):
            path = model_dir(run_dir, run.model, run.seed, fold=k if len(parts) > 1 else None)
            save_model(part.models[(run.model, run.seed)], path, {**meta, "model": run.model, "fold": k,
                                                                  "seed": run.seed, "val_metrics": run.metrics},
                       labels=label_set)
            models.append(part.models[(run.model, run.seed)])
            names.append(path.name)
    write_json(run_dir / PREDICTOR_FILE, {**predictor.to_dict(), "models": names, **label_set.to_json()})
    return models


def predict_test(cfg: RunConfig, dataset: LabDataset, feats: FeatureSet, models: list, predictor: Predictor,
                 run_dir: Path, label_set: LabelSet) -> Path | None:
    """Writes the predictor's labels for the test rows (``predictions.txt``), if there are any; where they carry
    labels (a published test split), scores them once into ``test_metrics.json``."""
    if not dataset.test:
        log.warning("the dataset has no unlabeled test rows; no prediction file written")
        return None
    path = run_dir / PREDICTIONS_FILE
    test_feats = feats.select([ex.guid for ex in dataset.test])
    probs = mean_proba(models, test_feats, resolve_device(cfg.training.device))
    write_predictions(path, dataset.test, probs, dataset.test_skipped, dataset.test_order,
                      labels=label_set)
    log.info("wrote %d predictions to %s", len(dataset.test), path)
    if labelled(dataset.test):
        metrics = score_rows(dataset.test, probs, label_set, cfg.data.positive_label)
        write_test_metrics(run_dir, metrics, resolve_data_root(cfg))
    return path


def write_summary(run_dir: Path, cfg: RunConfig, predictor: Predictor, table: Comparison,
                  timings: dict[str, float], extraction: dict[str, Any]) -> None:
    """``metrics.json``: the predictor, its held-out metrics, the seeds and folds, timings, machine."""
    summary = {"chosen_model": predictor.name, "chosen_by": cfg.compare.predict_with, "seeds": cfg.compare.seeds,
               "folds": table.folds, "validation_rows": len(table.val_guids), "predictor": predictor.to_dict(),
               "ensemble_validation_metrics": predictor.held_out_metrics, "timings": timings,
               "extraction": extraction, "data_root": str(resolve_data_root(cfg)),
               "machine": {"python": platform.python_version(), "platform": platform.platform()}}
    RunFolder(run_dir).write_json(METRICS_FILE, summary)


def build_report_safely(run_dir: Path) -> None:
    """The HTML report; a failure is logged with the command that rebuilds it, never fatal to the run."""
    try:
        from mmsent.report import build_report  # local: matplotlib is needed only here

        build_report(run_dir)
    except Exception:
        log.exception("building the HTML report failed; rebuild it with `mmsent report %s`", run_dir)


def track_safely(run_dir: Path, cfg: RunConfig) -> None:
    """Records the run in MLflow when ``tracking.mlflow`` is set; a failure is logged with the command that retries."""
    if not cfg.tracking.mlflow:
        return
    try:
        from mmsent.tracking import log_run  # local: MLflow is an optional extra

        log_run(run_dir, cfg.tracking.mlflow, cfg.tracking.experiment)
    except Exception:
        from mmsent.tracking import redact

        log.exception("recording the run in MLflow failed; the run itself is complete. Retry with `mmsent track %s "
                      "--mlflow %s --experiment %s`", run_dir, redact(cfg.tracking.mlflow), cfg.tracking.experiment)


def run(cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> PipelineResult:
    """The whole main job on one dataset; writes config, splits, comparison, predictor, predictions, metrics, report."""
    validate(cfg)  # a config changed in code is checked like a loaded one, before any work
    run_dir = clear_run_dir(run_dir)
    cfg.save(run_dir / CONFIG_FILE)
    clock, extraction = Stopwatch(), {}
    with clock("load_seconds"):
        dataset = load_dataset(cfg)
        label_set = dataset.label_set(cfg.data.labels)
        write_data_report(run_dir / DATA_REPORT_FILE, dataset, label_set)
        splits = prepare_splits(cfg, dataset, run_dir, label_set)
    with clock("finetune_seconds"):
        source = feature_source(cfg, dataset, splits, run_dir, progress, label_set)
    with clock("extract_seconds"):
        feats = extract(cfg, dataset.train + dataset.test, source, progress, extraction)
    with clock("compare_seconds"):
        labels = dataset.labels()
        parts, table = compare_folds(cfg, feats, splits, labels, progress, label_set)
        predictor, predictor_probs = choose_predictor(cfg, parts, table, labels, label_set)
        table.predictor = {"name": predictor.name, **predictor.held_out_metrics}
        table.baselines = score_baselines(cfg, dataset, table.val_guids, label_set)
        table.save(run_dir)
        write_held_out_predictions(run_dir, table, labels, predictor.name, predictor_probs, label_set)
    print(table.to_markdown())
    models = save_predictor(run_dir, cfg, parts, predictor, label_set)
    predictions_path = predict_test(cfg, dataset, feats, models, predictor, run_dir, label_set)
    write_summary(run_dir, cfg, predictor, table, clock.finish(), extraction)
    # Sealed once every file predicting reads is written, before the report, whose explanations load the run verified.
    seal_run(run_dir)
    build_report_safely(run_dir)
    track_safely(run_dir, cfg)
    return PipelineResult(run_dir, table, predictor.name, predictions_path, clock.timings)


def predict_from_run(run_dir: str | Path, cfg: RunConfig, out: str | Path | None = None,
                     progress: bool = True, verify: bool = True, settings: RunConfig | None = None) -> Path:
    """Predicts the test rows of ``cfg.data`` with the models a finished run saved.

    The encoder and cleaning settings are taken from the run's own saved config (or ``settings``: it with runtime
    settings, :func:`~mmsent.config.load_run_config`), so features match training. ``verify=False`` skips checking
    the run against its checksums (see :func:`~mmsent.run_folder.load_run_models`).
    """
    # checked before any work: --out must not land on the dataset, the models or a file that is not ours
    out_path = prediction_path(out, run_dir, resolve_data_root(cfg)) if out else Path(run_dir) / PREDICTIONS_FILE
    ensemble = load_run_models(run_dir, verify=verify, cfg=settings)
    run_cfg = ensemble.cfg
    run_cfg.data, run_cfg.cache_dir = cfg.data, cfg.cache_dir
    dataset = load_dataset(run_cfg)
    if not dataset.test:
        raise ValueError(f"{resolve_data_root(run_cfg)}: no unlabeled rows to predict (test_without_label.txt, or a "
                         "table's rows without a label)")
    if dataset.train:  # a labelled folder: its classes must be the model's, or the tags would mean other things
        dataset.label_set(cfg.data.labels).require_same(ensemble.labels, f"the data at {resolve_data_root(run_cfg)}",
                                                         f"the run {run_dir}")
    check_labels(dataset.test, ensemble.labels)
    source = FeatureSource(*ensemble.encoders(run_cfg.encoders.device))
    feats = extract(run_cfg, dataset.test, source, progress=progress)
    write_predictions(out_path, dataset.test, ensemble.proba(feats, resolve_device(run_cfg.training.device)),
                      dataset.test_skipped, dataset.test_order, labels=ensemble.labels)
    return out_path


def evaluate_from_run(run_dir: str | Path, cfg: RunConfig, progress: bool = True, verify: bool = True,
                      settings: RunConfig | None = None) -> dict[str, Any]:
    """Scores a finished run on the labelled test rows of ``cfg.data`` (rows it never trained or selected on) and
    writes ``test_metrics.json`` into the run; returns the metrics.

    Args:
        settings: the run's config with runtime settings (:func:`~mmsent.config.load_run_config`: device, batch
            size, ...); default: its saved config.

    Raises:
        ValueError: for no labelled test rows, a row the run trained or validated on, or a label the run's models do
            not predict (each naming the row and the fix).
    """
    ensemble = load_run_models(run_dir, verify=verify, cfg=settings)
    run_cfg = ensemble.cfg
    run_cfg.data, run_cfg.cache_dir = cfg.data, cfg.cache_dir
    dataset = load_dataset(run_cfg)
    scored = [dataset.test[i] for i in labelled(dataset.test)]
    if not scored:
        raise ValueError(f"{resolve_data_root(run_cfg)}: no labelled test rows to score (a test split, a table's "
                         "split=test rows with a label, or a lab test file with real tags)")
    refuse_seen_rows(dataset, run_dir)
    check_labels(scored, ensemble.labels)  # before any feature is extracted
    feats = extract(run_cfg, scored, FeatureSource(*ensemble.encoders(run_cfg.encoders.device)), progress=progress)
    probs = ensemble.proba(feats, resolve_device(run_cfg.training.device))
    metrics = score_rows(scored, probs, ensemble.labels, cfg.data.positive_label)
    write_test_metrics(run_dir, metrics, resolve_data_root(run_cfg))
    return metrics


def write_held_out_predictions(run_dir: Path, table: Comparison, labels: dict[str, str], predictor_name: str,
                               predictor_probs: np.ndarray, label_set: LabelSet) -> Path:
    """Every run's probabilities for the rows it never trained on, in long form (guid, gold, model, fold, seed, p_*),
    and the predictor's (seed 0; only when it is an ensemble): ``validation_predictions.csv`` for a single split,
    ``oof_predictions.csv`` (every labelled row once per design and seed) with ``data.kfold``."""
    path = run_dir / (OOF_FILE if table.folds > 1 else VALIDATION_FILE)
    lines = ["guid,gold,model,fold,seed," + ",".join(f"p_{name}" for name in label_set) + "\n"]
    offset = 0
    for k in range(table.folds):
        runs = [r for r in table.runs if r.fold == k]
        guids = table.val_guids[offset : offset + len(runs[0].val_probs)]
        for run in runs:
            lines += [f"{g},{labels[g]},{run.model},{k},{run.seed}," + ",".join(f"{p:.6f}" for p in row) + "\n"
                      for g, row in zip(guids, run.val_probs)]
        offset += len(guids)
    if predictor_name not in table.model_names():
        lines += [f"{g},{labels[g]},{predictor_name},-1,0," + ",".join(f"{p:.6f}" for p in row) + "\n"
                  for g, row in zip(table.val_guids, predictor_probs)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def data_report(dataset: LabDataset, label_set: LabelSet | None = None) -> dict[str, Any]:
    """What ``data_report.json`` holds: counts, encodings, skipped rows, issues, the classes (default: the dataset's
    own, see :meth:`~mmsent.data.records.LabDataset.label_set`) and their counts."""
    label_set = label_set or dataset.label_set()
    rep = dataset.report
    return {
        "root": str(dataset.root),
        "counts": rep.counts,
        "encodings": rep.encodings,
        "skipped": rep.skipped,
        "issues": [str(i) for i in rep.issues],
        "warnings": rep.warnings,
        **label_set.to_json(),
        "label_counts": {name: sum(ex.label == name for ex in dataset.train) for name in label_set},
        **({"test_label_counts": counts} if (counts := _test_label_counts(dataset, label_set)) else {}),
        **({"label_fusion": rep.label_fusion} if rep.label_fusion else {}),
    }


def _test_label_counts(dataset: LabDataset, label_set: LabelSet) -> dict[str, int]:
    """Labelled test rows per class (empty when the test rows are unlabelled)."""
    if not any(ex.label for ex in dataset.test):
        return {}
    return {name: sum(ex.label == name for ex in dataset.test) for name in label_set}


def write_data_report(path: Path, dataset: LabDataset, label_set: LabelSet) -> None:
    write_json(path, data_report(dataset, label_set))
