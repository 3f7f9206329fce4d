"""Every fusion model: shapes, gradients, batch independence, padding invariance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmsent.fusion import list_fusion_models

from .helpers import IMAGE_TOKENS, TEXT_TOKENS, cat, make_inputs, rows, tiny_model

MODELS = list_fusion_models()
TEXT_LENGTHS = [10, 3, 7, 0, 1, 5]  # 0: a text with no real token must not give NaN
IMAGE_LENGTHS = [9, 9, 4, 9, 9, 1]


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(name)
    for mode in (model.train, model.eval):
        mode()
        logits = model(make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS))
        assert logits.shape == (len(TEXT_LENGTHS), 3)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(name).train()
    logits = model(make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS))
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"no gradient reaches {dead}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_batch_independence(name: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    batch = make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS, seed=1)
    others = make_inputs([2, 10, 6, 9], [9, 3, 9, 9], seed=2)
    with torch.no_grad():
        together = model(batch)
        for i in range(len(TEXT_LENGTHS)):
            alone = model(rows(batch, [i]))
            alone_trimmed = model(rows(batch, [i], trim=True))
            among_others = model(cat(rows(others, [0, 1]), cat(rows(batch, [i]), rows(others, [2, 3]))))[2]
            torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(alone_trimmed[0], together[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(among_others, together[i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_padding_values_are_ignored(name: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    inputs = make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS)
    with torch.no_grad():
        before = model(inputs)
        inputs.text_tokens[~inputs.text_mask] = 1e4
        inputs.image_tokens[~inputs.image_mask] = float("nan")
        after = model(inputs)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["single_stream", "dual_stream"])
def test_token_models_reject_sequences_longer_than_their_positions(name: str) -> None:
    model = tiny_model(name, max_text_tokens=TEXT_TOKENS - 1)
    with pytest.raises(ValueError, match=f"^text input has {TEXT_TOKENS} tokens but the model was built with "
                                         f"max_text_tokens={TEXT_TOKENS - 1}"):
        model(make_inputs([3, 4]))
    model = tiny_model(name, max_image_tokens=IMAGE_TOKENS - 1)
    with pytest.raises(ValueError, match=f"^image input has {IMAGE_TOKENS} tokens but the model was built with "
                                         f"max_image_tokens={IMAGE_TOKENS - 1}"):
        model(make_inputs([3, 4]))
    exact = tiny_model(name, max_text_tokens=TEXT_TOKENS, max_image_tokens=IMAGE_TOKENS)
    assert exact(make_inputs([3, 4])).shape == (2, 3)  # as many tokens as positions is fine


@pytest.mark.parametrize(("name", "argument"), [("single_stream", "pool"), ("dual_stream", "combine")])
def test_token_models_refuse_an_unknown_choice(name: str, argument: str) -> None:
    allowed = {"pool": "'cls' or 'cls_mean'", "combine": "'concat' or 'product'"}[argument]
    with pytest.raises(ValueError, match=f"^{argument} must be {allowed}, got 'max'$"):
        tiny_model(name, **{argument: "max"})


def test_a_fresh_model_has_an_empty_explanation() -> None:
    model = tiny_model("concat")
    assert model.last_explanation == {}
    model(make_inputs([3, 4]))
    assert model.last_explanation == {}


@pytest.mark.parametrize("name", MODELS)
def test_modalities_attribute(name: str) -> None:
    expected = {"text_only": ("text",), "image_only": ("image",)}.get(name, ("image", "text"))
    assert tiny_model(name).modalities == expected


def test_unimodal_models_ignore_the_other_modality() -> None:
    inputs = make_inputs([3, 4])
    for name, other in (("text_only", "image_pooled"), ("image_only", "text_pooled")):
        model = tiny_model(name).eval()
        with torch.no_grad():
            before = model(inputs)
            changed = make_inputs([3, 4])
            setattr(changed, other, getattr(changed, other) + 5)
            torch.testing.assert_close(model(changed), before)


def test_inputs_from_features_are_the_chosen_rows_as_float32_and_bool() -> None:
    from mmsent.features.featureset import FeatureSet, ModalityFeatures
    from mmsent.fusion import FusionInputs

    g = torch.Generator().manual_seed(0)

    def modality(d: int) -> ModalityFeatures:
        return ModalityFeatures(torch.randn(4, d, generator=g, dtype=torch.float64),
                                torch.randn(4, 3, d, generator=g).half(), torch.tensor([[1, 1, 0]] * 4, dtype=torch.uint8))

    feats = FeatureSet(["a", "b", "c", "d"], modality(5), modality(6))
    on_meta = FusionInputs.from_features(feats, device="meta")  # another device, without a GPU
    assert {getattr(on_meta, f).device.type for f in vars(on_meta)} == {"meta"}
    every = FusionInputs.from_features(feats)
    some = FusionInputs.from_features(feats, torch.tensor([2, 0]), device="cpu")
    assert len(every) == 4 and len(some) == 2
    for inputs, idx in ((every, [0, 1, 2, 3]), (some, [2, 0])):
        for side, source in (("image", feats.image), ("text", feats.text)):
            pooled, tokens, mask = (getattr(inputs, f"{side}_{part}") for part in ("pooled", "tokens", "mask"))
            assert (pooled.dtype, tokens.dtype, mask.dtype) == (torch.float32, torch.float32, torch.bool)
            assert torch.equal(pooled, source.pooled[idx].float()) and torch.equal(tokens, source.tokens[idx].float())
            assert torch.equal(mask, source.mask[idx].bool())
