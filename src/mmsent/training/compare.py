"""Training several fusion models over several seeds on one split, and summarising them side by side."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from mmsent.config import TrainConfig
from mmsent.data.splits import holdout_rows
from mmsent.run_files import COMPARISON_FILES, RunFolder
from mmsent.device import resolve_device
from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import create_fusion_model
from mmsent.labels import LabelSet, LabelsLike, as_label_set
from mmsent.training.metrics import compute_metrics, format_metrics
from mmsent.training.seed import set_seed
from mmsent.training.trainer import predict_proba, take_batch, to_inputs, train_model

_SCORES = ("accuracy", "macro_f1", "weighted_f1")


class SplitLike(Protocol):
    """Anything with ``train`` and ``val`` guid lists."""

    train: Sequence[str]
    val: Sequence[str]


@dataclass
class ModelRun:
    """One model trained with one seed.

    Attributes:
        model: registry name.
        seed: the seed of its init, batch order and dropout.
        metrics: validation metrics of the kept epoch (see :func:`compute_metrics`); the validation rows never
            chose that epoch.
        best_epoch: 1-based epoch kept, chosen on the run's early-stopping holdout.
        train_seconds: wall-clock training time.
        history: per-epoch training loss and early-stopping holdout scores (``val_*`` keys).
        val_probs: ``(N_val, 3)`` validation probabilities, in the order of its fold's validation guids.
        fold: the cross-validation fold it was trained for (0 with a single split).
    """

    model: str
    seed: int
    metrics: dict[str, Any]
    best_epoch: int
    train_seconds: float
    history: list[dict[str, float]]
    val_probs: np.ndarray = field(repr=False)
    fold: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("val_probs")
        return d


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    # Sample std (ddof=1): the spread we would expect from another seed; 0 with a single run.
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


@dataclass
class Comparison:
    """Runs of several models x seeds on one split, and their trained models.

    Attributes:
        runs: one :class:`ModelRun` per (model, seed), in training order.
        models: trained models (best-epoch weights, eval mode) keyed by ``(name, seed)``.
        val_guids: validation guids, the row order of every run's ``val_probs`` (with folds: each fold's in turn).
        train_size: number of training rows (of one fold).
        config: the training config used.
        folds: cross-validation folds the runs cover (see :func:`combine_folds`).
        predictor: the run's predictor and its held-out scores, shown under the table (set by the pipeline).
        baselines: untrained baselines scored on the same rows (zero-shot CLIP), each with ``name`` and scores.
    """

    runs: list[ModelRun]
    models: dict[tuple[str, int], FusionModel] = field(repr=False)
    val_guids: list[str] = field(repr=False)
    train_size: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    folds: int = 1
    predictor: dict[str, Any] | None = None
    baselines: list[dict[str, Any]] = field(default_factory=list)

    def model_names(self) -> list[str]:
        """Model names in the order they were run."""
        return list(dict.fromkeys(r.model for r in self.runs))

    def summary(self) -> list[dict[str, Any]]:
        """Per model: ``n_seeds``, ``{score}_mean``/``{score}_std`` for accuracy, macro_f1, weighted_f1,
        ``train_seconds_mean`` and ``best_epoch_mean``."""
        rows = []
        for name in self.model_names():
            runs = [r for r in self.runs if r.model == name]
            row: dict[str, Any] = {"model": name, "n_seeds": len(runs)}
            for score in _SCORES:
                row[f"{score}_mean"], row[f"{score}_std"] = _mean_std([r.metrics[score] for r in runs])
            row["train_seconds_mean"] = float(np.mean([r.train_seconds for r in runs]))
            row["best_epoch_mean"] = float(np.mean([r.best_epoch for r in runs]))
            rows.append(row)
        return rows

    def best_model(self) -> str:
        """The model with the highest mean validation macro-F1 (first run wins ties)."""
        if not self.runs:
            raise ValueError("empty comparison")
        return max(self.summary(), key=lambda row: row["macro_f1_mean"])["model"]

    def to_markdown(self) -> str:
        """A table of mean ± std over seeds, best model (by macro-F1) in bold."""
        best = self.best_model() if self.runs else None
        lines = ["| model | accuracy | macro-F1 | weighted-F1 | train s |", "|---|---|---|---|---|"]
        for row in self.summary():
            name = f"**{row['model']}**" if row["model"] == best else row["model"]
            cells = [f"{row[f'{s}_mean']:.3f} ± {row[f'{s}_std']:.3f}" for s in _SCORES]
            lines.append(f"| {name} | {' | '.join(cells)} | {row['train_seconds_mean']:.1f} |")
        if self.predictor:
            p = self.predictor
            lines.append(f"| *predictor: {p['name']}* | {p['accuracy']:.3f} | {p['macro_f1']:.3f} | "
                         f"{p['weighted_f1']:.3f} | |")
        for b in self.baselines:
            lines.append(f"| *{b['name']}* | {b['accuracy']:.3f} | {b['macro_f1']:.3f} | {b['weighted_f1']:.3f} | |")
        seeds = ", ".join(map(str, sorted({r.seed for r in self.runs})))
        over = f"{self.folds} folds x seeds {seeds}" if self.folds > 1 else f"seeds {seeds}"
        rows = "out-of-fold rows (every labelled row once)" if self.folds > 1 else "validation rows"
        lines.append("")
        stop = self.config.get("stop_fraction")
        held = f" ({stop:.0%} of them held out per run to choose its epoch)" if stop else ""
        lines.append(f"Mean ± sample std over {over}; {self.train_size} training rows{held}, {len(self.val_guids)} "
                     f"{rows}; best design by mean macro-F1 in bold; the predictor is scored once on the same rows.")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"best_model": self.best_model() if self.runs else None, "summary": self.summary(),
                "runs": [r.to_dict() for r in self.runs], "train_size": self.train_size,
                "val_size": len(self.val_guids), "folds": self.folds, "predictor": self.predictor,
                "baselines": self.baselines, "config": self.config}

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Writes ``comparison.md``, ``comparison.json`` (everything but the models and probabilities) and
        ``comparison.csv`` (one row per run).

        Returns:
            ``{"md", "json", "csv"}`` paths.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = RunFolder(out)
        paths = {kind: files / name for kind, name in COMPARISON_FILES.items()}
        files.write_text(COMPARISON_FILES["md"], self.to_markdown())
        files.write_json(COMPARISON_FILES["json"], self.to_dict())
        with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["model", "fold", "seed", *_SCORES, "best_epoch", "epochs_run", "train_seconds"])
            for r in self.runs:
                writer.writerow([r.model, r.fold, r.seed, *(f"{r.metrics[s]:.6f}" for s in _SCORES), r.best_epoch,
                                 len(r.history), f"{r.train_seconds:.2f}"])
        return paths


def combine_folds(parts: Sequence[Comparison]) -> Comparison:
    """One table over the comparisons of several folds: every run, tagged with its fold; the models stay in
    ``parts`` (they are keyed by fold there)."""
    runs = [replace(r, fold=k) for k, part in enumerate(parts) for r in part.runs]
    return Comparison(runs, {}, [g for part in parts for g in part.val_guids], parts[0].train_size, parts[0].config,
                      folds=len(parts))


def held_out_probs(parts: Sequence[Comparison], model: str) -> np.ndarray:
    """``(N, 3)``: the mean over seeds of ``model``'s probabilities for each fold's validation rows, folds in turn
    (the row order of :func:`combine_folds`'s ``val_guids``)."""
    return np.concatenate([np.mean([r.val_probs for r in part.runs if r.model == model], axis=0) for part in parts])


def _label_indices(labels: dict[str, str], guids: Sequence[str], what: str, label_set: LabelSet) -> np.ndarray:
    missing = [g for g in guids if g not in labels]
    if missing:
        raise KeyError(f"{len(missing)} {what} guid(s) have no label, e.g. {missing[:5]}")
    return np.array([label_set.index(labels[g]) for g in guids], dtype=np.int64)


def split_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """Per-model overrides: TrainConfig fields (epochs, patience, hidden_dim...) go into a copy of ``cfg``; the rest
    are constructor arguments of the model (e.g. ``attn_dropout``, ``pool``)."""
    names = {f.name for f in fields(TrainConfig)}
    train_part = {k: v for k, v in overrides.items() if k in names}
    return replace(cfg, **train_part), {k: v for k, v in overrides.items() if k not in names}


def stop_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(fit, stop)`` of one run's training rows: ``stop`` (a stratified ``fraction``, drawn by ``seed``)
    chooses the epoch, ``fit`` trains. Stratification gives way to a plain draw where a class is too rare."""
    n = len(labels)
    n_stop = min(max(1, round(n * fraction)), n - 1)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=int(labels.max()) + 1 if n else 1)
    if n_stop >= len(counts) and (counts[counts > 0] >= 2).all():
        fit, stop = holdout_rows(labels, n_stop, int(rng.integers(2**31)))
        return np.asarray(fit), np.asarray(stop)
    perm = rng.permutation(n)  # too rare to stratify: a plain draw still serves early stopping
    return np.sort(perm[n_stop:]), np.sort(perm[:n_stop])


def _resolve_workers(workers: int | str, device: torch.device, n_jobs: int) -> int:
    if device.type != "cpu" or "fork" not in mp.get_all_start_methods():
        return 1
    wanted = (os.cpu_count() or 1) if workers == "auto" else int(workers)
    return max(1, min(wanted, n_jobs))


_JOB: Callable[[Any], Any] | None = None  # the closure a forked worker runs; inherited through fork, never pickled


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_run(job: Any) -> Any:
    assert _JOB is not None
    return _JOB(job)


def _run_in_processes(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int):
    """Yields ``fn(job)`` for every job, in order, computed by ``workers`` forked processes.

    Fork shares the (read-only) features with the workers at no copy; only the small trained models travel back.
    """
    global _JOB
    _JOB = fn
    try:
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            yield from pool.map(_worker_run, jobs)
    finally:
        _JOB = None


def _check_comparison(train_guids: list[str], val_guids: list[str], models: Sequence[str], seeds: Sequence[int],
                      overrides: dict[str, dict[str, Any]]) -> None:
    """Refuses a comparison that would leak, has nothing to train or score, or overrides a model not compared."""
    overlap = set(train_guids) & set(val_guids)
    if overlap:
        raise ValueError(f"split leaks: {len(overlap)} guid(s) are in both train and val, e.g. {sorted(overlap)[:5]}")
    if not train_guids or not val_guids:
        raise ValueError(f"need train and val guids, got {len(train_guids)} and {len(val_guids)}")
    if not models or not seeds:
        raise ValueError("need at least one model and one seed")
    unknown = set(overrides) - set(models)
    if unknown:
        raise ValueError(f"model_overrides names models not being compared: {sorted(unknown)}")


def compare_models(features: FeatureSet, labels: dict[str, str], split: SplitLike, models: Sequence[str],
                   seeds: Sequence[int], cfg: TrainConfig, progress: bool = True,
                   model_overrides: dict[str, dict[str, Any]] | None = None, workers: int | str = "auto",
                   label_set: LabelsLike | None = None) -> Comparison:
    """Trains every model with every seed on ``split.train`` and scores it on ``split.val``.

    Each run chooses its epoch on its own early-stopping holdout, ``cfg.stop_fraction`` of ``split.train`` drawn by
    its seed (:func:`stop_holdout`), trains on the rest, and is then scored once on ``split.val``: validation rows
    never train, stop or select a run. Each run seeds its init with :func:`set_seed` before building the model, so seed ``s`` of two models share
    batch order but nothing else. Features go to the device once, shared by all runs.

    Args:
        features: features for at least every guid of the split.
        labels: guid -> label name.
        split: ``train`` and ``val`` guid lists; must be disjoint.
        models: registry names.
        seeds: one run per seed and model.
        cfg: training config (also supplies the model sizes).
        progress: a progress bar over runs and a line per finished run.
        model_overrides: per model name, training settings (any :class:`TrainConfig` field) or constructor
            arguments over ``cfg`` (e.g. ``{"dual_stream": {"hidden_dim": 128, "patience": 4}}`` to keep the token
            models fast on a CPU).

        workers: CPU processes that train runs side by side, one torch thread each (``"auto"`` = one per core; 1 =
            in this process). Small models use two cores better as two single-threaded runs than as one two-threaded
            run; on CUDA runs are always sequential. Results match a sequential run up to float rounding.
        label_set: the task's classes in output order (default: the three sentiment classes).

    Raises:
        ValueError: if train and val share guids, either is empty, or ``models``/``seeds`` is empty.
    """
    train_guids, val_guids = list(split.train), list(split.val)
    overrides = model_overrides or {}
    _check_comparison(train_guids, val_guids, models, seeds, overrides)
    classes = as_label_set(label_set)
    y_train = _label_indices(labels, train_guids, "train", classes)
    y_val = _label_indices(labels, val_guids, "val", classes)
    device = resolve_device(cfg.device)
    train_in = to_inputs(features.select(train_guids), device)
    val_in = to_inputs(features.select(val_guids), device)
    image_dim, text_dim = features.image.dim, features.text.dim

    runs: list[ModelRun] = []
    trained: dict[tuple[str, int], FusionModel] = {}
    jobs = [(name, seed) for name in models for seed in seeds]
    bar = tqdm(total=len(jobs), desc="compare", disable=not progress)

    def train_one(job: tuple[str, int]) -> tuple[ModelRun, FusionModel]:
        name, seed = job
        run_cfg, ctor_kwargs = split_overrides(cfg, overrides.get(name, {}))
        fit_rows, stop_rows = (torch.as_tensor(rows, device=device)
                               for rows in stop_holdout(y_train, run_cfg.stop_fraction, seed))
        set_seed(seed)
        model = create_fusion_model(name, image_dim, text_dim, run_cfg, **ctor_kwargs, num_classes=len(classes))
        result = train_model(model, take_batch(train_in, fit_rows), y_train[fit_rows.cpu()],
                             take_batch(train_in, stop_rows), y_train[stop_rows.cpu()], run_cfg, seed,
                             label_set=classes)
        model, seconds = result.model, result.train_seconds
        val_probs = predict_proba(model, val_in)
        run = ModelRun(model=name, seed=seed, metrics=compute_metrics(y_val, val_probs.argmax(1), classes),
                       best_epoch=result.best_epoch, train_seconds=seconds, history=result.history,
                       val_probs=val_probs)
        return run, model

    workers = _resolve_workers(workers, device, len(jobs))
    for run, model in (_run_in_processes(train_one, jobs, workers) if workers > 1 else map(train_one, jobs)):
        runs.append(run)
        trained[(run.model, run.seed)] = model
        if progress:
            bar.write(f"{run.model:>14} seed {run.seed}: {format_metrics(run.metrics)} "
                      f"(epoch {run.best_epoch}, {run.train_seconds:.1f}s)")
        bar.update(1)
    bar.close()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Comparison(runs=runs, models=trained, val_guids=val_guids, train_size=len(train_guids),
                      config={**asdict(cfg), "model_overrides": overrides})
