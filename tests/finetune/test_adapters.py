"""The trunk/top split computes exactly what the encoder computes for extraction, and freezes what it should."""

from __future__ import annotations

import pytest
import torch

from mmsent.config import ImageFinetuneConfig, TextFinetuneConfig
from mmsent.encoders import create_image_encoder, create_text_encoder
from mmsent.finetune import make_adapter

TEXTS = ["happy love great win sun", "sad hate", "the park is on a day today", "", "so much rain"]


def test_text_top_on_cached_trunk_equals_the_encoders_own_pooled_vector(tiny_bert):
    enc = create_text_encoder(str(tiny_bert), max_length=16, device="cpu")
    expected = enc.encode(TEXTS).pooled
    for mode, last_n in (("last_n", 1), ("last_n", 2), ("full", 0)):
        adapter = make_adapter(enc, TextFinetuneConfig(mode=mode, last_n=last_n))
        rows = adapter.prepare(TEXTS, batch_size=2)
        adapter.eval()
        with torch.no_grad():
            got = adapter.forward(rows)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=f"{mode}/{last_n}")


def test_image_top_on_cached_trunk_equals_the_encoders_own_pooled_vector(lab, lite0_weights):
    enc = create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu")
    paths = sorted((lab / "data").glob("*.jpg"))[:3]
    expected = enc.encode(paths).pooled
    for mode, last_n in (("last_n", 2), ("last_n", 0), ("full", 0)):
        adapter = make_adapter(enc, ImageFinetuneConfig(mode=mode, last_n=last_n))
        rows = adapter.prepare(paths, batch_size=2)
        adapter.eval()
        with torch.no_grad():
            got = adapter.forward(rows)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4, msg=f"{mode}/{last_n}")


def test_last_n_trains_only_the_top(tiny_bert, lite0_weights):
    text = make_adapter(create_text_encoder(str(tiny_bert), device="cpu"), TextFinetuneConfig(last_n=1))
    assert {n for n, p in text.network.named_parameters() if p.requires_grad} == {
        n for n, _ in text.network.named_parameters() if n.startswith("encoder.layer.1.")}
    image = make_adapter(create_image_encoder(f"efficientnet-lite0:{lite0_weights}", device="cpu"),
                         ImageFinetuneConfig(last_n=2))
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("_blocks") else "")
                 for n, p in image.network.named_parameters() if p.requires_grad}
    assert trainable == {"_blocks.14", "_blocks.15", "_conv_head", "_bn1"}


def test_features_from_the_cached_trunk_equal_extraction(tiny_bert, lab, lite0_weights):
    # out-of-fold features are made this way: they must be what encode() makes (pooled, tokens, mask and padding)
    text = create_text_encoder(str(tiny_bert), max_length=16, device="cpu")
    image = create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu")
    paths = sorted((lab / "data").glob("*.jpg"))[:3]
    for enc, items, cfg_type, settings in (
        (text, TEXTS, TextFinetuneConfig, (("last_n", 1), ("full", 0))),
        (image, paths, ImageFinetuneConfig, (("last_n", 2), ("full", 0))),
    ):
        expected = enc.encode(items)
        for mode, last_n in settings:
            adapter = make_adapter(enc, cfg_type(mode=mode, last_n=last_n))
            got = adapter.features(adapter.prepare(items, batch_size=2), batch_size=2)
            assert got.tokens.shape == expected.tokens.shape and torch.equal(got.mask, expected.mask)
            torch.testing.assert_close(got.pooled, expected.pooled, atol=1e-4, rtol=1e-4, msg=f"{mode}/{last_n}")
            torch.testing.assert_close(got.tokens, expected.tokens, atol=1e-4, rtol=1e-4, msg=f"{mode}/{last_n}")


def test_text_last_n_beyond_the_model_trains_every_layer_and_zero_is_refused(tiny_bert):
    enc = create_text_encoder(str(tiny_bert), device="cpu")
    adapter = make_adapter(enc, TextFinetuneConfig(last_n=6))  # the tiny model has 2 layers
    assert adapter.last_n == 2 and adapter.split == 0
    assert not any(p.requires_grad for p in enc.model.embeddings.parameters())
    with pytest.raises(ValueError, match="last_n must be >= 1"):
        make_adapter(enc, TextFinetuneConfig(last_n=0))
