"""Benchmark: the shipped model, through today's code, on the validation split it was scored on.

The shipped model (``src/mmsent/shipped_model``) is the default ``mmsent run`` on the lab data, exported. This
script rebuilds that run's validation split (the default ``data.split_seed`` and ``data.val_fraction``: the split is
deterministic), streams its rows through ``mmsent predict --input`` with the shipped model (no feature cache: the
whole inference path runs), and checks the scores against the ones in its model card. Appends the numbers to
benchmarks/RESULTS.md.

Usage::

    python benchmarks/shipped_model_lab5.py [--data ../shared/datasets/lab5] [--work /tmp/shipped-check]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section  # noqa: E402

from mmsent.config import load_config  # noqa: E402
from mmsent.data.lab_format import load_lab_dataset  # noqa: E402
from mmsent.data.splits import make_split  # noqa: E402
from mmsent.export import shipped_model_path  # noqa: E402
from mmsent.stream import predict_stream  # noqa: E402
from mmsent.training.metrics import compute_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    parser.add_argument("--work", type=Path, default=Path("/tmp/shipped-check"))
    args = parser.parse_args()
    cfg = load_config()
    dataset = load_lab_dataset(args.data)
    split = make_split(dataset.train, cfg.data.val_fraction, cfg.data.split_seed)
    by_guid = {ex.guid: ex for ex in dataset.train}
    args.work.mkdir(parents=True, exist_ok=True)
    manifest, out = args.work / "val.jsonl", args.work / "predicted.jsonl"
    manifest.write_text("".join(json.dumps({"id": g, "image": str(by_guid[g].image_path),
                                            "text_path": str(by_guid[g].text_path)}) + "\n" for g in split.val))
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    predict_stream(shipped_model_path(), manifest, out, progress=True)
    seconds = time.perf_counter() - t0
    predicted = {r["id"]: r["label"] for r in map(json.loads, out.read_text().splitlines())}
    got = compute_metrics([by_guid[g].label for g in split.val], [predicted[g] for g in split.val])
    card = json.loads((shipped_model_path() / "predictor.json").read_text())["scores"]["argmax"]
    lines = [
        f"## Shipped model on its validation split ({date.today()}, {platform.node() or 'this machine'}, "
        f"{platform.processor() or platform.machine()})", "",
        "Command: `python benchmarks/shipped_model_lab5.py`. The default run's validation split rebuilt "
        f"(seed {cfg.data.split_seed}, {len(split.val)} rows) and streamed through `predict_stream` with the shipped "
        "model: decoding, encoders and the 18-model ensemble, no feature cache.", "",
        "| | accuracy | macro-F1 | neutral F1 |", "|---|---|---|---|",
        f"| model card (the run's own score) | {card['accuracy']:.3f} | {card['macro_f1']:.3f} | "
        f"{card['per_class']['neutral']['f1']:.3f} |",
        f"| recomputed now | {got['accuracy']:.3f} | {got['macro_f1']:.3f} | {got['per_class']['neutral']['f1']:.3f} |",
        "", f"{len(split.val)} rows in {seconds:.0f} s ({len(split.val) / seconds:.1f} rows/s).", "",
    ]
    text = "\n".join(lines)
    print(text)
    prepend_section(REPO / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
