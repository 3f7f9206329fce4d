"""Examples on synthetic files and counting encoders, so cache tests can tell hits from misses."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmsent_testkit import TEXTS, FakeImageEncoder, FakeTextEncoder, build_tiny_bert, make_examples

from mmsent.data.records import Example


# Helpers are handed out as fixtures: test modules importing ``conftest`` would clash with tests/encoders/conftest.py.
@pytest.fixture
def fake_image() -> type[FakeImageEncoder]:
    return FakeImageEncoder


@pytest.fixture
def fake_text() -> type[FakeTextEncoder]:
    return FakeTextEncoder


@pytest.fixture
def examples_factory(tmp_path):
    return lambda name, texts=TEXTS: make_examples(tmp_path / name, texts)


@pytest.fixture
def examples(tmp_path) -> list[Example]:
    return make_examples(tmp_path / "data")


@pytest.fixture
def tiny_bert_dir(tmp_path) -> Path:
    return build_tiny_bert(tmp_path / "tiny_bert")
