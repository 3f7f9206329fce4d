"""Benchmark: does an Optuna search (``mmsent tune``) help, scored on rows the search never saw?

``mmsent tune`` selects settings by cross-validated macro-F1 over the rows it is given, so scoring its winner on the
same rows is optimistic. Here the search sees only half A of the labelled rows (stratified, seeded); the tuned design
is then cross-validated over all rows with the same folds as a baseline run, and both are scored **on half B only**
(out-of-fold rows the search never touched), alone and inside the baseline's ensemble (the tuned design's
probabilities in place of the baseline's).

Usage::

    python benchmarks/tune_lab5.py split --out /tmp/lab5-halfA            # half A as a lab-format dataset
    mmsent tune gated --data /tmp/lab5-halfA --out runs/tune-gated-halfA --trials 20 --set encoders.backend=torch
    mmsent run --config runs/tune-gated-halfA/best_config.yaml --data ../shared/datasets/lab5 --set data.kfold=5 \\
        --set encoders.backend=torch --set 'compare.models=[gated]' --out runs/cv5-gated-tuned-halfA -q
    python benchmarks/tune_lab5.py score --half-a /tmp/lab5-halfA --baseline runs/cv5-minilm-e5-vader \\
        --tuned runs/cv5-gated-tuned-halfA --design gated
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from ensemble_lab5 import read_oof, score


def split(data: Path, out: Path, seed: int) -> None:
    """Writes half A (every label's rows shuffled by ``seed``, the first half kept) as a lab-format dataset."""
    header, *rows = [line for line in (data / "train.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    by_tag: dict[str, list[str]] = {}
    for row in rows:
        by_tag.setdefault(row.split(",")[1].strip(), []).append(row)
    rng, half = random.Random(seed), []
    for _, tagged in sorted(by_tag.items()):
        tagged = sorted(tagged)
        rng.shuffle(tagged)
        half += tagged[: len(tagged) // 2]
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "train.txt").write_text("\n".join([header, *half]) + "\n", encoding="utf-8")
    test = (data / "test_without_label.txt").read_text(encoding="utf-8")
    (out / "test_without_label.txt").write_text(test, encoding="utf-8")
    guids = [r.split(",")[0].strip() for r in half] + [r.split(",")[0].strip() for r in test.splitlines()[1:] if r]
    for guid in guids:
        for ext in ("jpg", "txt"):
            if not (out / "data" / f"{guid}.{ext}").exists():
                os.link(data / "data" / f"{guid}.{ext}", out / "data" / f"{guid}.{ext}")
    print(f"half A: {len(half)} of {len(rows)} labelled rows in {out}")


def score_on_half_b(half_a: Path, baseline: Path, tuned: Path, design: str) -> None:
    in_a = {r.split(",")[0].strip() for r in (half_a / "train.txt").read_text(encoding="utf-8").splitlines()[1:] if r}
    guids, y, folds, designs = read_oof(baseline / "oof_predictions.csv")
    tuned_guids, tuned_y, tuned_folds, tuned_designs = read_oof(tuned / "oof_predictions.csv")
    if tuned_guids != guids or not (tuned_folds == folds).all() or not (tuned_y == y).all():
        raise SystemExit("the two runs do not hold the same rows in the same folds")
    b = np.array([g not in in_a for g in guids])
    replaced = {**designs, design: tuned_designs[design]}
    print(f"half B: {b.sum()} rows the search never saw; accuracy / macro-F1 (± std over folds) / neutral F1")
    for name, probs in ((f"{design}, default settings", designs[design]), (f"{design}, tuned on half A",
                        tuned_designs[design]), ("ensemble of all designs, default", np.mean(list(designs.values()), 0)),
                        (f"ensemble with the tuned {design}", np.mean(list(replaced.values()), 0))):
        s = score(probs[b].argmax(1), y[b], folds[b])
        print(f"| {name} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} ± {s['fold_std']:.3f} | {s['neutral_f1']:.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split")
    sp.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--seed", type=int, default=2026)
    sc = sub.add_parser("score")
    sc.add_argument("--half-a", type=Path, required=True)
    sc.add_argument("--baseline", type=Path, required=True)
    sc.add_argument("--tuned", type=Path, required=True)
    sc.add_argument("--design", default="gated")
    args = ap.parse_args()
    if args.command == "split":
        split(args.data, args.out, args.seed)
    else:
        score_on_half_b(args.half_a, args.baseline, args.tuned, args.design)
    return 0


if __name__ == "__main__":
    sys.exit(main())
