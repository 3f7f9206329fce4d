"""Saving and loading: the loaded model is the same model, exactly."""

from __future__ import annotations

import json

import pytest
import torch

from mmsent.config import TrainConfig
from mmsent.fusion import create_fusion_model, list_fusion_models, load_model, save_model

from .helpers import IMAGE_DIM, TEXT_DIM, make_inputs

CFG = TrainConfig(hidden_dim=16, num_heads=2, num_layers=1, gate_from="text", dropout=0.1)
OVERRIDES = {"single_stream": {"pool": "cls", "max_text_tokens": 12}, "dual_stream": {"combine": "product"}}


@pytest.mark.parametrize("name", list_fusion_models())
def test_round_trip_is_exact(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = create_fusion_model(name, IMAGE_DIM, TEXT_DIM, CFG, **OVERRIDES.get(name, {})).eval()
    save_model(model, tmp_path / "m", meta={"seed": 3, "config": CFG})
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.fusion_name == model.fusion_name == name
    assert loaded.hparams == model.hparams
    assert loaded.saved_meta["seed"] == 3 and loaded.saved_meta["config"]["hidden_dim"] == 16
    assert loaded.explanation_info() == model.explanation_info()
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    inputs = make_inputs([10, 3, 0, 6], [9, 4, 9, 1])
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_loading_a_model_no_module_registers_says_so(tmp_path) -> None:
    save_model(create_fusion_model("concat", 4, 4), tmp_path)
    description = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    description["name"] = "vanished_model"
    (tmp_path / "model.json").write_text(json.dumps(description), encoding="utf-8")
    with pytest.raises(ValueError, match="'vanished_model', which no module in the mmsent.fusion package registers"):
        load_model(tmp_path)


@pytest.mark.parametrize("name,keys", [
    ("single_stream", {"cls", "modality", "image_embed.position", "text_embed.proj.weight", "image_embed.norm.bias",
                       "encoder.layers.1.self_attn.in_proj_weight", "norm.weight", "classifier.bias"}),
    ("dual_stream", {"image_embed.position", "text_embed.proj.weight", "image_encoder.layers.1.linear2.bias",
                     "co_layers.1.image_from_text.attn.in_proj_weight", "co_layers.0.text_from_image.ff.3.bias",
                     "co_layers.0.text_from_image.norm_kv.weight", "text_norm.weight", "classifier.weight"}),
])
def test_parameter_names_of_earlier_saved_models_are_kept(name: str, keys: set[str]) -> None:
    """Saved weights load with strict keys, so these names must not change."""
    assert keys <= set(create_fusion_model(name, IMAGE_DIM, TEXT_DIM, CFG, num_layers=2).state_dict())


@pytest.mark.parametrize(("damage", "file"), [
    (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:100]),
     "weights.safetensors"),
    (lambda d: (d / "model.json").write_text((d / "model.json").read_text()[:40]), "model.json"),
])
def test_a_damaged_saved_model_is_named_with_the_fix(tmp_path, damage, file):
    save_model(create_fusion_model("concat", 4, 4), tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(ValueError, match=f"{file}: .*train the model again"):
        load_model(tmp_path / "m")


def test_nan_weights_are_refused_at_load(tmp_path):
    model = create_fusion_model("concat", 4, 4)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match=r"weights.safetensors: 1 tensor\(s\) hold NaN/infinite values"):
        load_model(tmp_path / "m")
