"""Bounded memory: a global budget for what requests in flight hold (503 + Retry-After past it) and a cap on a batch
body's total bytes (413)."""

from __future__ import annotations

import base64

import pytest
from mmsent_runkit import jpeg_bytes

IMG = jpeg_bytes(96, 80, seed=1)
B64 = base64.b64encode(IMG).decode("ascii")
BUDGET = 2_000_000


@pytest.fixture
def app(tiny_predictor):
    from mmsent.serve import ServeSettings, create_app

    return create_app(predictor=tiny_predictor, settings=ServeSettings(
        max_upload_bytes=200_000, max_image_pixels=300 * 300, max_request_pixels=200_000, max_text_chars=500,
        max_batch=4, max_batch_bytes=20_000, memory_budget_bytes=BUDGET))


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def post_image(client, **kwargs):
    return client.post("/predict", files={"image": ("x.jpg", IMG, "image/jpeg")}, data={"text": "happy day"}, **kwargs)


def chunked(data: bytes, size: int = 1000):
    """A body without Content-Length: sent chunked, so the server can only count it as it arrives."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def assert_busy(r) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert r.json()["detail"].startswith("server busy: ") and r.json()["detail"].endswith("; retry in 1 s")


def test_a_request_past_the_budget_others_hold_gets_503_with_retry_after(client):
    budget = client.app.state.memory_budget
    others = budget.hold()  # what concurrent requests hold
    others.grow(BUDGET - 10_000)  # room left for none of the requests below (the image alone decodes to 23 kB)
    try:
        r = post_image(client)
        assert_busy(r)
        assert "the request body needs" in r.json()["detail"]  # refused from Content-Length, before reading
        body = f'{{"text": "hi", "image_base64": "{B64}"}}'.encode()
        r = client.post("/predict", content=chunked(body), headers={"content-type": "application/json"})
        assert_busy(r)  # counted while streaming
        assert budget.in_use == others.size  # the refused requests hold nothing
        others.release()
        others.grow(BUDGET - 30_000)  # the body fits now (~6.7 kB, 3 times), not the decoded image (96 x 80 x 3)
        r = post_image(client)
        assert_busy(r)
        assert "decoding the images needs 23,040 bytes" in r.json()["detail"]
    finally:
        others.release()
    assert post_image(client).status_code == 200  # and served once the others are done
    assert budget.in_use == 0


def test_a_request_needing_more_than_the_whole_budget_gets_413_not_503(tiny_predictor):
    from fastapi.testclient import TestClient

    from mmsent.serve import ServeSettings, create_app

    with TestClient(create_app(predictor=tiny_predictor, settings=ServeSettings(memory_budget_bytes=10_000))) as c:
        r = post_image(c)
        assert r.status_code == 413 and "retry-after" not in r.headers
        assert r.json()["detail"].endswith("bytes of memory in all, over this server's memory budget of 10,000 bytes;"
                                           " send fewer or smaller images")


def test_every_request_gives_its_share_back(client):
    budget = client.app.state.memory_budget
    assert post_image(client).status_code == 200
    assert budget.peak >= 3 * len(IMG) + 96 * 80 * 3  # the body three times over and the decoded image
    assert client.post("/predict", json={"text": "", "image_base64": B64}).status_code == 422
    assert client.post("/predict/batch", json={"items": [{"text": "hi", "image_base64": B64}] * 9}).status_code == 413
    ok = client.post("/predict/batch", json={"items": [{"text": "hi", "image_base64": B64}] * 2})
    assert ok.status_code == 200, ok.text
    assert budget.in_use == 0


def test_a_batch_body_over_the_batch_cap_gets_413_though_each_image_is_within_its_limit(client):
    rows = [{"text": "hi", "image_base64": B64}] * 4  # 4 rows are allowed, each image is far under 200,000 bytes
    over = client.post("/predict/batch", json={"items": rows})
    assert over.status_code == 413
    assert over.json()["detail"] == "request body over the limit of 20,000 bytes"
    body = over.request.content
    assert len(body) > 20_000
    r = client.post("/predict/batch", content=chunked(body), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"] == "request body over the limit of 20,000 bytes"
    assert client.post("/predict/batch", json={"items": rows[:2]}).status_code == 200
    assert client.app.state.memory_budget.in_use == 0


def test_the_schema_and_health_document_the_body_caps_and_the_budget(client):
    spec = client.get("/openapi.json").json()
    batch = spec["paths"]["/predict/batch"]["post"]
    assert batch["requestBody"]["x-max-body-bytes"] == 20_000
    assert batch["requestBody"]["description"] == "At most 20,000 bytes in all (larger bodies are refused with 413)."
    single = client.app.state.settings.single_body_limit()
    assert spec["paths"]["/predict"]["post"]["requestBody"]["x-max-body-bytes"] == single
    assert set(batch["responses"]) >= {"408", "413", "503"}
    assert "Retry-After" in batch["responses"]["503"]["headers"]
    limits = client.get("/health").json()["limits"]
    assert limits["max_batch_bytes"] == 20_000 and limits["memory_budget_bytes"] == BUDGET
    assert limits["header_timeout"] == 10.0 and limits["body_timeout"] == 60.0


def test_the_budget_counts_concurrent_holds_and_refuses_without_taking():
    from mmsent.serve.limits import MemoryBudget, OverBudget

    budget = MemoryBudget(100)
    a, b = budget.hold(), budget.hold()
    a.grow(60)
    b.grow(40)
    with pytest.raises(OverBudget) as info:
        b.grow(1)
    assert not info.value.never_fits and (info.value.in_use, info.value.held) == (100, 40)
    assert (b.size, budget.in_use, budget.peak) == (40, 100, 100)
    a.release()
    with pytest.raises(OverBudget) as info:
        b.grow(61)  # 40 + 61 > 100: this request could never be served
    assert info.value.never_fits
    b.grow(60)
    b.release()
    assert budget.in_use == 0 and budget.peak == 100


def test_a_server_allowing_longer_texts_answers_them(tiny_predictor):
    from fastapi.testclient import TestClient

    from mmsent.data.text import MAX_TEXT_CHARS
    from mmsent.serve import ServeSettings, create_app

    text = "so glad " * 700  # 5,600 characters: over the library's default limit, under this server's
    app = create_app(predictor=tiny_predictor, settings=ServeSettings(max_text_chars=6_000))
    try:
        with TestClient(app) as c:
            answer = c.post("/predict", files={"image": ("a.jpg", jpeg_bytes(64, 48, seed=1), "image/jpeg")},
                            data={"text": text, "explain": "false"})
        assert answer.status_code == 200, answer.text
    finally:
        tiny_predictor.max_text_chars = MAX_TEXT_CHARS  # the fixture is shared: as the library's default again
