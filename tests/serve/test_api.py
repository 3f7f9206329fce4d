"""The HTTP API on a tiny run: good requests, every documented 4xx, batches, and no upload touching the disk."""

from __future__ import annotations

import base64
import io
import tempfile

import pytest
from mmsent_runkit import jpeg_bytes
from PIL import Image

from mmsent.labels import LABELS

IMG = jpeg_bytes(96, 80, seed=1)
B64 = base64.b64encode(IMG).decode("ascii")


def post_multipart(client, image=IMG, text="happy love day", **fields):
    files = {"image": ("x.jpg", image, "image/jpeg")} if image is not None else None
    data = {"text": text, **fields} if text is not None else fields
    return client.post("/predict", files=files, data=data)


def test_multipart_prediction_has_label_probabilities_evidence_and_model(client):
    r = post_multipart(client)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in LABELS
    assert set(body["probabilities"]) == set(LABELS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    ev = body["evidence"]
    assert set(ev["modality_ablation"]) == {"image", "text"}
    assert ev["image_map"] == "attention" and len(ev["image_attention"]) == 2  # grid 2 in the tiny run
    assert [t["token"] for t in ev["tokens"]] == ["happy", "love", "day"]
    assert all(-1 <= t["score"] <= 1 for t in ev["tokens"])
    assert ev["image_overlay_png"] is None
    assert body["model"]["name"] == "dual_stream" and body["model"]["seeds"] == [0, 1]
    assert body["cleaned_text"] == "happy love day"


def test_json_and_multipart_agree_and_overlay_is_a_png(client):
    multi = post_multipart(client, overlay="true").json()
    js = client.post("/predict", json={"text": "happy love day", "image_base64": f"data:image/jpeg;base64,{B64}",
                                       "overlay": True})
    assert js.status_code == 200, js.text
    assert js.json()["probabilities"] == pytest.approx(multi["probabilities"], abs=1e-6)
    uri = js.json()["evidence"]["image_overlay_png"]
    assert uri.startswith("data:image/png;base64,")
    overlay = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert overlay.size == (224, 224)  # the EfficientNet-Lite0 crop


def test_explain_off_still_gives_ablation(client):
    ev = post_multipart(client, explain="false").json()["evidence"]
    assert ev["tokens"] is None and ev["image_saliency"] is None and ev["modality_ablation"]


@pytest.mark.parametrize("kwargs, status, words", [
    ({"image": None}, 422, "image: missing"),
    ({"image": b"this is not an image"}, 422, "not an image"),
    ({"image": b""}, 422, "empty"),
    ({"image": IMG[: len(IMG) // 2]}, 422, "truncated"),
    ({"text": ""}, 422, "text: empty"),
    ({"text": "   \n"}, 422, "text: empty"),
    ({"text": None}, 422, "text: missing"),
    ({"text": "x" * 501}, 422, "over the limit"),
    ({"image": jpeg_bytes(400, 300)}, 413, "decompression-bomb limit"),
    ({"explain": "abc"}, 422, "explain: 'abc' is not a boolean"),
    ({"overlay": "maybe"}, 422, "overlay: 'maybe' is not a boolean"),
])
def test_bad_multipart_inputs_get_clear_4xx(client, kwargs, status, words):
    r = post_multipart(client, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_a_repeated_form_field_is_refused_not_silently_dropped(client):
    r = client.post("/predict", files=[("image", ("x.jpg", IMG, "image/jpeg"))],
                    data={"text": ["happy day", "sad day"]})
    assert r.status_code == 422 and "text: sent 2 times" in r.json()["detail"]
    r = client.post("/predict", files=[("image", ("x.jpg", IMG, "image/jpeg")), ("image", ("y.jpg", IMG, "image/jpeg"))],
                    data={"text": "hi"})
    assert r.status_code == 422 and "image: sent 2 times" in r.json()["detail"]


def test_oversized_upload_is_refused_before_decoding(client):
    big = jpeg_bytes(290, 290, seed=3) + b"\0" * 300_000
    r = post_multipart(client, image=big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post("/predict", json={"text": "hi", "image_base64": base64.b64encode(big).decode()})
    assert r.status_code == 413


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not supported"),
    ({"content": b"hello"}, 415, "not supported"),
    ({"data": {"text": "a form without a file"}}, 422, "image: missing"),
    ({"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
    ({"json": {"text": "hi"}}, 422, "image_base64: missing"),
    ({"json": {"text": "", "image_base64": B64}}, 422, "text: empty"),
    ({"json": {"text": "hi", "image_base64": "not base64 !!"}}, 400, "not valid base64"),
    ({"json": {"text": "hi", "image_base64": base64.b64encode(b"GIF89a nope").decode()}}, 422, "image"),
    ({"json": ["a", "list"]}, 422, "body"),
    # each of these was a 500 once
    ({"content": b'{"text": "\\ud800 hi", "image_base64": "' + B64.encode() + b'"}',
      "headers": {"content-type": "application/json"}}, 422, "lone surrogate"),
    ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}}, 400,
     "nested too deeply"),
    ({"content": b'{"text": "hi", "image_base64": "x", "n": ' + b"7" * 5000 + b"}",
      "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
])
def test_bad_requests_get_clear_4xx(client, kwargs, status, words):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_batch_matches_single_predictions(client):
    texts = ["happy love day", "sad hate rain", "the park"]
    images = [jpeg_bytes(90, 70, seed=s) for s in range(3)]
    items = [{"text": t, "image_base64": base64.b64encode(i).decode()} for t, i in zip(texts, images)]
    r = client.post("/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and r.json()["model"]["name"] == "dual_stream"
    for res, text, image in zip(results, texts, images):
        single = post_multipart(client, image=image, text=text).json()
        assert res["label"] == single["label"]
        assert res["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)


@pytest.mark.parametrize("body, status, words", [
    ({"items": []}, 422, "empty"),
    ({"items": [{"text": "a", "image_base64": B64}] * 5}, 413, "over the limit of 4"),
    ({"items": [{"text": "a", "image_base64": B64}, {"text": "", "image_base64": B64}]}, 422, "items[1].text"),
    ({"items": [{"text": "a", "image_base64": B64}, {"text": "b", "image_base64": "AAAA"}]}, 422, "items[1]"),
    ({"items": [{"text": "a"}]}, 422, "image_base64"),
])
def test_bad_batches_name_the_row(client, body, status, words):
    r = client.post("/predict/batch", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_batch_needs_json(client):
    assert client.post("/predict/batch", files={"image": ("x.jpg", IMG)}, data={"text": "a"}).status_code == 415


def test_uploads_never_spill_to_disk(client, monkeypatch):
    # Starlette spools file parts over 1 MB to a temporary file; ours must stay in memory at any allowed size.
    def refuse(self):
        raise AssertionError("an upload was rolled over to a temporary file")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", refuse)
    monkeypatch.setattr(client.app.state.settings, "max_upload_bytes", 3_000_000)
    big = jpeg_bytes(200, 150) + b"\0" * 1_500_000  # trailing bytes after the JPEG's end are ignored by decoders
    assert post_multipart(client, image=big).status_code == 200


def test_health_docs_and_page(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"]["name"] == "dual_stream" and h["limits"]["max_batch"] == 4
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text  # works offline
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css", "/static/index.html"):
        r = client.get(asset)
        assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    assert "http" not in page.text.lower().replace("http-equiv", "")  # no external assets


def test_a_batch_of_large_images_is_refused_before_decoding(client):
    big = base64.b64encode(jpeg_bytes(290, 290, seed=3)).decode()  # under the per-image limit, not 3 of them
    items = [{"text": "hi", "image_base64": big}] * 3
    r = client.post("/predict/batch", json={"items": items})
    assert r.status_code == 413 and "252,300 pixels together, over the limit of 200,000" in r.json()["detail"]
    assert client.post("/predict/batch", json={"items": items[:2]}).status_code == 200


def test_misspelt_fields_and_non_boolean_flags_are_refused_by_name(client):
    """What the OpenAPI schema says is what is accepted: no silently ignored field, JSON flags are true/false."""
    r = post_multipart(client, explian="false")
    assert r.status_code == 422 and "'explian'" in r.json()["detail"]
    r = client.post("/predict", json={"text": "happy day", "image_base64": B64, "overlya": True})
    assert r.status_code == 422 and "overlya" in r.text
    r = client.post("/predict", json={"text": "happy day", "image_base64": B64, "explain": 1})
    assert r.status_code == 422 and "explain" in r.text
    r = client.post("/predict/batch", json={"items": [{"text": "happy", "image_base64": B64, "label": "x"}]})
    assert r.status_code == 422 and "label" in r.text


@pytest.mark.parametrize("blank", ["   ", "\x1c\x1d", "\ufeff", "\u3000\n"])
def test_a_text_of_only_whitespace_is_empty_to_both_regex_dialects(client, blank):
    r = client.post("/predict", json={"text": blank, "image_base64": B64})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_the_schema_documents_the_bodies_and_this_servers_limits(client):
    spec = client.get("/openapi.json").json()
    models = spec["components"]["schemas"]
    assert models["PredictJSON"]["properties"]["text"]["maxLength"] == 500  # the fixture's max_text_chars
    assert models["BatchRequest"]["properties"]["items"]["maxItems"] == 4
    assert models["PredictItem"]["properties"]["image_base64"]["format"] == "image-base64"
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch == {"$ref": "#/components/schemas/BatchRequest"}
    form = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["additionalProperties"] is False and "image/png" in form["encoding"]["image"]["contentType"]
