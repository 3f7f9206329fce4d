"""timm: any timm image model as an image encoder, with timm's tiny ``test_*`` models (random weights).

timm imports torchvision, so these run where ``mmsent[timm]`` is installed (CI: ``make test-timm``)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import save_file

from mmsent.encoders import create_image_encoder

HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm not installed (pip install 'mmsent[timm]'; make test-timm)")


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed")
def test_without_timm_the_error_says_what_to_install():
    with pytest.raises(ImportError, match=r"mmsent\[timm\]"):
        create_image_encoder("timm:test_resnet", pretrained=False)


@needs_timm
@pytest.mark.parametrize("model, dim, side", [("test_resnet", 96, 5), ("test_vit", 64, 10), ("test_mambaout", 64, 5)])
def test_each_family_gives_a_pooled_vector_and_grid_tokens(images, model, dim, side):
    """A CNN map, ViT patch tokens after the class token, and a channels-last map all become (dim, h, w) maps."""
    enc = create_image_encoder(f"timm:{model}", grid=2, pretrained=False, device="cpu", backend="torch")
    assert (enc.dim, enc.map_side) == (dim, side)
    f = enc.encode(images[:3], batch_size=2)
    assert f.pooled.shape == (3, dim) and f.tokens.shape == (3, 4, dim) and torch.isfinite(f.pooled).all()
    x = enc.normalize(torch.from_numpy(enc.crop(enc.open(images[0]))[None]))
    with torch.no_grad():
        fmap = enc.forward_features(x)
    assert torch.allclose(fmap.mean(dim=(2, 3))[0], f.pooled[0], atol=1e-4)


@needs_timm
def test_preprocessing_comes_from_the_models_pretrained_cfg():
    enc = create_image_encoder("timm:test_resnet", grid=1, pretrained=False, device="cpu")
    cfg = enc.model.pretrained_cfg
    assert enc.preprocess.input_size == cfg["input_size"][-1] == 160
    assert enc.preprocess.resize_size == round(160 / cfg["crop_pct"])  # 168 at crop_pct 0.95
    assert enc.preprocess.mean == pytest.approx(tuple(255 * m for m in cfg["mean"]))


@needs_timm
def test_a_local_weights_file_loads_and_keys_the_cache(images, tmp_path):
    torch.manual_seed(0)
    first = create_image_encoder("timm:test_resnet", grid=2, pretrained=False, device="cpu", backend="torch")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in first.network.state_dict().items()}, str(path))
    again = create_image_encoder(f"timm:test_resnet:{path}", grid=2, device="cpu", backend="torch")
    assert torch.allclose(again.encode(images[:2]).pooled, first.encode(images[:2]).pooled, atol=1e-5)
    assert "weights=sha256:" in again.fingerprint() and "timm=" in again.fingerprint()
    torch.manual_seed(1)
    other = create_image_encoder("timm:test_resnet", grid=2, pretrained=False, device="cpu")
    assert other.fingerprint() != first.fingerprint()  # different weights, different cache key
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_image_encoder(f"timm:test_resnet:{tmp_path / 'missing.safetensors'}", device="cpu")


@needs_timm
def test_the_original_designs_resnet50_loads_torchvision_weights(images, tmp_path):
    """``timm:resnet50.tv_in1k:/path.pth`` takes a torchvision state dict (the seed's checkpoint format)."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "r50.pth"
    torch.save(reference.state_dict(), path)
    enc = create_image_encoder(f"timm:resnet50.tv_in1k:{path}", grid=3, device="cpu", backend="torch")
    assert enc.name == f"timm:resnet50.tv_in1k:{path}" and enc.dim == 2048 and enc.map_side == 7
    x = enc.normalize(torch.from_numpy(enc.crop(enc.open(images[0]))[None])).contiguous()
    with torch.no_grad():
        r = reference
        expected = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
        assert torch.allclose(enc.forward_features(x), expected, atol=1e-4)


def test_the_removed_torchvision_names_say_where_to_go():
    from mmsent.encoders import UnknownEncoderError

    with pytest.raises(UnknownEncoderError, match=r"use timm:resnet50\.tv_in1k"):
        create_image_encoder("resnet50", pretrained=False)


@needs_timm
def test_an_unknown_model_says_so():
    from mmsent.encoders import EncoderLoadError

    with pytest.raises(EncoderLoadError, match="could not be built"):
        create_image_encoder("timm:no_such_net_xyz", pretrained=False, device="cpu")


@needs_timm
def test_a_run_on_the_sample_with_a_timm_backbone_then_serving(tmp_path, tiny_bert):
    from mmsent_runkit import run_on_the_sample, serve_one_sample_post

    torch.manual_seed(0)
    enc = create_image_encoder("timm:test_vit", pretrained=False, device="cpu")
    weights = tmp_path / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in enc.network.state_dict().items()}, str(weights))
    result = run_on_the_sample(tmp_path / "run", f"timm:test_vit:{weights}", str(tiny_bert))
    assert result.predictions_path.is_file()
    assert serve_one_sample_post(tmp_path / "run")["label"] in ("positive", "neutral", "negative")


@needs_timm
def test_fine_tuning_takes_the_whole_network_and_refuses_a_block_split(images):
    """timm models have no trunk/top split here: mode=full trains every layer, mode=last_n says to use full."""
    from mmsent.finetune.image import ImageAdapter

    enc = create_image_encoder("timm:test_resnet", grid=2, pretrained=False, device="cpu", backend="torch")
    with pytest.raises(ValueError, match="mode=full"):
        ImageAdapter(enc, mode="last_n", last_n=1)
    adapter = ImageAdapter(enc, mode="full")
    assert adapter.trainable_modules() == {"": enc.network}
    rows = adapter.prepare(images[:2])
    adapter.train()
    adapter.forward(rows).sum().backward()
    assert all(p.grad is not None for p in enc.network.parameters() if p.requires_grad)
