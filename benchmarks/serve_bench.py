"""Latency and load benchmark of ``mmsent serve`` on loopback.

Starts the server on a finished run directory, then measures
  (a) single-request latency of an image + text prediction on a warm model (median and p95), and
  (b) N concurrent clients for D seconds: error count, latency percentiles, throughput, and the server's RSS at the
      start and end of the load (a steady climb across runs would point at a leak).

    python benchmarks/serve_bench.py runs/sample                  # both parts, 20 clients x 60 s
    python benchmarks/serve_bench.py runs/sample --skip-load      # latency only (~1 min incl. start-up)
    python benchmarks/serve_bench.py src/mmsent/shipped_model --attacker --skip-latency   # load under attack
    python benchmarks/serve_bench.py src/mmsent/shipped_model --attacker --big-batches 3 --stalled 150 --skip-latency

``--attacker`` adds one more client that keeps sending a 7000 x 7000 16-bit PNG (about 100 KB on the wire, 49 MP
decoded), alternately alone (multipart) and as a batch of 8 (JSON); its answers are tallied by status, and the
server's peak RSS (VmHWM) is recorded.

``--big-batches N`` adds N clients that keep sending a ~``--big-batch-mb`` MB /predict/batch body (32 rows of a
valid ~4 MB noise PNG, base64), alternately with Content-Length and chunked; ``--stalled N`` keeps N sockets sending
request headers one byte every 0.5 s (reopened when the server closes them) and records how long each lived. The
server's RSS is sampled every 0.25 s. Traffic goes to 127.0.0.1 only.

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


def big_batch_body(megabytes: float) -> bytes:
    """A valid /predict/batch body of about ``megabytes`` MB: 32 rows of one incompressible PNG, base64."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    side = int((megabytes * 1e6 / 32 * 3 / 4 / 3) ** 0.5)  # RGB noise: a PNG about as large as its pixels
    pixels = np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return json.dumps({"items": [{"text": "big batch", "image_base64": b64}] * 32}).encode()


def send_big_batches(base: str, body: bytes, stop: float, statuses: dict, lock: threading.Lock, n: int) -> None:
    """Sends ``body`` until ``stop``, alternately with Content-Length and chunked (1 MB chunks); tallies answers."""

    def chunks():
        for i in range(0, len(body), 1 << 20):
            yield body[i:i + (1 << 20)]

    with httpx.Client(timeout=120) as client:
        while time.monotonic() < stop:
            kind = "length" if n % 2 == 0 else "chunked"
            try:
                r = client.post(f"{base}/predict/batch", content=body if kind == "length" else chunks(),
                                headers={"content-type": "application/json"})
                key = f"{kind}:{r.status_code}"
            except Exception as exc:  # noqa: BLE001 -- counted, not raised
                key = f"{kind}:{type(exc).__name__}"
            with lock:
                statuses[key] = statuses.get(key, 0) + 1
            n += 1


async def _stall_one(port: int, stop: float, lifetimes: list[float], open_at_end: list[float]) -> None:
    """One connection after another, each sending request headers a byte every 0.5 s until the server closes it."""
    import asyncio

    head = b"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
    while time.monotonic() < stop:
        start, closed = time.monotonic(), False  # before connecting: a lifetime is never under-counted
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        for i in range(len(head)):
            if time.monotonic() >= stop:
                break
            try:
                writer.write(head[i:i + 1])
                await writer.drain()
                closed = not await asyncio.wait_for(reader.read(4096), 0.5)  # b"": closed by the server
            except asyncio.TimeoutError:
                continue
            except OSError:  # reset
                closed = True
            if closed:
                break
        (lifetimes if closed else open_at_end).append(time.monotonic() - start)
        writer.close()


def stall(port: int, sockets: int, stop: float, lifetimes: list[float], open_at_end: list[float]) -> None:
    """Keeps ``sockets`` slowloris connections open until ``stop`` (an event loop in this thread)."""
    import asyncio

    async def all_of_them() -> None:
        await asyncio.gather(*(_stall_one(port, stop, lifetimes, open_at_end) for _ in range(sockets)))

    asyncio.run(all_of_them())


