"""Benchmark: paired per-fold comparison of cross-validated runs, and what averaging whole runs gives.

Every run must be a ``data.kfold`` run over the same rows and folds (``oof_predictions.csv``). For every run: its
predictor's (the mean of all designs) out-of-fold accuracy, macro-F1, weighted-F1 and neutral F1. For each run after the
baseline: the change in its ensemble's macro-F1 (mean of all designs' out-of-fold probabilities) fold by fold, then
mean ± sample std over folds. With ``--average``: the scores of the baseline averaged with the first 1, 2, ... other
runs (no training; read the best of them as optimistic, since the combination is picked on the scored rows).

Usage::

    python benchmarks/compare_runs_lab5.py runs/cv5-minilm-e5-vader runs/cv5-image-flip-tta runs/cv5-ocr-appended
    python benchmarks/compare_runs_lab5.py runs/cv5-minilm-e5-vader runs/cv5-ocr-appended ... --average
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from ensemble_lab5 import read_oof, score

from mmsent.training.metrics import compute_metrics


def ensemble_probabilities(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    guids, y, folds, designs = read_oof(run_dir / "oof_predictions.csv")
    return guids, y, folds, np.mean(list(designs.values()), axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--average", action="store_true", help="also score the baseline averaged with the other runs")
    args = ap.parse_args()
    guids, y, folds, base = ensemble_probabilities(args.baseline)
    probs = {}
    for run in args.runs:
        run_guids, run_y, run_folds, probs[run] = ensemble_probabilities(run)
        if run_guids != guids or not (run_y == y).all() or not (run_folds == folds).all():
            raise SystemExit(f"{run} does not hold the baseline's rows in the baseline's folds")

    def per_fold(p: np.ndarray) -> np.ndarray:
        return np.array([compute_metrics(y[folds == k], p[folds == k].argmax(1))["macro_f1"] for k in np.unique(folds)])

    base_folds = per_fold(base)
    for run, p in [(args.baseline, base), *probs.items()]:
        s = score(p.argmax(1), y, folds)
        print(f"{run.name}: accuracy {s['accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f} (per fold "
              f"{per_fold(p).mean():.3f} ± {s['fold_std']:.3f}), weighted-F1 {s['weighted_f1']:.4f}, neutral F1 "
              f"{s['neutral_f1']:.3f}")
    for run, p in probs.items():
        change = per_fold(p) - base_folds
        print(f"{run.name}: macro-F1 change per fold {', '.join(f'{c:+.3f}' for c in change)}; "
              f"mean {change.mean():+.4f} ± {change.std(ddof=1):.4f}")
    if args.average:
        for n in range(1, len(args.runs) + 1):
            members = [base, *(probs[r] for r in args.runs[:n])]
            s = score(np.mean(members, axis=0).argmax(1), y, folds)
            names = " + ".join([args.baseline.name, *(r.name for r in args.runs[:n])])
            change = per_fold(np.mean(members, axis=0)) - base_folds
            print(f"{names}: accuracy {s['accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f} ± {s['fold_std']:.3f}, "
                  f"weighted-F1 {s['weighted_f1']:.4f}, neutral F1 {s['neutral_f1']:.3f}; macro-F1 change per fold "
                  f"{', '.join(f'{c:+.3f}' for c in change)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
