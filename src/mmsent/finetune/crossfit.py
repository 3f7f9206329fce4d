"""Out-of-fold features of the training rows: each row's features come from an encoder that never trained on it.

Why: an encoder fine-tuned on the training rows describes them better than it will ever describe new ones, so a
fusion model trained on those features trusts that modality more than it deserves (on lab5, image-only macro-F1 fell
below the frozen pipeline's). Cross-fitting, as in stacking, fixes it: the training rows are cut into K stratified
folds, K extra copies of the encoder are fine-tuned on K-1 folds each, and each copy extracts the fold it left out.
Validation and test rows keep the features of the encoder fine-tuned on all training rows (the one that serves
predictions). The frozen trunk's cached outputs (``adapter.prepare``) feed every fold and the tuned top computes the
fold's features from them (``adapter.features``): K folds cost K short top trainings, not K trunk passes.

On disk, in ``{fine-tuned folder}/crossfit-k{K}/``: ``fold{i}.safetensors`` per finished fold (its rows' features,
fp16 tokens as the feature cache stores them), ``fold{i}/checkpoints`` while a fold trains (resumable like any
fine-tuning) and ``crossfit.json``, written last. Each fold's head predicts the rows it left out, so ``crossfit.json``
also holds the encoder's cross-validated metrics over *all* training rows (``cv_metrics``): a far steadier yardstick
for fine-tuning settings than the early-stopping holdout, and blind to the validation rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmsent.config import EncoderFinetuneConfig, FinetuneConfig
from mmsent.data.splits import fold_rows as split_folds
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.trainer import finetune
from mmsent.fingerprint import json_digest
from mmsent.io import load_tensors, save_tensors, write_json
from mmsent.labels import LabelsLike, as_label_set
from mmsent.training import distributed
from mmsent.training.loop import StepCallback
from mmsent.training.metrics import compute_metrics

logger = logging.getLogger("mmsent.finetune")

RECORD_FILE = "crossfit.json"
_FP16_MAX = 65504.0


def crossfit_dir(folder: str | Path, folds: int, assignment: Sequence[Sequence[int]] | None = None) -> Path:
    """Where the out-of-fold features of the fine-tuned encoder in ``folder`` go for ``folds`` folds: drawn by
    :func:`fold_rows`, or given as ``assignment`` (a k-fold run's own folds), which then names the folder too."""
    if assignment is None:
        return Path(folder) / f"crossfit-k{folds}"
    return Path(folder) / f"crossfit-k{folds}-{json_digest([sorted(map(int, f)) for f in assignment])[:12]}"


def fold_rows(labels: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """Held-out row indices of each fold, stratified by label where every label has ``folds`` rows or more.

    Raises:
        ValueError: for fewer than 2 folds or fewer rows than folds.
    """
    if folds < 2:
        raise ValueError(f"crossfit_folds must be null (off) or >= 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"cannot cut {len(labels)} training rows into {folds} folds; lower crossfit_folds")
    try:
        return split_folds(labels, folds, seed)
    except ValueError:
        logger.warning("a label has fewer than %d training rows: cross-fitting folds are drawn unstratified", folds)
        return split_folds(labels, folds, seed, stratify=False)


def _save_fold(path: Path, guids: Sequence[str], feats: ModalityFeatures, result: dict[str, Any]) -> None:
    tokens = feats.tokens.float().clamp(-_FP16_MAX, _FP16_MAX).half()  # as the feature cache stores tokens
    save_tensors(path, {"pooled": feats.pooled.float(), "tokens": tokens, "mask": feats.mask.bool()},
                 {"guids": json.dumps(list(guids)), "result": json.dumps(result)})


def _load_fold(path: Path) -> tuple[list[str], ModalityFeatures, dict[str, Any]]:
    """Reads one fold's guids, features and result; ValueError naming the file if it is damaged."""
    try:
        tensors, meta = load_tensors(path)
        feats = ModalityFeatures(tensors["pooled"].float(), tensors["tokens"].float(), tensors["mask"].bool())
        return json.loads(meta["guids"]), feats, json.loads(meta.get("result", "{}"))
    except Exception as exc:  # safetensors, KeyError and JSON errors all mean the same here
        raise ValueError(f"{path}: not a readable cross-fitting fold ({exc}); delete {path.parent} to compute "
                         "the folds again") from exc


def _finish_fold(path: Path, guids: list[str], feats: ModalityFeatures, result: dict[str, Any]) -> None:
    _save_fold(path, guids, feats, result)
    shutil.rmtree(path.parent / path.stem, ignore_errors=True)  # its checkpoints: the fold is done


def crossfit(adapter: TuningAdapter, items: Sequence, rows: Sequence[torch.Tensor], labels: Sequence[int],
             guids: Sequence[str], ecfg: EncoderFinetuneConfig, fcfg: FinetuneConfig, out_dir: str | Path, *,
             run_key: str = "", progress: bool = False, callbacks: Sequence[StepCallback] = (),
             desc: str = "fine-tune", label_set: LabelsLike | None = None,
             held_out: Sequence[Sequence[int]] | None = None) -> tuple[list[str], ModalityFeatures]:
    """Fine-tunes one copy of ``adapter``'s encoder per fold; returns ``(guids, out-of-fold features)``.

    The folds are ``held_out`` (row indices each fold leaves out, a partition of the rows: a k-fold run's own folds),
    or else ``ecfg.crossfit_folds`` folds drawn by ``fcfg.seed``. Every fold starts from the weights ``adapter``'s
    encoder holds (the base encoder), and it holds them again on return. ``rows`` (``adapter.prepare(items)``) feed
    every fold. Finished folds in ``out_dir`` are reused; an interrupted fold resumes from its checkpoints, keyed by
    ``run_key``, K and the fold. ``labels`` are class indices of ``label_set`` (default: the three sentiment classes).
    """
    classes = as_label_set(label_set)
    out_dir = Path(out_dir)
    if held_out is None:
        held_out = fold_rows(list(labels), int(ecfg.crossfit_folds or 0), fcfg.seed)
    elif sorted(i for held in held_out for i in held) != list(range(len(rows))):
        raise ValueError("the given cross-fitting folds do not partition the training rows")
    k = len(held_out)
    start = {name: value.detach().clone() for name, value in adapter.tuned_state().items()}
    parts: list[ModalityFeatures] = []
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for fold, held in enumerate(held_out):
        path = out_dir / f"fold{fold}.safetensors"
        held_guids = [str(guids[i]) for i in held]
        if path.is_file():
            try:
                got_guids, feats, result = _load_fold(path)
            except ValueError as exc:
                logger.warning("%s; training the fold again", exc)
                got_guids = []
            if got_guids == held_guids:
                parts.append(feats)
                results.append(result)
                continue
            if got_guids:
                logger.warning("%s holds other rows than fold %d of this run; training the fold again", path, fold)
        train = sorted(set(range(len(rows))) - set(held))
        adapter.load_tuned_state(start)
        res = finetune(adapter, [items[i] for i in train], [labels[i] for i in train], [guids[i] for i in train],
                       ecfg, fcfg, out_dir / f"fold{fold}" / "checkpoints", run_key=f"{run_key}|k{k}|fold{fold}",
                       progress=progress, callbacks=callbacks, rows=[rows[i] for i in train],
                       desc=f"{desc} fold {fold + 1}/{k}", label_set=classes)
        feats = adapter.features([rows[i] for i in held])
        weight = next(res.head.parameters())
        with torch.no_grad():  # the fold head's class for each row it left out (eval mode: dropout off)
            predictions = res.head.eval()(feats.pooled.to(weight)).argmax(1).cpu().tolist()
        held_f1 = (res.holdout_metrics or {}).get("macro_f1")
        result = {"fold": fold, "train_rows": res.train_rows, "holdout_rows": res.holdout_rows,
                  "best_epoch": res.best_epoch, "seconds": res.seconds, "holdout_macro_f1": held_f1,
                  "predictions": predictions}
        distributed.on_main(_finish_fold, path, held_guids, feats, result)
        parts.append(_load_fold(path)[1])  # read back: exactly what a rerun would reuse
        results.append(result)
        logger.info("%s: cross-fitting fold %d/%d done (%d rows held out, holdout macro-F1 %s)", desc, fold + 1, k,
                    len(held), "-" if held_f1 is None else f"{held_f1:.3f}")
    adapter.load_tuned_state(start)

    order = [i for held in held_out for i in held]
    feats = ModalityFeatures.concat(parts).index(torch.argsort(torch.as_tensor(order)))  # back to the rows' order
    metrics = compute_metrics([int(labels[i]) for i in order], [p for r in results for p in r["predictions"]],
                              classes)
    cv = {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class")}
    logger.info("%s: cross-validated macro-F1 of the fine-tuned encoder over %d training rows: %.3f", desc,
                len(order), cv["macro_f1"])
    record = {"folds": k, "rows": len(order), "seconds": time.perf_counter() - t0, "cv_metrics": cv,
              "fold_results": results}
    distributed.on_main(write_json, out_dir / RECORD_FILE, record)
    return [str(g) for g in guids], feats


def load_crossfit(out_dir: str | Path) -> tuple[list[str], ModalityFeatures]:
    """``(guids, features)`` of a finished cross-fitting, in fold order; FileNotFoundError if unfinished."""
    out_dir = Path(out_dir)
    record_path = out_dir / RECORD_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} not found: the cross-fitting in {out_dir} has not finished")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    folds = [_load_fold(out_dir / f"fold{i}.safetensors") for i in range(int(record["folds"]))]
    return [g for fold_guids, _, _ in folds for g in fold_guids], ModalityFeatures.concat([f for _, f, _ in folds])


def is_crossfitted(out_dir: str | Path) -> bool:
    return (Path(out_dir) / RECORD_FILE).is_file()
