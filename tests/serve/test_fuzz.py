"""Schema fuzzing of the HTTP API (schemathesis strategies, run by Hypothesis).

Every generated request, valid or not, gets a documented status and never a 5xx; every response matches its
declared schema; and every request the schema allows is answered 2xx (schemathesis' positive-data check). Image
content is beyond what JSON Schema can say, so the schema names it (format ``image-base64``, multipart image
content types) and the strategies below generate real images of every advertised type for those fields.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

EXAMPLES = 80  # per operation
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF", "image/bmp": "BMP",
           "image/tiff": "TIFF"}


def _image_bytes(fmt: str) -> st.SearchStrategy[bytes]:
    def encode(size: tuple[int, int], mode: str, colour: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        image = Image.new(mode, size, colour if mode in ("L", "P") else (colour, 255 - colour, colour // 2))
        image.convert("RGB" if fmt == "JPEG" and mode != "L" else mode).save(buf, format=fmt)
        return buf.getvalue()

    sizes = st.tuples(st.integers(1, 64), st.integers(1, 64))
    return st.builds(encode, sizes, st.sampled_from(["RGB", "L", "RGBA"] if fmt != "JPEG" else ["RGB", "L"]),
                     st.integers(0, 255))


for media, fmt in FORMATS.items():
    schemathesis.openapi.media_type(media, _image_bytes(fmt))
schemathesis.openapi.format("image-base64", st.sampled_from(list(FORMATS.values())).flatmap(_image_bytes).map(
    lambda raw: base64.b64encode(raw).decode("ascii")))


@pytest.fixture(scope="module")
def api_schema(tiny_predictor):
    from mmsent.serve import ServeSettings, create_app

    limits = ServeSettings(max_upload_bytes=200_000, max_image_pixels=300 * 300, max_request_pixels=200_000,
                           max_text_chars=500, max_batch=4)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(predictor=tiny_predictor, settings=limits))


def test_the_api_holds_its_schema(api_schema, capsys):
    tally: Counter = Counter()
    accepted: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict", "POST /predict/batch", "GET /health"}
    for op in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if op.method.upper() == "POST":  # GET /health takes no input, so it has no invalid requests
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                      derandomize=True)  # the same requests on every run: CI stays reproducible
            def fuzz(case):
                # Every default check, positive-data acceptance included. For invalid requests the server may be
                # more lenient than the schema (it reads an image whatever content type its part declares), so
                # there only its answer is checked: no 5xx, a documented status, a response matching its schema.
                excluded = [schemathesis.checks.negative_data_rejection] if mode.value == "negative" else []
                response = case.call_and_validate(excluded_checks=excluded)
                tally[(op.label, mode.value, response.status_code)] += 1
                # JSON bodies are held to the schema exactly; a form is read as browsers send it (explain=0/1/on,
                # any image part content type), so an "invalid" form can be answered
                if mode.value == "negative" and response.status_code < 400 and case.media_type == "application/json":
                    accepted.append(case.as_curl_command()[:400])

            fuzz()
    with capsys.disabled():
        print(f"\nschema fuzzing: {sum(tally.values())} requests; per (operation, mode, status): {dict(tally)}")
    assert not [key for key in tally if key[2] >= 500]
    assert not accepted, f"schema-violating JSON requests accepted: {accepted}"
    for label in ("POST /predict", "POST /predict/batch"):
        assert tally[(label, "positive", 200)] > 0, f"no schema-valid {label} request was generated and answered"
