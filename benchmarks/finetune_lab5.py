"""Benchmark: frozen encoders vs encoders fine-tuned on the split's training rows, on the full lab dataset.

Runs ``mmsent run`` on the same split and the same fresh cache -- frozen (the default pipeline), then with
``--config configs/finetune.yaml`` (fine-tune -> extract -> compare -> predict) once per fine-tuning seed -- and
appends to
benchmarks/RESULTS.md: date, machine, command, fine-tuning time per encoder, stage times, holdout scores of the
fine-tuning, and per-model validation macro-F1 frozen vs fine-tuned (averaged over ``--finetune-seeds``). About
7 minutes frozen plus 13 per fine-tuning seed on a 2-core CPU.

Usage::

    python benchmarks/finetune_lab5.py [--data ../shared/datasets/lab5] [--set key=value ...]
    python benchmarks/finetune_lab5.py --finetune-seeds 0,1,2 --frozen-run runs/bench-finetune-lab5-frozen
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

DEFAULT_PRESET = "configs/finetune.yaml"


def _mean_f1(comparison: dict) -> dict[str, tuple[float, float]]:
    return {row["model"]: (row["macro_f1_mean"], row.get("macro_f1_std", 0.0)) for row in comparison["summary"]}


def finished_run(folder: str | Path) -> dict:
    """A finished ``mmsent run`` folder read back as :func:`bench_run` returns it (total time from metrics.json)."""
    done = Path(folder)
    if not (done / "metrics.json").is_file() or not (done / "comparison.json").is_file():
        raise SystemExit(f"[bench] {done} is not a finished mmsent run (no metrics.json / comparison.json); "
                         "rerun without reusing it")
    metrics = json.loads((done / "metrics.json").read_text())
    return {"wall": metrics["timings"]["total_seconds"], "rss": metrics["timings"]["peak_rss_mib"], "dir": done,
            "metrics": metrics, "comparison": json.loads((done / "comparison.json").read_text())}


def finetune_seed(run: dict) -> int:
    """The ``finetune.seed`` a run was made with (from the config.yaml it wrote)."""
    import yaml

    return int(yaml.safe_load((run["dir"] / "config.yaml").read_text())["finetune"]["seed"])


def finetuning_rows(seed: int, record: dict) -> list[str]:
    """Rows of the fine-tuning table for one fine-tuned run's finetune.json."""
    lines = []
    for modality, entry in record.items():
        if not entry.get("dir"):
            lines.append(f"| {seed} | {modality} | frozen | - | - | - | - | - | - | - |")
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
        lines.append(f"| {seed} | {modality} | {mode} | {res['adapter']['trainable_params']:,} / "
                     f"{res['adapter']['total_params']:,} | {res['train_rows']} + {res['holdout_rows']} | "
                     f"{res['steps']} | {res['best_epoch']} | {'-' if held is None else f'{held:.3f}'} | "
                     f"{cross_cell} | {entry['seconds']:.0f} |")
    return lines


