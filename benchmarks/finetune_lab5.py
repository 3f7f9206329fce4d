"""Benchmark: frozen encoders vs encoders fine-tuned on the split's training rows, on the full lab dataset.

Runs ``mmsent run`` twice on the same split and the same fresh cache -- frozen (the default pipeline), then with
``--config configs/finetune.yaml`` (fine-tune -> extract -> compare -> predict) -- and appends to
benchmarks/RESULTS.md: date, machine, command, fine-tuning time per encoder, stage times, holdout scores of the
fine-tuning, and per-model validation macro-F1 frozen vs fine-tuned. Takes ~45+ minutes on a 2-core CPU.

Usage::

    python benchmarks/finetune_lab5.py [--data ../shared/datasets/lab5] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_lab5 import REPO, RunFailed, bench_run, machine  # same runs, machine line and timing as the main benchmark


def _mean_f1(comparison: dict) -> dict[str, tuple[float, float]]:
    return {row["model"]: (row["macro_f1_mean"], row.get("macro_f1_std", 0.0)) for row in comparison["summary"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "lab5"))
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-finetune-lab5"))
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--frozen-run", help="Reuse this finished frozen run (e.g. runs/bench-finetune-lab5-frozen) "
                    "instead of running it again; its split must equal the fine-tuned run's.")
    ap.add_argument("--keep-cache", action="store_true", help="Keep the temporary cache (features, fine-tuned "
                    "encoders) and print its path.")
    args = ap.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="mmsent-bench-ft-cache-"))
    extra = [a for o in args.overrides for a in ("--set", o)]
    presets = {"frozen": [], "finetuned": ["--config", str(REPO / "configs" / "finetune.yaml")]}
    try:
        runs = {label: bench_run(label, args.data, Path(f"{args.out}-{label}"), cache, preset + extra)
                for label, preset in presets.items() if not (label == "frozen" and args.frozen_run)}
    except RunFailed as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return exc.code
    finally:
        if args.keep_cache:
            print(f"[bench] cache kept at {cache}")
        else:
            shutil.rmtree(cache, ignore_errors=True)

    if args.frozen_run:
        done = Path(args.frozen_run)
        metrics = json.loads((done / "metrics.json").read_text())
        runs["frozen"] = {"wall": metrics["timings"]["total_seconds"], "rss": metrics["timings"]["peak_rss_mib"],
                          "dir": done, "metrics": metrics,
                          "comparison": json.loads((done / "comparison.json").read_text())}
    frozen, tuned = runs["frozen"], runs["finetuned"]
    if (frozen["dir"] / "split.csv").read_text() != (tuned["dir"] / "split.csv").read_text():
        print("[bench] the frozen and fine-tuned runs used different splits; not comparable", file=sys.stderr)
        return 1
    record = json.loads((tuned["dir"] / "finetune.json").read_text())
    lines = [
        f"## lab5 fine-tuned vs frozen encoders, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- Machine: {machine()}",
        (f"- Command: `python benchmarks/finetune_lab5.py {shlex.join(sys.argv[1:])}` (runs `mmsent run --data DATA` "
         "frozen, then with `--config configs/finetune.yaml`, on one fresh cache and the same split"
         + (f"; the frozen run reused from {args.frozen_run}, total time from its metrics.json" if args.frozen_run
            else "") + ")"),
        (f"- Total wall time: frozen **{frozen['wall'] / 60:.1f} min**, fine-tuned **{tuned['wall'] / 60:.1f} min**; "
         f"peak memory {frozen['rss']:.0f} / {tuned['rss']:.0f} MiB"),
        "",
        "Fine-tuning (training rows of the split only; best epoch chosen on held-out training rows):",
        "",
        ("| encoder | mode | trainable / total params | train + holdout rows | steps | best epoch | holdout macro-F1 "
         "| cross-fitting folds: seconds, cross-validated macro-F1 over all training rows | seconds in all |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for modality, entry in record.items():
        if not entry.get("dir"):
            lines.append(f"| {modality} | frozen | - | - | - | - | - | - | - |")
            continue
        res = entry["result"]
        held = (res.get("holdout_metrics") or {}).get("macro_f1")
        cross = entry.get("crossfit")
        if cross:
            cv = (cross.get("cv_metrics") or {}).get("macro_f1")
            cross_cell = f"{cross['folds']}: {cross['seconds']:.0f} s, " + ("-" if cv is None else f"{cv:.3f}")
        else:
            cross_cell = "off"
        mode = f"{entry['mode']} (last {res['adapter']['last_n']})" if entry["mode"] == "last_n" else entry["mode"]
        lines.append(f"| {modality} | {mode} | {res['adapter']['trainable_params']:,} / "
                     f"{res['adapter']['total_params']:,} | {res['train_rows']} + {res['holdout_rows']} | "
                     f"{res['steps']} | {res['best_epoch']} | {'-' if held is None else f'{held:.3f}'} | "
                     f"{cross_cell} | {entry['seconds']:.0f} |")
    stage_keys = ("load_seconds", "finetune_seconds", "extract_seconds", "compare_seconds", "total_seconds")
    lines += ["", "Stage wall times (seconds): " + ", ".join(
        f"{k.removesuffix('_seconds')} frozen {frozen['metrics']['timings'].get(k, 0):.0f} / fine-tuned "
        f"{tuned['metrics']['timings'].get(k, 0):.0f}" for k in stage_keys), ""]
    f_frozen, f_tuned = _mean_f1(frozen["comparison"]), _mean_f1(tuned["comparison"])
    lines += ["Validation macro-F1 per model (mean ± std over seeds, same split):", "",
              "| model | frozen | fine-tuned | change |", "|---|---|---|---|"]
    for model in f_frozen:
        if model in f_tuned:
            (a, sa), (b, sb) = f_frozen[model], f_tuned[model]
            lines.append(f"| {model} | {a:.3f} ± {sa:.3f} | {b:.3f} ± {sb:.3f} | {b - a:+.3f} |")
    for label, run in (("frozen", frozen), ("fine-tuned", tuned)):
        ens = run["metrics"]["ensemble_validation_metrics"]
        lines.append(f"\n{label}: predicting with **{run['metrics']['chosen_model']}** (seed ensemble), validation "
                     f"accuracy {ens['accuracy']:.3f}, macro-F1 {ens['macro_f1']:.3f}.")
    lines += ["", ""]
    results = Path(args.results)
    old = results.read_text() if results.exists() else "# Benchmark results\n\nNewest first.\n\n"
    head, _, rest = old.partition("\n## ")
    results.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + ("## " + rest if rest else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
