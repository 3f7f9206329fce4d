"""Benchmark: mmsent on a published train / dev / test protocol, the numbers a paper's table reports.

Runs ``mmsent run`` on a split-files dataset (``data.format=splits``: ``train``, ``dev`` and ``test`` files beside an
image folder; or ``--format hfm`` / ``tumemo`` for those releases) once with the default settings and once with
``configs/best.yaml``, each into a fresh run folder, and prints per configuration the test split's accuracy,
weighted-F1 and macro-F1 (and the positive class's F1 for a binary task) with the run's wall time. dev selects
(early stopping, design choice, ensemble weights); test is predicted and scored once, at the end of each run
(``test_metrics.json``). With ``--record`` the table is added to benchmarks/RESULTS.md.

Usage::

    python benchmarks/paper_protocol.py DIR [--format splits|hfm|tumemo] [--configs default,best]
        [--set key=value ...] [--out-root runs/paper] [--record]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import prepend_section  # noqa: E402
from run_lab5 import REPO, machine, timed_run  # noqa: E402

CONFIGS = {"default": None, "best": REPO / "configs" / "best.yaml"}


def run_one(name: str, data: Path, fmt: str, out: Path, extra: list[str]) -> dict:
    """``mmsent run`` with one configuration; its test metrics, wall time and peak memory."""
    cmd = [sys.executable, "-m", "mmsent", "run", "--data", str(data), "--out", str(out), "--set", f"data.format={fmt}"]
    if CONFIGS[name] is not None:
        cmd += ["--config", str(CONFIGS[name])]
    for item in extra:
        cmd += ["--set", item]
    seconds, peak_mib, code = timed_run(cmd)
    if code != 0:
        raise SystemExit(f"{name}: `{shlex.join(cmd)}` failed with exit code {code}")
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    return {"config": name, "seconds": seconds, "peak_mib": peak_mib, "command": shlex.join(cmd), **metrics}


def table(rows: list[dict]) -> str:
    """The Markdown table of the test scores, one row per configuration."""
    positive = any("positive_f1" in r for r in rows)
    head = "| config | test rows | accuracy | weighted-F1 | macro-F1 |" + (" positive F1 |" if positive else "")
    lines = [head + " wall time |", "|---" * (6 + positive) + "|"]
    for r in rows:
        cells = [r["config"], str(r["n"]), f"{r['accuracy']:.4f}", f"{r['weighted_f1']:.4f}", f"{r['macro_f1']:.4f}"]
        if positive:
            cells.append(f"{r['positive_f1']:.4f}" if "positive_f1" in r else "")
        lines.append("| " + " | ".join(cells) + f" | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the split-files dataset folder (or the HFM / TumEmo release)")
    parser.add_argument("--format", default="splits", choices=("splits", "hfm", "tumemo"))
    parser.add_argument("--configs", default="default,best", help="comma-separated: default, best")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="a config override for every run")
    parser.add_argument("--out-root", type=Path, default=REPO / "runs" / "paper")
    parser.add_argument("--record", action="store_true", help="add the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for name in args.configs.split(","):
        started = time.strftime("%H:%M")
        print(f"[{started}] {name}: running", flush=True)
        rows.append(run_one(name, args.data.resolve(), args.format, args.out_root / name, args.extra))
    print(table(rows))
    if args.record:
        commands = "\n".join(f"- {r['config']}: `{r['command']}`" for r in rows)
        prepend_section(REPO / "benchmarks" / "RESULTS.md",
                        f"## Published protocol: {args.data.name} ({args.format}), {date.today()}\n\n"
                        f"Machine: {machine()}. Test split scored once per run (`test_metrics.json`).\n\n"
                        f"{table(rows)}\n\nCommands:\n{commands}\n")


if __name__ == "__main__":
    main()
