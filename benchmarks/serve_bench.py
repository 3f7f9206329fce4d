"""Latency and load benchmark of ``mmsent serve`` on loopback.

Starts the server on a finished run directory, then measures
  (a) single-request latency of an image + text prediction on a warm model (median and p95), and
  (b) N concurrent clients for D seconds: error count, latency percentiles, throughput, and the server's RSS at the
      start and end of the load (a steady climb across runs would point at a leak).

    python benchmarks/serve_bench.py runs/sample                  # both parts, 20 clients x 60 s
    python benchmarks/serve_bench.py runs/sample --skip-load      # latency only (~1 min incl. start-up)
    python benchmarks/serve_bench.py src/mmsent/shipped_model --attacker --skip-latency   # load under attack

``--attacker`` adds one more client that keeps sending a 7000 x 7000 16-bit PNG (about 100 KB on the wire, 49 MP
decoded), alternately alone (multipart) and as a batch of 8 (JSON); its answers are tallied by status, and the
server's peak RSS (VmHWM) is recorded.

Prints a JSON summary and writes it to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_GUID = "1002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]

    return {"n": len(s), "median_ms": statistics.median(s), "p90_ms": pct(90), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": s[-1], "mean_ms": statistics.fmean(s)}


def start_server(run_dir: Path, port: int, threads: int, extra: list[str] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mmsent", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError("server did not become healthy within 180 s")


def one_request(client: httpx.Client, url: str, image: bytes, text: str, explain: bool) -> float:
    t = time.perf_counter()
    r = client.post(url, files={"image": ("bench.jpg", image, "image/jpeg")},
                    data={"text": text, "explain": "true" if explain else "false"})
    r.raise_for_status()
    return (time.perf_counter() - t) * 1e3


def latency(base: str, image: bytes, text: str, n: int, explain: bool) -> dict[str, float]:
    with httpx.Client(timeout=60) as client:
        for _ in range(3):  # warm-up: first calls pay for lazy initialisation in torch and the tokenizer
            one_request(client, f"{base}/predict", image, text, explain)
        return percentiles([one_request(client, f"{base}/predict", image, text, explain) for _ in range(n)])


def bomb_png() -> bytes:
    """A 7000 x 7000 16-bit greyscale PNG: small on the wire, ~49 MP (and hundreds of MB) once decoded."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((7000, 7000), dtype=np.uint16)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def attack(base: str, stop: float, statuses: dict, lock: threading.Lock) -> None:
    """Sends the PNG alone and in batches of 8 until ``stop``; counts each answer's status (or exception name)."""
    import base64

    png = bomb_png()
    b64 = base64.b64encode(png).decode("ascii")
    with httpx.Client(timeout=120) as client:
        n = 0
        while time.monotonic() < stop:
            kind = "single" if n % 2 == 0 else "batch8"
            try:
                if kind == "single":
                    r = client.post(f"{base}/predict", files={"image": ("bomb.png", png, "image/png")},
                                    data={"text": "attack"})
                else:
                    r = client.post(f"{base}/predict/batch",
                                    json={"items": [{"text": "attack", "image_base64": b64}] * 8})
                key = f"{kind}:{r.status_code}"
            except Exception as exc:  # noqa: BLE001 -- counted, not raised
                key = f"{kind}:{type(exc).__name__}"
            with lock:
                statuses[key] = statuses.get(key, 0) + 1
            n += 1


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(base: str, pid: int, image: bytes, text: str, clients: int, seconds: float, attacker: bool = False) -> dict:
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    attack_statuses: dict[str, int] = {}

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    ms = one_request(client, f"{base}/predict", image, text, explain=True)
                    with lock:
                        times.append(ms)
                except Exception as exc:  # noqa: BLE001 -- every failure is counted, not raised
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])

    rss_start = rss_mb(pid)
    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(clients)]
    if attacker:
        pool.append(threading.Thread(target=attack, args=(base, stop, attack_statuses, lock)))
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 1), "ok": len(times), "errors": len(errors),
            "error_examples": sorted(set(errors))[:5], "throughput_rps": len(times) / wall,
            "latency": percentiles(times), "rss_mb_start": rss_start, "rss_mb_end": rss_mb(pid),
            "rss_mb_peak": peak_rss_mb(pid), **({"attack_statuses": attack_statuses} if attacker else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--image", type=Path, default=ROOT / "src/mmsent/sample_data/lab/data" / f"{SAMPLE_GUID}.jpg")
    ap.add_argument("--text", default="What a wonderful day at the beach with friends! #happy")
    ap.add_argument("--requests", type=int, default=50, help="sequential requests for the latency part")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1, help="--threads of mmsent serve")
    ap.add_argument("--skip-load", action="store_true", help="only the single-request latency")
    ap.add_argument("--model", help="serve this design of the run (mmsent serve --model)")
    ap.add_argument("--micro-batch", type=int, help="mmsent serve --max-micro-batch (1: no micro-batching)")
    ap.add_argument("--out", type=Path, help="also write the JSON summary here")
    ap.add_argument("--attacker", action="store_true", help="one more client sending a 7000x7000 16-bit PNG")
    ap.add_argument("--skip-latency", action="store_true", help="only the load part")
    args = ap.parse_args()

    image = args.image.read_bytes()
    port = free_port()
    extra = (["--model", args.model] if args.model else []) + (
        ["--max-micro-batch", str(args.micro_batch)] if args.micro_batch else [])
    proc = start_server(args.run_dir, port, args.threads, extra)
    base = f"http://127.0.0.1:{port}"
    try:
        summary: dict = {"run_dir": str(args.run_dir), "server_threads": args.threads,
                         "model": httpx.get(f"{base}/health").json()["model"]["name"],
                         "rss_mb_after_start": rss_mb(proc.pid)}
        if not args.skip_latency:
            summary["latency_explain"] = latency(base, image, args.text, args.requests, explain=True)
            summary["latency_no_explain"] = latency(base, image, args.text, args.requests, explain=False)
        if not args.skip_load:
            summary["load"] = load(base, proc.pid, image, args.text, args.clients, args.seconds, args.attacker)
    finally:
        proc.terminate()
        proc.wait(30)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
