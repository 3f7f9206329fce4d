"""Benchmark: one /predict request's latency for a finished run's predictor (in-process FastAPI test client).

Usage::

    python benchmarks/serve_latency.py RUN_DIR [--repeats 5]

Prints the number of averaged models, the load time, and per request the wall time and the server's own timings,
with and without gradient x input explanations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from mmsent.serve import create_app

    t = time.perf_counter()
    client = TestClient(create_app(args.run_dir))
    info = client.get("/health").json()["model"]
    print(f"{args.run_dir}: {info['name']}, {info['models']} models, loaded in {time.perf_counter() - t:.1f} s")
    image = (REPO / "src/mmsent/sample_data/lab/data/1002.jpg").read_bytes()
    for explain in ("false", "true"):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = client.post("/predict", files={"image": ("a.jpg", image, "image/jpeg")},
                            data={"text": "Worst day ever, my flight got cancelled again #angry", "explain": explain})
            r.raise_for_status()
            times.append(time.perf_counter() - t)
        print(f"explain={explain}: median {statistics.median(times):.2f} s over {args.repeats} "
              f"(label {r.json()['label']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
