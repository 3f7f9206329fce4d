"""Out-of-fold features for the training rows: each row's features come from an encoder that never trained on it.

An encoder fine-tuned on the training rows describes those rows better than it will ever describe new ones: its
features on them are fitted to their labels. A fusion model trained on such features learns to trust that modality
more than it deserves (on lab5, image-only macro-F1 fell below the frozen pipeline's). Cross-fitting, as in
stacking, fixes it: the training rows are cut into K stratified folds, K extra copies of the encoder are fine-tuned
on K-1 folds each, and each copy extracts the features of the fold it left out. Validation and test rows keep the
features of the encoder fine-tuned on all training rows, which is also the encoder that serves predictions.

The frozen trunk is shared: its cached outputs (``adapter.prepare``) feed every fold, and the fold's features are
computed from them by the tuned top (``adapter.features``), so K folds cost K short top trainings, not K trunk passes.

On disk, in ``{fine-tuned folder}/crossfit-k{K}/``: ``fold{i}.safetensors`` per finished fold (its rows' features,
fp16 tokens as the feature cache stores them), ``fold{i}/checkpoints`` while a fold trains (resumable like any
fine-tuning) and ``crossfit.json``, written last, once every fold is done.

A by-product: each fold's fine-tuning head predicts the rows it left out, so ``crossfit.json`` also holds the
encoder's cross-validated macro-F1 over *all* training rows (``cv_metrics``). It is a far steadier yardstick for
fine-tuning settings than the 10% early-stopping holdout, and it never looks at the validation rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsent.config import EncoderFinetuneConfig, FinetuneConfig
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.trainer import finetune
from mmsent.io import load_tensors, save_tensors, write_json
from mmsent.training.loop import StepCallback
from mmsent.training.metrics import compute_metrics

logger = logging.getLogger("mmsent.finetune")

RECORD_FILE = "crossfit.json"
_FP16_MAX = 65504.0


def crossfit_dir(folder: str | Path, folds: int) -> Path:
    """Where the out-of-fold features of the fine-tuned encoder in ``folder`` go for ``folds`` folds."""
    return Path(folder) / f"crossfit-k{folds}"


def fold_rows(labels: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """Held-out row indices of each of ``folds`` folds (stratified by label where every label has enough rows).

    Raises:
        ValueError: for fewer than 2 folds or fewer rows than folds.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if folds < 2:
        raise ValueError(f"crossfit_folds must be null (off) or >= 2, got {folds}")
    if n < folds:
        raise ValueError(f"cannot cut {n} training rows into {folds} folds; lower crossfit_folds")
    counts = np.bincount(np.asarray(labels, dtype=int))
    if counts[counts > 0].min() >= folds:
        splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        logger.warning("a label has fewer than %d training rows: cross-fitting folds are drawn unstratified", folds)
        splitter = KFold(folds, shuffle=True, random_state=seed)
    return [sorted(int(i) for i in held) for _, held in splitter.split(np.zeros((n, 1)), np.asarray(labels))]


def _save_fold(path: Path, guids: Sequence[str], feats: ModalityFeatures, result: dict[str, Any]) -> None:
    tokens = feats.tokens.float().clamp(-_FP16_MAX, _FP16_MAX).half()  # as the feature cache stores tokens
    save_tensors(path, {"pooled": feats.pooled.float(), "tokens": tokens, "mask": feats.mask.bool()},
                 {"guids": json.dumps(list(guids)), "result": json.dumps(result)})


def _load_fold(path: Path) -> tuple[list[str], ModalityFeatures, dict[str, Any]]:
    """Reads one fold's features.

    Raises:
        ValueError: naming the file, if it is damaged or not a fold file.
    """
    try:
        tensors, meta = load_tensors(path)
        feats = ModalityFeatures(tensors["pooled"].float(), tensors["tokens"].float(), tensors["mask"].bool())
        return json.loads(meta["guids"]), feats, json.loads(meta.get("result", "{}"))
    except Exception as exc:  # safetensors, KeyError and JSON errors all mean the same here
        raise ValueError(f"{path}: not a readable cross-fitting fold ({exc}); delete {path.parent} to compute "
                         "the folds again") from exc


