"""Micro-batching: concurrent requests share a forward pass and each gets exactly its own answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from mmsent_runkit import jpeg_bytes

from mmsent.serve.batching import MicroBatcher


def test_items_arriving_together_run_as_one_batch_per_key():
    calls = []
    gate = threading.Event()

    def run(key, items):
        gate.wait(2)  # hold the first batch so that the others queue up
        calls.append((key, list(items)))
        return [f"{key}:{i}" for i in items]

    batcher = MicroBatcher(run, max_items=3, window=0.05)
    first = batcher.submit("a", 0)
    time.sleep(0.1)  # the first batch is running (and held)
    futures = [batcher.submit("a" if i % 2 else "b", i) for i in range(1, 6)]
    gate.set()
    assert first.result(2) == "a:0"
    assert [f.result(2) for f in futures] == ["a:1", "b:2", "a:3", "b:4", "a:5"]
    assert sorted(len(items) for _, items in calls[1:]) == [2, 3]  # a:1,3,5 together; b:2,4 together


def test_an_error_reaches_every_request_of_its_batch():
    def run(key, items):
        raise RuntimeError("model failed")

    batcher = MicroBatcher(run, max_items=4, window=0.05)
    futures = [batcher.submit("k", i) for i in range(3)]
    for f in futures:
        with pytest.raises(RuntimeError, match="model failed"):
            f.result(2)


def test_concurrent_http_requests_are_batched_and_answered_alike(client):
    texts = ["happy love day", "sad hate rain", "the park is on a day", "great win sun"]
    images = [jpeg_bytes(96, 80, seed=i) for i in range(4)]
    alone = [client.post("/predict", files={"image": ("x.jpg", im, "image/jpeg")},
                         data={"text": t, "explain": "false"}).json() for im, t in zip(images, texts)]
    batcher = client.app.state.batcher
    before = len(batcher.batches)

    def post(i):
        return client.post("/predict", files={"image": ("x.jpg", images[i % 4], "image/jpeg")},
                           data={"text": texts[i % 4], "explain": "false"}).json()

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(post, range(16)))
    assert max(list(batcher.batches)[before:]) > 1  # some requests did share a pass
    for i, body in enumerate(together):
        assert body["label"] == alone[i % 4]["label"]
        assert body["probabilities"] == pytest.approx(alone[i % 4]["probabilities"], abs=1e-4)


def test_a_cancelled_request_is_skipped_and_the_batcher_keeps_serving():
    gate = threading.Event()

    def run(key, items):
        gate.wait(2)
        return list(items)

    batcher = MicroBatcher(run, max_items=4, window=0.05)
    held = batcher.submit("k", 0)
    time.sleep(0.1)
    gone = batcher.submit("k", 1)
    kept = batcher.submit("k", 2)
    assert gone.cancel()  # what asyncio does to the future when the client disconnects
    gate.set()
    assert held.result(2) == 0 and kept.result(2) == 2
    assert batcher.submit("k", 3).result(2) == 3  # still alive


def test_batches_never_exceed_max_items_and_a_zero_limit_means_one():
    gate = threading.Event()

    def run(key, items):
        gate.wait(2)
        return [i * 10 for i in items]

    for max_items, sizes in ((2, [1, 2, 2, 1]), (0, [1] * 6)):
        gate.clear()
        batcher = MicroBatcher(run, max_items=max_items, window=0.05)
        first = batcher.submit("k", 0)
        time.sleep(0.1)  # held in run: the rest queue up
        rest = [batcher.submit("k", i) for i in range(1, 6)]
        gate.set()
        assert [f.result(2) for f in [first, *rest]] == [0, 10, 20, 30, 40, 50]
        assert list(batcher.batches) == sizes


def test_the_app_batches_no_more_than_its_setting(tiny_predictor):
    from fastapi.testclient import TestClient

    from mmsent.serve import ServeSettings, create_app

    image = jpeg_bytes(96, 80, seed=1)
    with TestClient(create_app(predictor=tiny_predictor, settings=ServeSettings(max_micro_batch=2))) as c:
        def post(i):
            return c.post("/predict", files={"image": ("x.jpg", image, "image/jpeg")},
                          data={"text": f"day {i}", "explain": "false"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(16))) == {200}
        sizes = list(c.app.state.batcher.batches)
        assert len(sizes) >= 8 and max(sizes) <= 2


def test_defaults_and_the_batcher_thread():
    before = set(threading.enumerate())
    batcher = MicroBatcher(lambda key, items: list(items))
    assert (batcher.max_items, batcher.window) == (8, 0.005)
    [thread] = [t for t in threading.enumerate() if t not in before]
    assert thread.name == "mmsent-batcher" and thread.daemon  # never keeps the server process alive


def test_the_record_of_batch_sizes_keeps_the_latest_thousand():
    batcher = MicroBatcher(lambda key, items: list(items), window=0)
    for i in range(1001):
        assert batcher.submit("k", i).result(2) == i
    assert len(batcher.batches) == 1000 and batcher.batches.maxlen == 1000


def test_items_arriving_within_the_window_share_a_batch_and_a_full_batch_does_not_wait():
    batcher = MicroBatcher(lambda key, items: list(items), max_items=8, window=2.0)
    futures = [batcher.submit("k", 0)]  # opens a 2 s window ...
    time.sleep(0.1)
    futures += [batcher.submit("k", i) for i in (1, 2)]  # ... which the later ones join
    assert [f.result(5) for f in futures] == [0, 1, 2] and list(batcher.batches) == [3]
    full = MicroBatcher(lambda key, items: list(items), max_items=2, window=10)
    start = time.monotonic()
    assert [f.result(5) for f in [full.submit("k", 0), full.submit("k", 1)]] == [0, 1]
    assert time.monotonic() - start < 5  # it ran as soon as it held max_items, not after the 10 s window


def test_the_batcher_keeps_serving_after_an_error_or_an_all_cancelled_batch():
    gate, started, failing = threading.Event(), threading.Event(), {"on": True}
    seen = []

    def run(key, items):
        started.set()
        gate.wait(2)
        seen.append(list(items))
        if failing["on"]:
            raise RuntimeError("model failed")
        return list(items)

    batcher = MicroBatcher(run, max_items=4, window=0.05)
    with pytest.raises(RuntimeError):
        gate.set()
        batcher.submit("k", 0).result(2)
    failing["on"] = False
    assert batcher.submit("k", 1).result(2) == 1
    gate.clear()
    started.clear()
    held = batcher.submit("k", 2)
    assert started.wait(2)  # held in run: the next one waits in the queue, and its client goes away
    assert batcher.submit("k", 3).cancel()
    gate.set()
    assert held.result(2) == 2
    time.sleep(0.3)  # the cancelled one now makes a batch of nothing on its own, which is never run
    assert batcher.submit("k", 4).result(2) == 4
    assert seen[-2:] == [[2], [4]]


def test_an_unexpected_error_in_the_batcher_is_logged_and_it_keeps_serving(caplog):
    class FailsOnce(MicroBatcher):
        failed = False

        def _next_batch(self):
            if not self.failed:
                self.failed = True
                raise OSError("injected")
            return super()._next_batch()

    with caplog.at_level("ERROR", logger="mmsent.serve"):
        batcher = FailsOnce(lambda key, items: list(items))
        assert batcher.submit("k", 7).result(2) == 7
    assert [r.getMessage() for r in caplog.records] == ["micro-batcher: unexpected error; continuing"]


def test_a_batch_requests_rows_run_in_micro_batches_so_its_forward_pass_memory_is_bounded(tiny_predictor):
    """A forward pass's working memory grows with its rows: a 32-row batch is run max_micro_batch rows at a time."""
    import base64

    from fastapi.testclient import TestClient

    from mmsent.serve import ServeSettings, create_app

    b64 = base64.b64encode(jpeg_bytes(96, 80, seed=1)).decode()
    with TestClient(create_app(predictor=tiny_predictor, settings=ServeSettings(max_micro_batch=2))) as c:
        r = c.post("/predict/batch", json={"items": [{"text": f"day {i}", "image_base64": b64} for i in range(5)]})
        assert r.status_code == 200 and len(r.json()["results"]) == 5
        sizes = list(c.app.state.batcher.batches)
        assert sum(sizes) == 5 and max(sizes) <= 2
