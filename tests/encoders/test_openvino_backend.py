"""The OpenVINO inference path of the image encoders: same features as PyTorch, its own cache key, fresh weights."""

from __future__ import annotations

import pytest
import torch

from mmsent.encoders import create_image_encoder
from mmsent.encoders.openvino_runtime import resolve_backend

pytest.importorskip("openvino")


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ref = create_image_encoder("efficientnet-lite0", grid=2, pretrained=False, device="cpu")
    fast = create_image_encoder("efficientnet-lite0", grid=2, pretrained=False, device="cpu", backend="openvino")
    fast.network.load_state_dict(ref.network.state_dict())
    return ref, fast


def test_fp32_features_match_pytorch(pair, images):
    ref, fast = pair
    a, b = ref.encode(images, batch_size=3), fast.encode(images, batch_size=3)
    assert b.pooled.shape == a.pooled.shape and b.tokens.shape == a.tokens.shape
    assert _cos(a.pooled, b.pooled).min() > 0.9999 and _cos(a.tokens, b.tokens).min() > 0.9999
    assert torch.allclose(a.pooled, b.pooled, rtol=1e-3, atol=1e-3)


def test_bf16_features_stay_close(pair, images):
    ref, _ = pair
    bf16 = create_image_encoder("efficientnet-lite0", grid=2, pretrained=False, device="cpu", backend="openvino-bf16")
    bf16.network.load_state_dict(ref.network.state_dict())
    assert _cos(ref.encode(images).pooled, bf16.encode(images).pooled).min() > 0.995  # the first blocks in fp32


def test_bf16_keeps_the_stem_and_first_blocks_in_fp32(monkeypatch):
    import mmsent.encoders.openvino_runtime as runtime

    precisions = []
    real = runtime.compile_part
    monkeypatch.setattr(runtime, "compile_part", lambda fn, net, shape, precision: precisions.append(
        (shape, precision)) or real(fn, net, shape, precision))
    enc = create_image_encoder("efficientnet-lite0", grid=2, pretrained=False, device="cpu", backend="openvino-bf16")
    enc.encode_pixels(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
    assert precisions == [((3, 224, 224), "f32"), ((24, 56, 56), "bf16")]  # stem + 2 blocks: 24 x 56 x 56
    assert runtime.runtime_id("openvino-bf16", enc.num_blocks) == "openvino-bf16:fp32-stem+2-blocks"
    assert runtime.runtime_id("openvino-bf16", 0) == "openvino-bf16"  # no block split: all of it in bf16
    assert runtime.runtime_id("openvino", enc.num_blocks) == "openvino"


def test_the_backend_is_in_the_cache_key_not_the_fingerprint(pair, images, tmp_path):
    from mmsent.data.records import Example
    from mmsent.features import FeatureCache
    from mmsent.features.extract import extract_image_features

    ref, fast = pair
    assert fast.fingerprint() == ref.fingerprint()  # same weights and preprocessing: fine-tuned folders still match
    examples = [Example(str(i), None, "", "utf-8", p, p) for i, p in enumerate(images)]
    cache = FeatureCache(tmp_path)
    extract_image_features(examples, ref, cache, progress=False)
    extract_image_features(examples, fast, cache, progress=False)
    assert len(cache.entries("image")) == 2  # one entry per runtime


def test_changed_weights_recompile(pair, images):
    ref, fast = pair
    before = fast.encode(images[:2]).pooled
    with torch.no_grad():
        for p in fast.network.parameters():
            p.mul_(1.5)
    fast.mark_weights_changed()  # what fine-tuning calls: the compiled graph holds the old weights
    after = fast.encode(images[:2]).pooled
    ref.network.load_state_dict(fast.network.state_dict())
    assert not torch.allclose(before, after) and _cos(ref.encode(images[:2]).pooled, after).min() > 0.9999


def test_backend_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "openvino" and resolve_backend("auto", cuda) == "torch"
    with pytest.raises(ValueError, match="runs on the CPU only"):
        resolve_backend("openvino", cuda)
    with pytest.raises(ValueError, match="unknown encoder backend 'onnx'"):
        resolve_backend("onnx", cpu)
