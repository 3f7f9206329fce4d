"""Building models by name."""

from __future__ import annotations

import pytest

from mmsent.config import TrainConfig
from mmsent.fusion import GatedFusion, SingleStreamFusion, create_fusion_model, list_fusion_models


def test_lists_the_models() -> None:
    assert {"concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"} <= set(list_fusion_models())


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"concat.*dual_stream"):
        create_fusion_model("transformer", 8, 8)


def test_config_supplies_sizes_and_gate() -> None:
    cfg = TrainConfig(hidden_dim=32, num_layers=2, num_heads=8, gate_from="text", dropout=0.2)
    gated = create_fusion_model("gated", 8, 6, cfg)
    assert isinstance(gated, GatedFusion) and gated.gate_from == "text" and gated.gate.out_features == 32
    single = create_fusion_model("Single-Stream", 8, 6, cfg)
    assert isinstance(single, SingleStreamFusion) and len(single.encoder.layers) == 2
    assert single.encoder.layers[0].self_attn.num_heads == 8


def test_overrides_win_and_are_checked() -> None:
    cfg = TrainConfig(gate_from="image")
    assert create_fusion_model("gated_text", 8, 6, cfg).gate_from == "text"
    assert create_fusion_model("single_stream", 8, 6, cfg, pool="cls").pool == "cls"
    with pytest.raises(TypeError, match="takes no argument 'pool'"):
        create_fusion_model("concat", 8, 6, pool="cls")
    with pytest.raises(ValueError, match="fixes gate_from"):
        create_fusion_model("gated_text", 8, 6, gate_from="image")
