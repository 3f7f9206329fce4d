"""The app around the tiny run, shared by the API tests."""

from __future__ import annotations

import pytest


# One app per test (cheap: the predictor is shared), so that every test calls create_app itself: a mutation tool
# that maps tests to the functions they call then sees each test reach the app's code.
@pytest.fixture
def client(tiny_predictor):
    from fastapi.testclient import TestClient

    from mmsent.serve import ServeSettings, create_app

    settings = ServeSettings(max_upload_bytes=200_000, max_image_pixels=300 * 300, max_request_pixels=200_000,
                             max_text_chars=500, max_batch=4)
    with TestClient(create_app(predictor=tiny_predictor, settings=settings)) as c:
        yield c
