"""hf-clip: a CLIP model's towers as image and text encoders, and its zero-shot baseline (tiny random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmsent_testkit import TEXTS, build_tiny_clip, make_examples

from mmsent.encoders import create_image_encoder, create_text_encoder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def test_the_towers_encode_images_and_texts(clip, images):
    image = create_image_encoder(f"hf-clip:{clip}", grid=2, device="cpu")
    text = create_text_encoder(f"hf-clip:{clip}", max_length=16, device="cpu")
    assert image.name == f"hf-clip:{clip}" and type(image.model).__name__ == "CLIPVisionModel"
    assert type(text.network).__name__ == "CLIPTextModel"
    f = image.encode(images[:3], batch_size=2)
    assert f.pooled.shape == (3, 16) and f.tokens.shape == (3, 4, 16)  # 32 px crop, 8 px patches -> 4x4, pooled 2x2
    t = text.encode(TEXTS, batch_size=2)
    assert t.pooled.shape == (len(TEXTS), 16) and t.tokens.shape == (len(TEXTS), 16, 16)
    assert torch.isfinite(f.pooled).all() and torch.isfinite(t.pooled).all()
    # both towers are read from the one checkpoint: their weights are the full model's
    from transformers import CLIPModel

    full = CLIPModel.from_pretrained(str(clip))
    assert torch.equal(text.network.get_input_embeddings().weight, full.text_model.get_input_embeddings().weight)
    assert "weights=sha256:" in image.fingerprint() and "weights=sha256:" in text.fingerprint()


def test_zero_shot_probabilities_follow_the_prompt_similarity(clip, tmp_path):
    from mmsent.zeroshot import ZeroShotClassifier

    examples = make_examples(tmp_path / "ex")
    clf = ZeroShotClassifier(f"hf-clip:{clip}", device="cpu")
    probs = clf.predict_proba([ex.image_path for ex in examples], [ex.text for ex in examples], batch_size=2)
    assert set(probs) == {"image", "text", "image+text"}
    for p in probs.values():
        assert p.shape == (len(examples), 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probs["image+text"], (probs["image"] + probs["text"]) / 2)
    # the label prompts hold distinct words, so the classes are told apart (not a constant third each)
    assert np.ptp(probs["text"], axis=1).max() > 1e-4
    # recomputed by hand from the model's own embedding functions
    model = clf.model
    tok = clf.tokenizer(clf.prompts + [examples[0].text], padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = model.get_text_features(**tok)
        emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
        emb = torch.nn.functional.normalize(emb, dim=-1)
        expected = torch.softmax(model.logit_scale.exp() * emb[3] @ emb[:3].T, dim=-1).numpy()
    assert np.allclose(probs["text"][0], expected, atol=1e-4)


def test_zero_shot_refuses_a_single_tower_model(tmp_path):
    from mmsent_testkit import build_tiny_bert

    from mmsent.encoders import EncoderLoadError
    from mmsent.zeroshot import ZeroShotClassifier

    with pytest.raises((ValueError, EncoderLoadError), match="two-tower|could not be loaded"):
        ZeroShotClassifier(str(build_tiny_bert(tmp_path / "bert")), device="cpu")


@pytest.mark.integration  # a whole run
def test_a_run_on_the_sample_with_clip_for_both_and_its_zero_shot_baseline_then_serving(clip, tmp_path):
    from mmsent_runkit import run_on_the_sample, serve_one_sample_post

    result = run_on_the_sample(tmp_path / "run", f"hf-clip:{clip}", f"hf-clip:{clip}", models="concat,single_stream")
    assert result.predictions_path.is_file()
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    names = [b["name"] for b in comparison["baselines"]]
    assert names == ["zero-shot image", "zero-shot text", "zero-shot image+text"]
    assert all(b["n"] == comparison["val_size"] for b in comparison["baselines"])
    assert "*zero-shot image+text*" in (tmp_path / "run" / "comparison.md").read_text()
    assert "zero-shot image+text" in (tmp_path / "run" / "report.html").read_text()
    assert serve_one_sample_post(tmp_path / "run")["label"] in ("positive", "neutral", "negative")


def test_zero_shot_setting_auto_off_and_named():
    from mmsent.config import ConfigError, load_config
    from mmsent.zeroshot import zero_shot_model

    assert zero_shot_model("auto", "efficientnet-lite2", "minilm+hf-clip:x") == "hf-clip:x"
    assert zero_shot_model("auto", "hf-clip:y", "minilm") == "hf-clip:y"
    assert zero_shot_model("auto", "efficientnet-lite2", "minilm") is None
    assert zero_shot_model("off", "hf-clip:y", "minilm") is None
    assert zero_shot_model("hf-clip:z", "efficientnet-lite2", "minilm") == "hf-clip:z"
    with pytest.raises(ConfigError, match="compare.zero_shot"):
        load_config(overrides=["compare.zero_shot=clip"])


def test_the_text_towers_layer_groups_fine_tune_like_a_text_encoders(clip):
    """The text tower's top layers on the cached trunk compute what extraction computes; last_n trains only them."""
    from mmsent.config import TextFinetuneConfig
    from mmsent.finetune import make_adapter

    text = create_text_encoder(f"hf-clip:{clip}", max_length=16, device="cpu")
    expected = text.encode(TEXTS).pooled
    for mode, last_n in (("last_n", 1), ("full", 0)):
        adapter = make_adapter(text, TextFinetuneConfig(mode=mode, last_n=last_n))
        rows = adapter.prepare(TEXTS, batch_size=2)
        adapter.eval()
        with torch.no_grad():
            torch.testing.assert_close(adapter.forward(rows), expected, atol=1e-5, rtol=1e-5, msg=mode)
    adapter = make_adapter(text, TextFinetuneConfig(mode="last_n", last_n=1))
    trainable = {name for name, p in text.network.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(adapter.layers_path) for name in trainable)


def test_the_vision_tower_fine_tunes_whole_and_refuses_a_block_split(clip, images):
    from mmsent.finetune.image import ImageAdapter

    image = create_image_encoder(f"hf-clip:{clip}", grid=2, device="cpu", backend="torch")
    with pytest.raises(ValueError, match="mode=full"):
        ImageAdapter(image, mode="last_n", last_n=1)
    adapter = ImageAdapter(image, mode="full")
    rows = adapter.prepare(images[:2])
    adapter.train()
    adapter.forward(rows).sum().backward()
    layers = [p for name, p in image.network.named_parameters() if "encoder.layers" in name]
    assert layers and all(p.grad is not None for p in layers)
