"""Model-specific behaviour: the gated model's gate and the dual-stream attention map."""

from __future__ import annotations

import pytest
import torch

from .helpers import IMAGE_DIM, IMAGE_TOKENS, TEXT_DIM, TEXT_TOKENS, make_inputs, tiny_model


@pytest.mark.parametrize("gate_from,gate_dim", [("image", IMAGE_DIM), ("text", TEXT_DIM)])
def test_gate_comes_from_the_chosen_modality(gate_from: str, gate_dim: int) -> None:
    torch.manual_seed(0)
    model = tiny_model("gated", gate_from=gate_from).eval()
    assert model.gate.in_features == gate_dim
    gating, other = ("image_pooled", "text_pooled") if gate_from == "image" else ("text_pooled", "image_pooled")
    inputs = make_inputs([3, 5, 2, 8])
    with torch.no_grad():
        logits = model(inputs)
        gate = model.last_explanation["gate"]
        assert gate.shape == (4, 16) and bool(((gate > 0) & (gate < 1)).all())

        setattr(inputs, other, getattr(inputs, other) + torch.randn_like(getattr(inputs, other)))
        logits_other = model(inputs)
        torch.testing.assert_close(model.last_explanation["gate"], gate)  # the other modality cannot move the gate
        assert not torch.allclose(logits_other, logits)

        # A zeroed gating input normalises to the LayerNorm bias: every sample gets the same gate.
        setattr(inputs, gating, torch.zeros_like(getattr(inputs, gating)))
        model(inputs)
        zero_gate = model.last_explanation["gate"]
        torch.testing.assert_close(zero_gate, zero_gate[:1].expand_as(zero_gate))
        assert not torch.allclose(zero_gate, gate)


def test_gated_names_pick_the_gating_modality() -> None:
    assert tiny_model("gated_text").gate_from == "text"
    assert tiny_model("gated_image").gate_from == "image"


def test_dual_stream_attention_map() -> None:
    torch.manual_seed(0)
    model = tiny_model("dual_stream").eval()
    text_lengths, image_lengths = [10, 3, 7, 1], [9, 4, 9, 2]
    inputs = make_inputs(text_lengths, image_lengths)
    with torch.no_grad():
        model(inputs)
    attn = model.last_explanation["text_to_image_attention"]
    assert attn.shape == (4, TEXT_TOKENS, IMAGE_TOKENS)
    for b, (lt, li) in enumerate(zip(text_lengths, image_lengths, strict=True)):
        torch.testing.assert_close(attn[b, :lt, :li].sum(-1), torch.ones(lt))
        assert bool((attn[b, :, li:] == 0).all()), "padded image cells got attention"
        assert bool((attn[b, lt:] == 0).all()), "padded text positions have attention rows"


def test_dual_stream_product_combine() -> None:
    model = tiny_model("dual_stream", combine="product").eval()
    with torch.no_grad():
        assert model(make_inputs([3, 4])).shape == (2, 3)


@pytest.mark.parametrize(("text_tokens", "image_tokens"), [(0, 9), (10, 0)])
def test_dual_stream_attention_keeps_the_inputs_shape_when_a_side_has_no_token(text_tokens, image_tokens) -> None:
    model = tiny_model("dual_stream").eval()
    inputs = make_inputs([min(text_tokens, 3)] * 2, [min(image_tokens, 4)] * 2, text_tokens=text_tokens,
                         image_tokens=image_tokens)
    with torch.no_grad():
        assert torch.isfinite(model(inputs)).all()
    assert model.last_explanation["text_to_image_attention"].shape == (2, text_tokens, image_tokens)


def test_dual_stream_reads_an_empty_text_as_one_zero_token() -> None:
    """No real token (none at all, or only padding) gives the same answer as a single zero token."""
    torch.manual_seed(0)
    model = tiny_model("dual_stream").eval()
    none = make_inputs([0, 0], [4, 9], text_tokens=0, seed=5)
    padded = make_inputs([0, 0], [4, 9], text_tokens=3, seed=5)  # three padding tokens holding random values
    padded.image_pooled, padded.image_tokens, padded.text_pooled = none.image_pooled, none.image_tokens, none.text_pooled
    zero = make_inputs([1, 1], [4, 9], text_tokens=1, seed=5)
    zero.image_pooled, zero.image_tokens, zero.text_pooled = none.image_pooled, none.image_tokens, none.text_pooled
    zero.text_tokens = torch.zeros_like(zero.text_tokens)
    with torch.no_grad():
        want = model(zero)
        torch.testing.assert_close(model(none), want)
        torch.testing.assert_close(model(padded), want)


def test_ensure_nonempty_gives_a_token_to_every_row_and_zeroes_revived_padding():
    from mmsent.fusion.dual_stream import ensure_nonempty

    tokens, mask = ensure_nonempty(torch.ones(3, 0, 4), torch.zeros(3, 0, dtype=torch.bool))
    assert tokens.shape == (3, 1, 4) and mask.shape == (3, 1) and mask.all() and (tokens == 0).all()
    padded = torch.full((2, 3, 4), 5.0)
    tokens, mask = ensure_nonempty(padded, torch.tensor([[True, False, False], [False, False, False]]))
    assert mask.tolist() == [[True, False, False], [True, False, False]]
    assert (tokens[1, 0] == 0).all() and (tokens[0, 0] == 5).all() and (tokens[1, 1:] == 5).all()


def test_the_transformer_encoder_uses_the_given_dropout():
    from mmsent.fusion.single_stream import transformer_encoder

    for p in (0.0, 0.3):
        layer = transformer_encoder(8, 2, 1, dropout=p).layers[0]
        assert layer.dropout.p == layer.dropout1.p == layer.dropout2.p == p
