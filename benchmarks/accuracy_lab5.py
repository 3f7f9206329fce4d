"""Benchmark: cross-validated accuracy of configuration variants on the lab data (issue "Accuracy").

Runs ``mmsent run --set data.kfold=5`` once per variant (or reuses a finished run folder) and appends one table to
benchmarks/RESULTS.md: per variant the out-of-fold accuracy, macro-F1 (± sample std over the 5 folds) and neutral F1
of the run's predictor over all 4,000 labelled rows, the best single design's macro-F1, the wall time and the
seconds spent encoding, and the command.

Usage::

    python benchmarks/accuracy_lab5.py --variant minilm "" \\
        --variant minilm+e5+vader "--set encoders.text=all-MiniLM-L6-v2+e5+vader" [--data DATA] [--cache DIR]

Each variant's run folder is ``--out-root/NAME``; a folder that already holds ``predictor.json`` is scored as it is
(pass ``--rerun`` to train again).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from ensemble_lab5 import read_oof, score
from results_file import prepend_section

from mmsent.training.ensemble import decide


def run_variant(name: str, sets: str, args: argparse.Namespace) -> tuple[Path, str, float | None]:
    out = args.out_root / name
    cmd = ["mmsent", "run", "--data", str(args.data), "--set", "data.kfold=5", "--set", f"cache_dir={args.cache}",
           *shlex.split(sets), "--out", str(out), "-q"]
    shown = " ".join(shlex.quote(c) for c in cmd)
    if (out / "predictor.json").is_file() and not args.rerun:
        return out, shown, None
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return out, shown, time.perf_counter() - t0


def summarise(run_dir: Path) -> dict:
    guids, y, folds, designs = read_oof(run_dir / "oof_predictions.csv")
    predictor = json.loads((run_dir / "predictor.json").read_text())
    probs = np.mean([designs[m] for m in predictor["members"]], axis=0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    encode = 0.0
    for modality in metrics["extraction"].values():
        for part in modality.get("parts", {modality.get("encoder"): modality}).values():
            encode += part.get("encode_seconds") or 0.0
    best = max(predictor["scores"]["designs"].items(), key=lambda kv: kv[1]["macro_f1"])
    return {"argmax": score(decide(probs), y, folds),
            "best_design": (best[0], best[1]["macro_f1"]), "encode_seconds": encode,
            "total_seconds": metrics["timings"]["total_seconds"], "members": predictor["members"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "SETS"), required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/mmsent").expanduser())
    ap.add_argument("--out-root", type=Path, default=REPO / "runs" / "accuracy")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    ap.add_argument("--rerun", action="store_true")
    args = ap.parse_args()
    lines = [f"## lab5 accuracy variants, 5-fold out-of-fold, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", "- Scored by: `python benchmarks/accuracy_lab5.py " + " ".join(
                 f"--variant {shlex.quote(n)} {shlex.quote(s)}" for n, s in args.variant) + "`",
             "- Every labelled row is scored once by the fold models that never trained on it (or early-stopped on it);"
             " ± is the sample std of macro-F1 over the 5 folds. Encode s: seconds spent encoding features that were "
             "not cached (0 when all came from the cache).",
             "", "| variant | accuracy | macro-F1 | neutral F1 | best design (macro-F1) | run s | encode s | command |",
             "|---|---|---|---|---|---|---|---|"]
    for name, sets in args.variant:
        run_dir, cmd, _ = run_variant(name, sets, args)
        s = summarise(run_dir)
        a = s["argmax"]
        lines.append(f"| {name} | {a['accuracy']:.3f} | {a['macro_f1']:.3f} ± {a['fold_std']:.3f} | "
                     f"{a['neutral_f1']:.3f} | {s['best_design'][0]} ({s['best_design'][1]:.3f}) | "
                     f"{s['total_seconds']:.0f} | {s['encode_seconds']:.0f} | `{cmd}` |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\n"
    prepend_section(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
