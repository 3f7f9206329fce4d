"""hf-image: Hugging Face image backbones (CNN maps and ViT/CLIP patch grids) with tiny random weights."""

from __future__ import annotations

import json

import pytest
import torch

from mmsent.encoders import create_image_encoder


def _save(folder, model, preprocessor: dict):
    model.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModel, ResNetConfig, ResNetModel, ViTConfig, ViTModel

    base = tmp_path_factory.mktemp("hf_image")
    torch.manual_seed(0)
    clip_pre = {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32},
                "image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28], "resample": 3}
    return {
        # the original design's ResNet family: a CNN map
        "resnet": _save(base / "resnet", ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                                                                  depths=[1, 1], layer_type="basic")),
                        {"size": {"shortest_edge": 64}, "crop_pct": 0.875, "image_mean": [0.485, 0.456, 0.406],
                         "image_std": [0.229, 0.224, 0.225], "resample": 3}),
        "vit": _save(base / "vit", ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                      intermediate_size=32, image_size=32, patch_size=8)),
                     {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}),
        "clip": _save(base / "clip", CLIPVisionModel(CLIPVisionConfig(hidden_size=16, num_hidden_layers=1,
                                                                      num_attention_heads=2, intermediate_size=32,
                                                                      image_size=32, patch_size=8)), clip_pre),
    }


@pytest.mark.parametrize("family, dim, side", [("resnet", 16, 8), ("vit", 16, 4), ("clip", 16, 4)])
def test_each_family_gives_a_pooled_vector_and_grid_tokens(backbones, images, family, dim, side):
    enc = create_image_encoder(f"hf-image:{backbones[family]}", grid=2, device="cpu")
    f = enc.encode(images[:3], batch_size=2)
    assert f.pooled.shape == (3, dim) and f.tokens.shape == (3, 4, dim) and f.mask.all()
    assert torch.isfinite(f.pooled).all()
    assert enc.map_side == side
    # the pooled vector is the mean of the map, as for the other image encoders
    x = enc.normalize(torch.from_numpy(enc.crop(enc.open(images[0]))[None]))
    with torch.no_grad():
        fmap = enc.forward_features(x)
    assert torch.allclose(fmap.mean(dim=(2, 3))[0], f.pooled[0], atol=1e-4)


def test_preprocessing_comes_from_the_folder(backbones):
    clip = create_image_encoder(f"hf-image:{backbones['clip']}", grid=2, device="cpu")
    assert (clip.preprocess.input_size, clip.preprocess.resize_size) == (32, 40)
    assert clip.preprocess.mean == pytest.approx((0.48 * 255, 0.46 * 255, 0.41 * 255))
    resnet = create_image_encoder(f"hf-image:{backbones['resnet']}", grid=1, device="cpu")
    assert (resnet.preprocess.input_size, resnet.preprocess.resize_size) == (64, 73)  # 64 / 0.875
    assert "weights=sha256:" in resnet.fingerprint() and resnet.name.startswith("hf-image:")


def test_an_unreachable_model_says_so(tmp_path):
    from mmsent.encoders import EncoderLoadError

    with pytest.raises(EncoderLoadError, match="could not be loaded"):
        create_image_encoder(f"hf-image:{tmp_path / 'nothing-here'}", device="cpu")


@pytest.mark.integration  # a whole run
def test_a_run_on_the_sample_and_serving_with_a_hf_backbone(backbones, tmp_path):
    from mmsent_runkit import run_on_the_sample, serve_one_sample_post
    from mmsent_testkit import build_tiny_bert

    result = run_on_the_sample(tmp_path / "run", f"hf-image:{backbones['resnet']}",
                               str(build_tiny_bert(tmp_path / "bert")))
    assert result.predictions_path.is_file()
    assert serve_one_sample_post(tmp_path / "run")["label"] in ("positive", "neutral", "negative")