def report(frozen: dict, tuned: dict[int, dict], command: str, reused: list[str], preset: str) -> list[str]:
    """The RESULTS.md section: times, fine-tuning per seed, validation macro-F1 frozen vs fine-tuned."""
    seeds = sorted(tuned)
    walls = ", ".join(f"seed {s} **{tuned[s]['wall'] / 60:.1f} min**" for s in seeds)
    rss = ", ".join(f"{tuned[s]['rss']:.0f}" for s in seeds)
    lines = [
        (f"## lab5 fine-tuned vs frozen encoders{'' if preset == DEFAULT_PRESET else f' ({preset})'}, "
         f"{time.strftime('%Y-%m-%d %H:%M %Z')}"),
        "",
        f"- Machine: {machine()}",
        (f"- Command: `{command}` (runs `mmsent run --data DATA` frozen, then with `--config {preset}` "
         "once per fine-tuning seed, on one fresh cache and the same split"
         + (f"; reused finished runs: {', '.join(reused)} (their times from their metrics.json)" if reused else "")
         + ")"),
        (f"- Total wall time: frozen **{frozen['wall'] / 60:.1f} min**; fine-tuned {walls}; peak memory frozen "
         f"{frozen['rss']:.0f} MiB, fine-tuned {rss} MiB"),
        "",
        ("Fine-tuning (training rows of the split only; best epoch chosen on held-out training rows; `finetune.seed` "
         "draws the holdout, the cross-fitting folds and the batch order):"),
        "",
        ("| seed | encoder | mode | trainable / total params | train + holdout rows | steps | best epoch | holdout "
         "macro-F1 | cross-fitting folds: seconds, cross-validated macro-F1 over all training rows | seconds in all |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in seeds:
        lines += finetuning_rows(s, json.loads((tuned[s]["dir"] / "finetune.json").read_text()))
    stage_keys = ("load_seconds", "finetune_seconds", "extract_seconds", "compare_seconds", "total_seconds")
    lines += ["", "Stage wall times (seconds), frozen / fine-tuned per seed: " + ", ".join(
        f"{k.removesuffix('_seconds')} {frozen['metrics']['timings'].get(k, 0):.0f} / "
        + " / ".join(f"{tuned[s]['metrics']['timings'].get(k, 0):.0f}" for s in seeds) for k in stage_keys), ""]
    f_frozen = _mean_f1(frozen["comparison"])
    f_tuned = {s: _mean_f1(tuned[s]["comparison"]) for s in seeds}
    per_seed_head = "".join(f" fine-tuning seed {s} |" for s in seeds)
    lines += ["Validation macro-F1 per model (mean ± std over the fusion models' seeds, same split"
              + ("; the last columns average the fine-tuning seeds" if len(seeds) > 1 else "") + "):", "",
              f"| model | frozen |{per_seed_head}" + (" mean over fine-tuning seeds |" if len(seeds) > 1 else "")
              + " change |",
              "|---|---|" + "---|" * len(seeds) + ("---|" if len(seeds) > 1 else "") + "---|"]
    for model, (a, sa) in f_frozen.items():
        if not all(model in f_tuned[s] for s in seeds):
            continue
        cells = "".join(f" {f_tuned[s][model][0]:.3f} ± {f_tuned[s][model][1]:.3f} |" for s in seeds)
        mean = sum(f_tuned[s][model][0] for s in seeds) / len(seeds)
        lines.append(f"| {model} | {a:.3f} ± {sa:.3f} |{cells}" + (f" {mean:.3f} |" if len(seeds) > 1 else "")
                     + f" {mean - a:+.3f} |")
    fusion = {m: v for m, v in f_frozen.items() if m not in ("text_only", "image_only")}
    best_frozen = max(fusion, key=lambda m: fusion[m][0]) if fusion else None
    for model in dict.fromkeys(m for s in seeds for m in f_tuned[s] if m not in f_frozen):
        if best_frozen is None or not all(model in f_tuned[s] for s in seeds):
            continue
        # models with no frozen counterpart (trained end to end): against the best frozen fusion model
        cells = "".join(f" {f_tuned[s][model][0]:.3f} ± {f_tuned[s][model][1]:.3f} |" for s in seeds)
        mean = sum(f_tuned[s][model][0] for s in seeds) / len(seeds)
        a = fusion[best_frozen][0]
        lines.append(f"| {model} | {a:.3f} ({best_frozen}) |{cells}" + (f" {mean:.3f} |" if len(seeds) > 1 else "")
                     + f" {mean - a:+.3f} |")
    for label, run in [("frozen", frozen)] + [(f"fine-tuned (seed {s})", tuned[s]) for s in seeds]:
        ens = run["metrics"]["ensemble_validation_metrics"]
        lines.append(f"\n{label}: predicting with **{run['metrics']['chosen_model']}** (seed ensemble), validation "
                     f"accuracy {ens['accuracy']:.3f}, macro-F1 {ens['macro_f1']:.3f}.")
    return lines + ["", ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "lab5"))
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-finetune-lab5"))
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--preset", default=DEFAULT_PRESET, help="The fine-tuning config, relative to the "
                    "repository. Default: configs/finetune.yaml.")
    ap.add_argument("--finetune-seeds", default="0", help="Comma-separated finetune.seed values: one fine-tuned run "
                    "each (the table averages them). Default: 0.")
    ap.add_argument("--frozen-run", help="Reuse this finished frozen run (e.g. runs/bench-finetune-lab5-frozen) "
                    "instead of running it again; its split must equal the fine-tuned runs'.")
    ap.add_argument("--finetuned-run", action="append", default=[], help="Reuse this finished fine-tuned run for "
                    "the finetune.seed its config.yaml names (repeatable).")
    ap.add_argument("--keep-cache", action="store_true", help="Keep the temporary cache (features, fine-tuned "
                    "encoders) and print its path.")
    args = ap.parse_args()

    seeds = [int(s) for s in args.finetune_seeds.split(",") if s.strip()]
    tuned: dict[int, dict] = {}
    for folder in args.finetuned_run:
        run = finished_run(folder)
        tuned[finetune_seed(run)] = run
    unknown = set(tuned) - set(seeds)
    if unknown:
        print(f"[bench] --finetuned-run holds seed(s) {sorted(unknown)} not in --finetune-seeds", file=sys.stderr)
        return 2
    cache = Path(tempfile.mkdtemp(prefix="mmsent-bench-ft-cache-"))
    extra = [a for o in args.overrides for a in ("--set", o)]
    preset = ["--config", str(REPO / args.preset)]
    try:
        frozen = (finished_run(args.frozen_run) if args.frozen_run
                  else bench_run("frozen", args.data, Path(f"{args.out}-frozen"), cache, extra))
        for seed in seeds:
            if seed not in tuned:
                out = Path(f"{args.out}-finetuned" + (f"-seed{seed}" if seed else ""))
                tuned[seed] = bench_run(f"fine-tuned seed {seed}", args.data, out, cache,
                                        preset + extra + ["--set", f"finetune.seed={seed}"])
    except RunFailed as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return exc.code
    finally:
        if args.keep_cache:
            print(f"[bench] cache kept at {cache}")
        else:
            shutil.rmtree(cache, ignore_errors=True)

    split = (frozen["dir"] / "split.csv").read_text()
    if any((run["dir"] / "split.csv").read_text() != split for run in tuned.values()):
        print("[bench] the frozen and fine-tuned runs used different splits; not comparable", file=sys.stderr)
        return 1
    reused = ([f"frozen {args.frozen_run}"] if args.frozen_run else []) + [f"fine-tuned {f}" for f in args.finetuned_run]
    lines = report(frozen, tuned, f"python benchmarks/finetune_lab5.py {shlex.join(sys.argv[1:])}", reused,
                   args.preset)
    results = Path(args.results)
    old = results.read_text() if results.exists() else "# Benchmark results\n\nNewest first.\n\n"
    head, _, rest = old.partition("\n## ")
    results.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + ("## " + rest if rest else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