def crossfit(adapter: TuningAdapter, items: Sequence, rows: Sequence[torch.Tensor], labels: Sequence[int],
             guids: Sequence[str], ecfg: EncoderFinetuneConfig, fcfg: FinetuneConfig, out_dir: str | Path, *,
             run_key: str = "", progress: bool = False, callbacks: Sequence[StepCallback] = (),
             desc: str = "fine-tune") -> tuple[list[str], ModalityFeatures]:
    """Fine-tunes ``ecfg.crossfit_folds`` copies of ``adapter``'s encoder and returns out-of-fold features.

    ``adapter``'s encoder must hold the weights to start every fold from (the base encoder); it holds them again on
    return. Finished folds found in ``out_dir`` are reused and an interrupted fold resumes from its checkpoint.

    Args:
        adapter: the encoder's trunk/top view.
        items: the training rows' items (what ``rows`` were prepared from), for the step callbacks' bookkeeping.
        rows: ``adapter.prepare(items)``, shared by every fold.
        labels: class index per row.
        guids: row ids.
        ecfg: this encoder's fine-tuning settings (as for the full fine-tuning); ``crossfit_folds`` is K.
        fcfg: shared settings; ``seed`` draws the folds.
        out_dir: this cross-fitting's folder (see :func:`crossfit_dir`).
        run_key: the full fine-tuning's key; each fold's checkpoints are keyed by it, K and the fold index.

    Returns:
        ``(guids, features)``: every training row's out-of-fold features, in the order of ``guids``.
    """
    out_dir = Path(out_dir)
    k = int(ecfg.crossfit_folds or 0)
    held_out = fold_rows(list(labels), k, fcfg.seed)
    start = {name: value.detach().clone() for name, value in adapter.tuned_state().items()}
    n, parts, results = len(rows), [], []
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
                parts.append((held, feats))
                results.append(result)
                continue
            if got_guids:
                logger.warning("%s holds other rows than fold %d of this run; training the fold again", path, fold)
        held_set = set(held)
        train = [i for i in range(n) if i not in held_set]
        adapter.load_tuned_state(start)
        res = finetune(adapter, [items[i] for i in train], [labels[i] for i in train], [guids[i] for i in train],
                       ecfg, fcfg, out_dir / f"fold{fold}" / "checkpoints", run_key=f"{run_key}|k{k}|fold{fold}",
                       progress=progress, callbacks=callbacks, rows=[rows[i] for i in train],
                       desc=f"{desc} fold {fold + 1}/{k}")
        feats = adapter.features([rows[i] for i in held])
        result = {"fold": fold, "train_rows": res.train_rows, "holdout_rows": res.holdout_rows,
                  "best_epoch": res.best_epoch, "seconds": res.seconds,
                  "holdout_macro_f1": (res.holdout_metrics or {}).get("macro_f1"),
                  "predictions": _head_predictions(res.head, feats.pooled)}
        _save_fold(path, held_guids, feats, result)
        shutil.rmtree(out_dir / f"fold{fold}", ignore_errors=True)  # its checkpoints: the fold is done
        parts.append((held, _load_fold(path)[1]))  # read back: exactly what a rerun would reuse
        results.append(result)
        held_f1 = result["holdout_macro_f1"]
        logger.info("%s: cross-fitting fold %d/%d done (%d rows held out, holdout macro-F1 %s)", desc, fold + 1, k,
                    len(held), "-" if held_f1 is None else f"{held_f1:.3f}")
    adapter.load_tuned_state(start)

    order = [i for held, _ in parts for i in held]
    stacked = ModalityFeatures.concat([f for _, f in parts])
    position = torch.empty(n, dtype=torch.long)
    position[torch.as_tensor(order)] = torch.arange(n)
    feats = stacked.index(position)
    record: dict[str, Any] = {"folds": k, "rows": n, "seconds": time.perf_counter() - t0}
    cv = _cross_validated_metrics([held for held, _ in parts], results, labels)
    if cv is not None:
        record["cv_metrics"] = cv
        logger.info("%s: cross-validated macro-F1 of the fine-tuned encoder over %d training rows: %.3f", desc, n,
                    cv["macro_f1"])
    write_json(out_dir / RECORD_FILE, {**record, "fold_results": results})
    return [str(g) for g in guids], feats


def _head_predictions(head: torch.nn.Module, pooled: torch.Tensor) -> list[int]:
    """The fine-tuning head's class index for each pooled vector (eval mode: dropout off)."""
    head.eval()
    param = next(head.parameters())
    with torch.no_grad():
        return head(pooled.to(device=param.device, dtype=param.dtype)).argmax(1).cpu().tolist()


def _cross_validated_metrics(held_out: Sequence[Sequence[int]], results: Sequence[dict[str, Any]],
                             labels: Sequence[int]) -> dict[str, Any] | None:
    """Metrics of every fold head's predictions on the rows that fold left out, pooled over all training rows.

    None when a reused fold predates the stored predictions (its features are still valid).
    """
    if any(len(r.get("predictions") or []) != len(held) for held, r in zip(held_out, results)):
        logger.info("no cross-validated score: a reused fold was stored without its head's predictions")
        return None
    order = [i for held in held_out for i in held]
    predicted = [p for r in results for p in r["predictions"]]
    metrics = compute_metrics([int(labels[i]) for i in order], predicted)
    return {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class")}


def load_crossfit(out_dir: str | Path) -> tuple[list[str], ModalityFeatures]:
    """The out-of-fold features of a finished cross-fitting, in the training rows' order.

    Raises:
        FileNotFoundError: if the cross-fitting has not finished.
    """
    out_dir = Path(out_dir)
    record_path = out_dir / RECORD_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} not found: the cross-fitting in {out_dir} has not finished")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    guids: list[str] = []
    parts = []
    for fold in range(int(record["folds"])):
        fold_guids, feats, _ = _load_fold(out_dir / f"fold{fold}.safetensors")
        guids += fold_guids
        parts.append(feats)
    return guids, ModalityFeatures.concat(parts)


def is_crossfitted(out_dir: str | Path) -> bool:
    return (Path(out_dir) / RECORD_FILE).is_file()
