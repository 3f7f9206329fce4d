"""extract_features: per-modality cache hits, misses, row reuse by content, and a real-encoder round trip."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from mmsent.config import CleaningConfig
from mmsent.data.text import TextCleaner
from mmsent.features import FeatureCache
from mmsent.features.extract import FeatureSource, extract_features


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "cache")


def _run(examples, img, txt, cache, cleaner=None, precomputed=None, **kw):
    source = FeatureSource(img, txt, precomputed or {})
    return extract_features(examples, source, cleaner or TextCleaner(), cache, progress=False, **kw)


def _assert_same(a, b):
    assert a.guids == b.guids
    for m in ("image", "text"):
        fa, fb = getattr(a, m), getattr(b, m)
        assert torch.equal(fa.pooled, fb.pooled) and torch.equal(fa.tokens, fb.tokens) and torch.equal(fa.mask, fb.mask)


def test_second_run_is_a_cache_hit(examples, cache, caplog, fake_image, fake_text):
    img, txt = fake_image(), fake_text()
    with caplog.at_level(logging.INFO, logger="mmsent.features"):
        first = _run(examples, img, txt, cache)
    assert "image features: cache miss" in caplog.text and "text features: cache miss" in caplog.text
    assert len(img.calls) == 1 and len(txt.calls) == 1
    assert txt.calls[0][0] == "Happy day at the park"  # cleaned before encoding
    assert first.guids == [e.guid for e in examples]
    assert first.image.tokens.shape == (5, 4, 8) and first.text.mask.shape == (5, 5)

    caplog.clear()
    img2, txt2 = fake_image(), fake_text()
    with caplog.at_level(logging.INFO, logger="mmsent.features"):
        second = _run(examples, img2, txt2, cache)
    assert img2.calls == [] and txt2.calls == []
    assert "image features: cache hit" in caplog.text and "text features: cache hit" in caplog.text
    _assert_same(first, second)


def test_changed_text_reencodes_only_that_text(examples, cache, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    changed = list(examples)
    changed[2] = replace(changed[2], text="Terrible game")
    img, txt = fake_image(), fake_text()
    out = _run(changed, img, txt, cache)
    assert img.calls == []  # image entry unaffected
    assert txt.calls == [["Terrible game"]]
    fresh = _run(changed, fake_image(), fake_text(), None)
    _assert_same(out, fresh)


def test_changed_image_byte_reencodes_that_image(examples, cache, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    p = examples[1].image_path
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    img, txt = fake_image(), fake_text()
    _run(examples, img, txt, cache)
    assert img.calls == [[str(p)]] and txt.calls == []


def test_cleaner_option_change_is_a_miss(examples, cache, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    img, txt = fake_image(), fake_text()
    _run(examples, img, txt, cache, cleaner=TextCleaner(CleaningConfig(lowercase=True)))
    assert img.calls == []
    # only texts that lower-casing changed are encoded again; the others are reused by content
    assert sorted(txt.calls[0]) == ["great game!!", "happy day at the park"]


def test_text_encoder_change_keeps_image_cache(examples, cache, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    img, txt = fake_image(), fake_text(max_length=7)
    out = _run(examples, img, txt, cache)
    assert img.calls == [] and len(txt.calls) == 1 and len(txt.calls[0]) == 5
    assert out.text.mask.shape == (5, 7)


def test_image_encoder_fingerprint_change_is_a_miss(examples, cache, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    img, txt = fake_image(tag="v2"), fake_text()
    _run(examples, img, txt, cache)
    assert len(img.calls) == 1 and len(img.calls[0]) == 5 and txt.calls == []


def test_subset_and_reorder_reuse_rows(examples, cache, fake_image, fake_text):
    full = _run(examples, fake_image(), fake_text(), cache)
    subset = [examples[3], examples[0]]
    img, txt = fake_image(), fake_text()
    out = _run(subset, img, txt, cache)
    assert img.calls == [] and txt.calls == []
    _assert_same(out, full.select(["4", "1"]))


def test_new_examples_only_encode_what_is_new(examples, cache, fake_image, fake_text):
    _run(examples[:3], fake_image(), fake_text(), cache)
    img, txt = fake_image(), fake_text()
    _run(examples, img, txt, cache)
    assert [len(c) for c in img.calls] == [2] and [len(c) for c in txt.calls] == [2]


def test_duplicate_content_is_encoded_once(cache, fake_image, fake_text, examples_factory):
    exs = examples_factory("dup", ["same text", "same text", "other"])
    img, txt = fake_image(), fake_text()
    out = _run(exs, img, txt, cache)
    assert txt.calls == [["same text", "other"]]
    assert torch.equal(out.text.pooled[0], out.text.pooled[1])


def test_corrupt_cache_entry_is_recomputed(examples, cache, caplog, fake_image, fake_text):
    _run(examples, fake_image(), fake_text(), cache)
    for f in (cache.root / "text").rglob("*.safetensors"):
        f.write_bytes(b"garbage")
    img, txt = fake_image(), fake_text()
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        _run(examples, img, txt, cache)
    assert "damaged" in caplog.text
    assert img.calls == [] and len(txt.calls[0]) == 5
    txt2 = fake_text()
    _run(examples, fake_image(), txt2, cache)
    assert txt2.calls == []  # the recomputed entry was stored again


def test_no_cache_always_encodes_and_passes_max_pixels(examples, fake_image, fake_text):
    img, txt = fake_image(), fake_text()
    _run(examples, img, txt, None, max_image_pixels=10_000)
    _run(examples, img, txt, None)
    assert len(img.calls) == 2 and len(txt.calls) == 2
    assert img.kwargs[0] == {"max_pixels": 10_000} and img.kwargs[1] == {"max_pixels": None}


def test_real_encoders_round_trip(examples, cache, tiny_bert_dir):
    """Random EfficientNet-Lite0 + tiny BERT through the cache: a hit returns what the miss returned."""
    from mmsent.encoders import create_image_encoder, create_text_encoder

    torch.manual_seed(0)
    img = create_image_encoder("efficientnet-lite0", grid=2, pretrained=False, device="cpu")
    txt = create_text_encoder(str(tiny_bert_dir), max_length=12, device="cpu")
    exs = examples[:3]
    first = _run(exs, img, txt, cache, batch_size=2)
    assert first.image.tokens.shape == (3, 4, 1280) and first.text.tokens.shape == (3, 12, 32)
    second = _run(exs, img, txt, cache, batch_size=2)
    _assert_same(first, second)


def test_precomputed_rows_are_taken_and_never_encoded(examples, cache, fake_image, fake_text):
    """Out-of-fold features of some rows (one modality) replace what the encoder would give; the rest is encoded."""
    full = _run(examples, fake_image(), fake_text(), None)
    chosen = [examples[3].guid, examples[1].guid]
    given = full.image.index(torch.tensor([3, 1]))
    given = type(given)(given.pooled - 100, given.tokens - 100, given.mask)
    img, txt = fake_image(), fake_text()
    stats: dict = {}
    out = _run(examples, img, txt, cache, precomputed={"image": (chosen, given)}, stats=stats)
    assert out.guids == full.guids
    assert sorted(img.calls[0]) == sorted(str(e.image_path) for i, e in enumerate(examples) if i not in (1, 3))
    assert len(txt.calls[0]) == len(examples)  # text has no precomputed rows
    assert torch.equal(out.image.pooled[[3, 1]], given.pooled)
    assert torch.equal(out.image.pooled[[0, 2, 4]], full.image.pooled[[0, 2, 4]])
    assert torch.equal(out.text.pooled, full.text.pooled) and stats["image"]["precomputed"] == 2
    wrong = type(given)(given.pooled, given.tokens[:, :2], given.mask[:, :2])
    with pytest.raises(ValueError, match="precomputed tokens"):
        _run(examples, fake_image(), fake_text(), None, precomputed={"image": (chosen, wrong)})


def test_an_encoder_giving_nan_is_refused_naming_the_rows(examples, cache, fake_image, fake_text):
    txt = fake_text()
    real_encode = txt.encode

    def nan_encode(items, **kw):
        feats = real_encode(items, **kw)
        feats.pooled[1] = float("nan")
        return feats

    txt.encode = nan_encode
    with pytest.raises(ValueError, match=r"NaN/infinite text features for 1 row\(s\), e.g. guids \['"):
        _run(examples, fake_image(), txt, cache)
    assert not list((cache.root / "text").rglob("*.json"))  # nothing cached


def test_a_killed_extraction_keeps_its_finished_chunks(examples_factory, cache, fake_image, fake_text, monkeypatch):
    import mmsent.features.extract as extract_mod

    monkeypatch.setattr(extract_mod, "PARTIAL_CHUNK", 4)
    texts = [f"post number {i}" for i in range(10)]
    examples = examples_factory("many", texts)
    dying = fake_text()
    real_encode = dying.encode

    def die_on_third_chunk(items, **kw):
        if len(dying.calls) == 2:
            raise KeyboardInterrupt  # the kill, in the middle of the extraction
        return real_encode(items, **kw)

    dying.encode = die_on_third_chunk
    img = fake_image()
    with pytest.raises(KeyboardInterrupt):
        _run(examples, img, dying, cache)
    assert [len(c) for c in dying.calls] == [4, 4]
    txt = fake_text()
    rerun = _run(examples, fake_image(), txt, cache)
    assert [len(c) for c in txt.calls] == [2]  # only the unfinished rows are encoded again
    _assert_same(rerun, _run(examples, fake_image(), fake_text(), None))
    # once the whole entry is stored, the partial ones are gone: one entry per modality
    assert len(cache.entries("text")) == 1 and len(cache.entries("image")) == 1
