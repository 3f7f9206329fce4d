"""Benchmark: bf16 autocast against fp32 when fine-tuning a text encoder on the CPU.

Issue "Accuracy on the field's standard protocol": full fine-tuning is the cost of the accurate presets on a 2-core
machine. This fine-tunes all-MiniLM-L6-v2 in full (the library's ``finetune``, its defaults but ``epochs``) on the
same lab rows twice from the same start, with ``finetune.amp`` off (fp32) and on (bf16 autocast on a CPU with
hardware bf16; the run records which it got), alternating
the two per run (``--repeats``) so that load on the machine falls on both; it records the loss of every step, the
holdout macro-F1 of every epoch and the seconds per step. The question: does the bf16 loss curve follow fp32's, and
how much faster is it?

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bf16_finetune.py --data ../shared/datasets/lab5 --rows 1280 --record
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from mmsent import pipeline  # noqa: E402
from mmsent.config import FinetuneConfig, TextFinetuneConfig, load_config  # noqa: E402
from mmsent.data.text import TextCleaner  # noqa: E402
from mmsent.encoders.registry import create_text_encoder  # noqa: E402
from mmsent.finetune import trainer  # noqa: E402
from mmsent.finetune.text import TextAdapter  # noqa: E402


def one_run(adapter: TextAdapter, start: dict, rows: list, texts: list[str], labels: list[int], guids: list[str],
            epochs: int, bf16: bool) -> dict:
    """One fine-tuning from ``start``; its per-step losses, seconds and per-epoch holdout macro-F1."""
    adapter.load_tuned_state(start)
    adapter.encoder.mark_weights_changed()
    losses: list[float] = []
    stamps: list[float] = []

    def record(info) -> None:
        losses.append(float(info.loss))
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:  # finetune.amp: bf16 autocast where the CPU has hardware bf16
        t0 = time.perf_counter()
        res = trainer.finetune(adapter, texts, labels, guids, TextFinetuneConfig(mode="full", epochs=epochs),
                               FinetuneConfig(enabled=True, patience=None, checkpoint_every=None, amp=bf16),
                               Path(tmp) / "ckpt", callbacks=[record], rows=rows)
    steps = np.diff([t0, *stamps])
    return {"dtype": res.amp or "fp32", "losses": losses, "seconds_per_step": float(np.median(steps)),
            "seconds": time.perf_counter() - t0, "amp": res.amp,
            "holdout_macro_f1": [h.get("holdout_macro_f1", h.get("val_macro_f1")) for h in res.history],
            "history": res.history}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/datasets/lab5")
    ap.add_argument("--rows", type=int, default=1280, help="the first N labelled rows")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="fp32, bf16 pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bf16-finetune.json")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(overrides=[f"data.root={args.data}"])
    dataset = pipeline.load_dataset(cfg)
    train = dataset.train[: args.rows]
    classes = dataset.label_set(cfg.data.labels)
    cleaner = TextCleaner(cfg.cleaning)
    texts = [cleaner.clean(ex.text) for ex in train]
    labels = [classes.index(str(ex.label)) for ex in train]
    guids = [ex.guid for ex in train]
    adapter = TextAdapter(create_text_encoder("minilm", max_length=cfg.encoders.text_max_length, device="cpu"), "full")
    start = {k: v.detach().clone() for k, v in adapter.tuned_state().items()}
    rows = adapter.prepare(texts)
    runs = []
    for _ in range(args.repeats):
        for bf16 in (False, True):
            runs.append(one_run(adapter, start, rows, texts, labels, guids, args.epochs, bf16))
            print(f"{runs[-1]['dtype']}: {runs[-1]['seconds_per_step']:.3f} s/step, final loss "
                  f"{runs[-1]['losses'][-1]:.4f}, holdout macro-F1 {runs[-1]['holdout_macro_f1']}", flush=True)
    fp32, bf16 = runs[0::2], runs[1::2]
    gap = np.abs(np.array(fp32[0]["losses"]) - np.array(bf16[0]["losses"]))
    summary = {"rows": len(train), "epochs": args.epochs, "steps": len(fp32[0]["losses"]),
               "speedup": float(np.median([f["seconds_per_step"] for f in fp32]) /
                                np.median([b["seconds_per_step"] for b in bf16])),
               "max_abs_loss_gap": float(gap.max()), "mean_abs_loss_gap": float(gap.mean()),
               "mean_loss_fp32": float(np.mean(fp32[0]["losses"])), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