def sample_rss(pid: int, stop: float, samples: list[float]) -> None:
    while time.monotonic() < stop:
        samples.append(rss_mb(pid))
        time.sleep(0.25)


def stall_summary(lifetimes: list[float], open_at_end: list[float]) -> dict:
    s = sorted(lifetimes)
    return {"closed": len(s), "still_open_at_end": len(open_at_end),
            "longest_open_at_end_s": round(max(open_at_end, default=0.0), 2),
            **({"closed_after_s": {"min": round(s[0], 2), "median": round(statistics.median(s), 2),
                                   "p95": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))], 2),
                                   "max": round(s[-1], 2)}} if s else {})}


def load(base: str, pid: int, image: bytes, text: str, clients: int, seconds: float, attacker: bool = False,
         big_batches: int = 0, big_batch_mb: float = 180.0, stalled: int = 0) -> dict:
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    attack_statuses: dict[str, int] = {}
    big_statuses: dict[str, int] = {}
    lifetimes: list[float] = []
    open_at_end: list[float] = []
    rss_samples: list[float] = []
    body = big_batch_body(big_batch_mb) if big_batches else b""

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
    pool += [threading.Thread(target=send_big_batches, args=(base, body, stop, big_statuses, lock, i))
             for i in range(big_batches)]
    if stalled:
        pool.append(threading.Thread(target=stall, args=(int(base.rsplit(":", 1)[1]), stalled, stop, lifetimes,
                                                         open_at_end)))
    pool.append(threading.Thread(target=sample_rss, args=(pid, stop, rss_samples)))
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 1), "ok": len(times), "errors": len(errors),
            "error_examples": sorted(set(errors))[:5], "throughput_rps": len(times) / wall,
            "latency": percentiles(times), "rss_mb_start": rss_start, "rss_mb_end": rss_mb(pid),
            "rss_mb_peak": peak_rss_mb(pid), "rss_mb_max_sampled_during_load": max(rss_samples, default=rss_start),
            **({"attack_statuses": attack_statuses} if attacker else {}),
            **({"big_batch_mb": round(len(body) / 1e6, 1), "big_batch_statuses": big_statuses} if big_batches else {}),
            **({"stalled_sockets": stalled, "stalled": stall_summary(lifetimes, open_at_end)} if stalled else {})}


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
    ap.add_argument("--big-batches", type=int, default=0, help="clients sending ~--big-batch-mb MB batch bodies")
    ap.add_argument("--big-batch-mb", type=float, default=180.0)
    ap.add_argument("--stalled", type=int, default=0, help="sockets sending headers a byte every 0.5 s")
    ap.add_argument("--serve-arg", action="append", default=[], help="one more argument for mmsent serve "
                    "(repeat; e.g. --serve-arg=--header-timeout --serve-arg=5)")
    args = ap.parse_args()

    image = args.image.read_bytes()
    port = free_port()
    extra = (["--model", args.model] if args.model else []) + (
        ["--max-micro-batch", str(args.micro_batch)] if args.micro_batch else []) + args.serve_arg
    proc = start_server(args.run_dir, port, args.threads, extra)
    base = f"http://127.0.0.1:{port}"
    try:
        health = httpx.get(f"{base}/health").json()
        summary: dict = {"run_dir": str(args.run_dir), "server_threads": args.threads,
                         "model": health["model"]["name"], "limits": health["limits"],
                         "rss_mb_after_start": rss_mb(proc.pid), "rss_mb_peak_after_start": peak_rss_mb(proc.pid)}
        if not args.skip_latency:
            summary["latency_explain"] = latency(base, image, args.text, args.requests, explain=True)
            summary["latency_no_explain"] = latency(base, image, args.text, args.requests, explain=False)
        if not args.skip_load:
            summary["load"] = load(base, proc.pid, image, args.text, args.clients, args.seconds, args.attacker,
                                   args.big_batches, args.big_batch_mb, args.stalled)
    finally:
        proc.terminate()
        proc.wait(30)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
