"""GPU readiness: the most accurate preset with CUDA on the lab data, both encoders fully fine-tuned.

Issue "Accuracy on the field's standard protocol". Runs the whole main job (``pipeline.run``) in this process with
``configs/max.yaml`` (``configs/best.yaml`` while there is no max preset), plus fine-tuning of both encoders in full
(``finetune.enabled=true``, ``finetune.{text,image}.mode=full``; of the preset's combined text encoder
``mpnet+e5+vader`` the first part, mpnet, is fine-tuned) on the chosen device. With ``data.kfold`` the encoders are
cross-fitted over the run's folds, so the scores are out of fold. Records wall time per stage, peak GPU
memory, peak RSS and the predictor's out-of-fold accuracy, macro-F1, weighted-F1 and per-class F1 in
``{out}/gpu_check.json`` (and with ``--record`` a section of ``benchmarks/RESULTS.md``). ``--set`` overrides come last,
so any of the above can be changed.

Usage (on a GPU machine)::

    python benchmarks/gpu_check.py --data ../shared/datasets/lab5 --out runs/gpu-check --record

On a CPU the same code runs with ``--device cpu`` (the tests run it so, on a tiny configuration).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

FULL_FINETUNING = ["finetune.enabled=true", "finetune.text.mode=full", "finetune.image.mode=full"]


def default_config() -> Path:
    """The max preset, or the best one while there is none."""
    preset = REPO / "configs" / "max.yaml"
    return preset if preset.is_file() else REPO / "configs" / "best.yaml"


def overrides(args: argparse.Namespace) -> list[str]:
    """Data, device and full fine-tuning, then the user's ``--set`` (last, so they win)."""
    device = [f"encoders.device={args.device}", f"training.device={args.device}"]
    data = [f"data.root={args.data}"] if args.data else []
    return [*data, *device, *FULL_FINETUNING, *args.set]


def held_out_scores(run_dir: Path) -> dict[str, Any]:
    """The predictor's metrics on rows it never trained on (out of fold with ``data.kfold``), from ``metrics.json``."""
    summary = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    held = summary["ensemble_validation_metrics"]
    return {"predictor": summary["chosen_model"], "folds": summary["folds"], "rows": summary["validation_rows"],
            "accuracy": held["accuracy"], "macro_f1": held["macro_f1"], "weighted_f1": held["weighted_f1"],
            "f1_per_class": {name: cls["f1"] for name, cls in held["per_class"].items()},
            "timings": summary["timings"]}


def check(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Runs the job; its timings, memory and out-of-fold scores."""
    import torch

    from mmsent.config import load_config
    from mmsent.pipeline import run

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it on a GPU machine, or pass --device cpu")
    cfg = load_config(str(args.config), overrides(args))
    if args.device.startswith("cuda"):  # this process's GPU memory
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run(cfg, args.out / "run", progress=args.progress)
    seconds = time.perf_counter() - t0
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result = {"command": shlex.join(["python", "benchmarks/gpu_check.py", *argv]), "config": str(args.config),
              "overrides": overrides(args), "device": args.device, "seconds": seconds,
              "peak_rss_mib": peak_kib / 1024,  # this process or its largest worker (compare.workers)
              "peak_gpu_mib": (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None),
              **held_out_scores(args.out / "run")}
    from run_lab5 import machine

    result["machine"] = machine()
    return result


def section(result: dict[str, Any]) -> str:
    """The RESULTS.md section for one check."""
    f1 = ", ".join(f"{name} {value:.3f}" for name, value in result["f1_per_class"].items())
    gpu = "-" if result["peak_gpu_mib"] is None else f"{result['peak_gpu_mib']:.0f} MiB"
    stages = ", ".join(f"{k.removesuffix('_seconds')} {v:.0f} s" for k, v in result["timings"].items()
                       if k.endswith("_seconds"))
    return "\n".join([
        f"## GPU check: {Path(result['config']).name} with full fine-tuning on {result['device']}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        f"- Machine: {result['machine']}", f"- Command: `{result['command']}`",
        f"- Wall time {result['seconds'] / 60:.1f} min ({stages}); peak GPU memory {gpu}; peak RSS "
        f"{result['peak_rss_mib']:.0f} MiB", "",
        "| predictor | rows scored | folds | accuracy | macro-F1 | weighted-F1 | F1 per class |",
        "|---|---|---|---|---|---|---|",
        f"| {result['predictor']} | {result['rows']} | {result['folds']} | {result['accuracy']:.4f} | "
        f"{result['macro_f1']:.4f} | {result['weighted_f1']:.4f} | {f1} |", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset folder (default: the config's data.root)")
    ap.add_argument("--config", type=Path, default=default_config())
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--set", action="append", default=[], help="more overrides (section.key=value), applied last")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    ap.add_argument("--record", action="store_true", help="prepend the section to benchmarks/RESULTS.md")
    ap.add_argument("--progress", action="store_true")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    result = check(args, argv)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    text = section(result)
    print(text)
    if args.record:
        from results_file import prepend_section

        prepend_section(REPO / "benchmarks" / "RESULTS.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
