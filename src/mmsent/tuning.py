"""Hyper-parameter search for one fusion design with Optuna (``mmsent tune``).

Every trial trains the design with one seed on each fold of a stratified K-fold split of the labelled rows and is
scored by its mean held-out macro-F1; each run still chooses its epoch on its own early-stopping holdout, so no fold's
scored rows train or stop it. The study lives in ``RUN_DIR/tune.sqlite3``: a rerun resumes it (finished trials count
towards ``--trials``). TPE proposes the settings (seeded), and a median pruner stops a trial after a fold whose running
mean falls below the median of earlier trials at that fold. Features come from the cache, as in ``mmsent run``.

Caveat: the winning settings were selected on the same rows that score them, so their cross-validated score is
optimistic; confirm on rows the search never saw.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmsent.config import RunConfig
from mmsent.fingerprint import json_digest
from mmsent.fusion.registry import fusion_key
from mmsent.run_files import RunFolder

log = logging.getLogger("mmsent.tune")

STUDY_FILE = "tune.sqlite3"


def suggest_settings(trial: Any) -> dict[str, Any]:
    """The search space: :class:`~mmsent.config.TrainConfig` fields of the design being tuned."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128, 256, 512]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "class_weighting": trial.suggest_categorical("class_weighting", [True, False]),
    }


@dataclass
class TuneResult:
    """The best settings found so far and how the study went."""

    model: str
    best_settings: dict[str, Any]
    best_macro_f1: float
    trials: int
    pruned: int
    folds: int
    study_path: str


def tune(cfg: RunConfig, run_dir: str | Path, model: str, trials: int, *, folds: int = 5, seed: int = 0,
         timeout: float | None = None, progress: bool = True) -> TuneResult:
    """Searches ``model``'s training settings; writes ``tuning.json``, ``tuning.md`` and ``best_config.yaml``.

    Args:
        cfg: the run config: data, encoders and the training settings not searched.
        run_dir: folder of the study (created); rerunning with the same folder resumes it.
        model: the fusion design to tune.
        trials: finished trials wanted in all (earlier runs' included).
        folds: K of the stratified K-fold split (``data.split_seed`` draws it).
        seed: seeds the sampler and every trial's training run.
        timeout: stop starting trials after this many seconds.
    """
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("mmsent tune needs Optuna: pip install 'mmsent[tune]' (or pip install optuna)") from exc
    from mmsent.data.splits import kfold_splits
    from mmsent.pipeline import extract, load_dataset
    from mmsent.training.compare import compare_models

    model = fusion_key(model)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(cfg)
    labels = {ex.guid: ex.label for ex in dataset.train}
    splits = kfold_splits(dataset.train, folds, cfg.data.split_seed)
    feats = extract(cfg, dataset.train, progress=progress)

    def objective(trial: Any) -> float:
        settings = suggest_settings(trial)
        overrides = {**cfg.compare.model_overrides.get(model, {}), **settings}
        scores = []
        for k, split in enumerate(splits):
            table = compare_models(feats.select(split.train + split.val), labels, split, [model], [seed], cfg.training,
                                   progress=False, model_overrides={model: overrides}, workers=1)
            scores.append(table.runs[0].metrics["macro_f1"])
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_path = run_dir / STUDY_FILE
    study = optuna.create_study(study_name=f"mmsent-{model}", storage=f"sqlite:///{study_path}", load_if_exists=True,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    # What a trial's score means: a resumed study must score its new trials the same way.
    scored_by = {"model": model, "folds": folds, "split_seed": cfg.data.split_seed, "seed": seed,
                 "data": str(Path(cfg.data.root).resolve()) if cfg.data.root else "sample",
                 "config": json_digest({**asdict(cfg), "compare": None, "data": None})}
    earlier = study.user_attrs.get("scored_by")
    if earlier is None:
        study.set_user_attr("scored_by", scored_by)
    elif earlier != scored_by:
        changed = sorted(k for k in scored_by if scored_by[k] != earlier.get(k))
        raise ValueError(f"{study_path} holds trials scored with other settings ({', '.join(changed)} differ); "
                         "use another --out folder, or the same settings to resume")
    # a resumed study must not replay the first run's random start-up trials
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    if len(done) < trials:
        log.info("tuning %s: %d trial(s) to run (%d done earlier), %d folds", model, trials - len(done), len(done),
                 folds)
        study.optimize(objective, n_trials=trials - len(done), timeout=timeout, show_progress_bar=progress)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"no trial of {study_path} finished; run more trials")
    best = study.best_trial
    result = TuneResult(model, dict(best.params), float(best.value), len(complete),
                        sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials), folds, str(study_path))
    _write_outputs(run_dir, cfg, result, complete)
    return result


def _write_outputs(run_dir: Path, cfg: RunConfig, result: TuneResult, complete: list) -> None:
    study = RunFolder(run_dir)  # a study folder, written as atomically as a run's
    study.write_json("tuning.json", asdict(result))
    names = list(result.best_settings)
    lines = [f"# Tuning {result.model}: {result.trials} finished trials, {result.pruned} pruned, "
             f"{result.folds}-fold mean held-out macro-F1", "",
             "| trial | macro-F1 | " + " | ".join(names) + " |", ("|---" * (len(names) + 2)) + "|"]
    for t in sorted(complete, key=lambda t: -t.value):
        lines.append(f"| {t.number} | {t.value:.4f} | " + " | ".join(str(t.params.get(n)) for n in names) + " |")
    lines += ["", "Selected on the rows that score it: the best score is optimistic."]
    study.write_text("tuning.md", "\n".join(lines) + "\n")
    overrides = {k: dict(v) for k, v in cfg.compare.model_overrides.items()}
    overrides[result.model] = {**overrides.get(result.model, {}), **result.best_settings}
    snippet = {"compare": {"model_overrides": overrides}}
    study.write_text("best_config.yaml", f"# mmsent tune: best of {result.trials} trials for {result.model} (mean "
                     f"macro-F1 {result.best_macro_f1:.4f} over {result.folds} folds); use with --config\n"
                     + yaml.safe_dump(snippet))
