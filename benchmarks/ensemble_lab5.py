"""Benchmark: which predictor, from one cross-validated run's out-of-fold probabilities (no training here).

Reads ``oof_predictions.csv`` of a finished ``mmsent run --set data.kfold=K`` and scores, over every labelled row:
each design alone (mean of its seeds), the mean of several designs; and stacking: a logistic regression over every
design's log-probabilities, fitted on the other folds' rows and scored on the held-out fold. Per fold scores give the
± (sample std over folds). Appends a table to benchmarks/RESULTS.md.

Usage::

    python benchmarks/ensemble_lab5.py RUN_DIR [--results benchmarks/RESULTS.md] [--command "how RUN_DIR was made"]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section

from mmsent.labels import LABELS
from mmsent.training.ensemble import decide
from mmsent.training.metrics import compute_metrics


def read_oof(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """guids, gold indices, fold per row, and per design the mean over seeds of its out-of-fold probabilities."""
    probs: dict[str, dict[str, list[list[float]]]] = {}
    gold, fold = {}, {}
    with path.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            if rec["model"] == "ensemble":
                continue
            probs.setdefault(rec["model"], {}).setdefault(rec["guid"], []).append(
                [float(rec[f"p_{n}"]) for n in LABELS])
            gold[rec["guid"]], fold[rec["guid"]] = LABELS.index(rec["gold"]), int(rec["fold"])
    guids = sorted(gold)
    designs = {d: np.array([np.mean(by_guid[g], axis=0) for g in guids]) for d, by_guid in probs.items()}
    return guids, np.array([gold[g] for g in guids]), np.array([fold[g] for g in guids]), designs


def score(pred: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict[str, float]:
    """Pooled accuracy / macro-F1 / neutral F1, and the sample std of macro-F1 over folds."""
    pooled = compute_metrics(y, pred)
    per_fold = [compute_metrics(y[folds == k], pred[folds == k])["macro_f1"] for k in np.unique(folds)]
    return {"accuracy": pooled["accuracy"], "macro_f1": pooled["macro_f1"], "weighted_f1": pooled["weighted_f1"],
            "neutral_f1": pooled["per_class"]["neutral"]["f1"], "fold_std": float(np.std(per_fold, ddof=1))}


def stacked_probabilities(designs: dict[str, np.ndarray], y: np.ndarray, folds: np.ndarray,
                          balanced: bool) -> np.ndarray:
    """Each row's probabilities from a multinomial logistic regression over all designs' log-probabilities, fitted on the
    other folds' rows only (``balanced``: classes weighted inversely to their frequency)."""
    from sklearn.linear_model import LogisticRegression

    x = np.log(np.clip(np.hstack(list(designs.values())), 1e-6, 1.0))
    out = np.empty((len(y), len(LABELS)))
    for fold in np.unique(folds):
        held = folds == fold
        meta = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced" if balanced else None)
        meta.fit(x[~held], y[~held])
        out[held] = meta.predict_proba(x[held])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    ap.add_argument("--command", default="", help="The command that made RUN_DIR, for the record.")
    args = ap.parse_args()
    guids, y, folds, designs = read_oof(args.run_dir / "oof_predictions.csv")
    names = list(designs)
    variants = {d: [d] for d in names}
    for k in range(2, len(names) + 1):
        for combo in itertools.combinations(names, k):
            if k == len(names) or set(combo) <= {"concat", "gated", "text_only", "image_only"}:
                variants[" + ".join(combo)] = list(combo)
    rows = []
    for label, members in variants.items():
        probs = np.mean([designs[m] for m in members], axis=0)
        rows.append((label, score(decide(probs), y, folds)))
    for balanced in (False, True):
        probs = stacked_probabilities(designs, y, folds, balanced)
        rows.append((f"stacking: logistic regression over all designs{' (balanced classes)' if balanced else ''}",
                     score(decide(probs), y, folds)))
    rows.sort(key=lambda r: -r[1]["macro_f1"])
    cfg = json.loads((args.run_dir / "metrics.json").read_text())
    lines = [f"## lab5 predictor variants from out-of-fold probabilities, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", f"- Run: `{args.command or args.run_dir}` ({cfg.get('folds')} folds, seeds {cfg.get('seeds')}, "
             f"{len(guids)} labelled rows, every row scored by models that never trained on it).",
             f"- Scored by: `python benchmarks/ensemble_lab5.py {args.run_dir}` (no training).", "",
             "| predictor | accuracy | macro-F1 (± std over folds) | neutral F1 |", "|---|---|---|---|"]
    for label, plain in rows:
        lines.append(f"| {label} | {plain['accuracy']:.3f} | {plain['macro_f1']:.3f} ± {plain['fold_std']:.3f} | "
                     f"{plain['neutral_f1']:.3f} |")
    text = "\n".join(lines) + "\n\n"
    print(text)
    prepend_section(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
