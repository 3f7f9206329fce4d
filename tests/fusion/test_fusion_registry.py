"""Building models by name, the declared model interface, and registering new models."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import fields
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mmsent.config import TrainConfig
from mmsent.fusion import (
    FusionModel,
    GatedFusion,
    SingleStreamFusion,
    create_fusion_model,
    list_fusion_models,
    register_fusion_model,
    registry,
    save_model,
)

from .helpers import dropped_in_fusion_module, make_inputs, tiny_model

BUILT_INS = ["concat", "gated", "gated_image", "gated_text", "single_stream", "dual_stream", "text_only",
             "image_only"]
POOLED_ONLY = {"concat", "gated", "gated_image", "gated_text", "text_only", "image_only"}


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by the test vanish afterwards."""
    registry.list_fusion_models()  # discover first, so the copy holds everything
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


class Tiny(FusionModel):
    uses_tokens = False

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 4, dropout: float = 0.0,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.net = nn.Linear(image_dim + text_dim, 3)

    def forward(self, inputs):
        return self.net(torch.cat([inputs.image_pooled, inputs.text_pooled], -1)) * self.scale


def test_lists_the_built_ins_first_in_a_stable_order() -> None:
    names = list_fusion_models()
    assert set(names[:len(BUILT_INS)]) == set(BUILT_INS)
    assert list_fusion_models() == names
    fresh = subprocess.run([sys.executable, "-c", "import mmsent.fusion as f; print(*f.list_fusion_models())"],
                           check=True, capture_output=True, text=True)
    assert fresh.stdout.split() == names


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown fusion model 'transformer'") as info:
        create_fusion_model("transformer", 8, 8)
    assert str(info.value).endswith("; known: " + ", ".join(list_fusion_models()))


def test_config_supplies_sizes_and_gate() -> None:
    cfg = TrainConfig(hidden_dim=32, num_layers=2, num_heads=8, gate_from="text", dropout=0.2)
    gated = create_fusion_model("gated", 8, 6, cfg)
    assert isinstance(gated, GatedFusion) and gated.gate_from == "text" and gated.gate.out_features == 32
    single = create_fusion_model("Single-Stream", 8, 6, cfg)
    assert isinstance(single, SingleStreamFusion) and len(single.encoder.layers) == 2
    assert single.encoder.layers[0].self_attn.num_heads == 8
    assert single.fusion_name == "single_stream" and single.hparams["dropout"] == 0.2


def test_config_can_be_a_mapping_or_any_object_and_may_lack_fields() -> None:
    from_dict = create_fusion_model("gated", 8, 6, {"hidden_dim": 12, "gate_from": "text"})
    from_obj = create_fusion_model("gated", 8, 6, SimpleNamespace(hidden_dim=12, gate_from="text"))
    for model in (from_dict, from_obj):
        assert model.hparams == {"image_dim": 8, "text_dim": 6, "hidden_dim": 12, "dropout": 0.3, "gate_from": "text",
                                 "num_classes": 3}


def test_overrides_win_and_are_checked() -> None:
    cfg = TrainConfig(gate_from="image")
    assert create_fusion_model("gated_text", 8, 6, cfg).gate_from == "text"
    assert create_fusion_model("single_stream", 8, 6, cfg, pool="cls").pool == "cls"
    with pytest.raises(TypeError, match="takes no argument 'pool'; it takes: hidden_dim, dropout"):
        create_fusion_model("concat", 8, 6, pool="cls")
    with pytest.raises(ValueError, match="fixes gate_from"):
        create_fusion_model("gated_text", 8, 6, gate_from="image")


def test_gated_built_with_its_defaults() -> None:
    model = create_fusion_model("gated", 8, 6)
    assert isinstance(model, GatedFusion) and model.fusion_name == "gated"
    assert model.hparams == {"image_dim": 8, "text_dim": 6, "hidden_dim": 256, "dropout": 0.3, "gate_from": "image",
                             "num_classes": 3}
    assert model.gate.in_features == 8 and model.gate.out_features == 256 and model.value.in_features == 6
    assert model.explanation_info() == {"gate_from": "image"}
    inputs = make_inputs([2, 3])
    inputs.image_pooled, inputs.text_pooled = torch.randn(2, 8), torch.randn(2, 6)
    assert model.eval()(inputs).shape == (2, 3) and model.last_explanation["gate"].shape == (2, 256)
    direct = GatedFusion(8, 6)  # the class itself has the same defaults
    assert direct.gate_from == "image" and direct.gate.out_features == 256


@pytest.mark.parametrize("how", ["override", "config", "class"])
def test_gate_from_audio_is_refused(how: str) -> None:
    with pytest.raises(ValueError, match="gate_from must be 'image' or 'text', got 'audio'"):
        if how == "override":
            create_fusion_model("gated", 8, 6, gate_from="audio")
        elif how == "config":
            create_fusion_model("gated", 8, 6, {"gate_from": "audio"})
        else:
            GatedFusion(8, 6, gate_from="audio")


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_model_declares_the_interface_its_callers_use(name: str) -> None:
    model = tiny_model(name)
    assert model.fusion_name == name
    assert model.uses_tokens is (name not in POOLED_ONLY)
    assert list(model.hparams)[:2] == ["image_dim", "text_dim"]
    assert set(model.hparams) == {"image_dim", "text_dim", *registry._REGISTRY[name].arguments}
    assert isinstance(model.explanation_info(), dict)
    train_fields = {f.name for f in fields(TrainConfig)}
    assert set(type(model).config_fields) <= train_fields, "a built-in reads a field TrainConfig lacks"


def test_explanation_info_names_the_gating_modality() -> None:
    assert tiny_model("gated_text").explanation_info() == {"gate_from": "text"}
    assert tiny_model("concat").explanation_info() == {}


def test_save_refuses_a_model_not_built_by_name(tmp_path) -> None:
    with pytest.raises(TypeError, match="create_fusion_model"):
        save_model(GatedFusion(8, 6), tmp_path)


def test_registering_a_model(scratch_registry) -> None:
    register_fusion_model("tiny")(Tiny)
    register_fusion_model("Tiny-Doubled", scale=2.0)(Tiny)
    assert list_fusion_models()[-2:] == ["tiny", "tiny_doubled"]
    model = create_fusion_model("tiny_doubled", 8, 6, TrainConfig(hidden_dim=7))
    assert isinstance(model, Tiny) and model.fusion_name == "tiny_doubled"
    assert model.hparams == {"image_dim": 8, "text_dim": 6, "hidden_dim": 7, "dropout": 0.3, "scale": 2.0}
    register_fusion_model("tiny")(Tiny)  # the same class again (say, a reloaded module) is fine


def test_registration_refuses_what_could_not_be_built_or_saved(scratch_registry) -> None:
    with pytest.raises(ValueError, match="lowercase letters"):
        register_fusion_model("my model!")
    with pytest.raises(TypeError, match="must be a FusionModel"):
        register_fusion_model("linear")(nn.Linear)

    class Starred(Tiny):
        def __init__(self, image_dim: int, text_dim: int, **kwargs) -> None:
            super().__init__(image_dim, text_dim)

    with pytest.raises(TypeError, match=r"no \*args/\*\*kwargs"):
        register_fusion_model("starred")(Starred)

    class StarredComplete(Tiny):  # every needed name is there: only the *args is wrong
        def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 4, dropout: float = 0.0, *args) -> None:
            super().__init__(image_dim, text_dim)

    with pytest.raises(TypeError, match=r"StarredComplete must be a FusionModel whose __init__ takes \(image_dim, "
                                        r"text_dim, <named arguments>\), with hidden_dim, dropout among them and no "
                                        r"\*args/\*\*kwargs; it takes \(image_dim"):
        register_fusion_model("starred_complete")(StarredComplete)

    class Swapped(Tiny):
        def __init__(self, text_dim: int, image_dim: int) -> None:
            super().__init__(image_dim, text_dim)

    with pytest.raises(TypeError, match=r"\(image_dim, text_dim"):
        register_fusion_model("swapped")(Swapped)

    class NoLayers(Tiny):
        config_fields = ("hidden_dim", "num_layers")

    with pytest.raises(TypeError, match="num_layers"):
        register_fusion_model("no_layers")(NoLayers)
    with pytest.raises(TypeError, match="gate_from"):
        register_fusion_model("fixed", gate_from="text")(Tiny)
    with pytest.raises(ValueError, match="'concat' is already registered by mmsent.fusion.concat.ConcatFusion"):
        register_fusion_model("concat")(Tiny)
    assert "starred" not in list_fusion_models() and "no_layers" not in list_fusion_models()


def test_a_module_that_fails_to_import_is_named(tmp_path) -> None:
    broken = "from mmsent.fusion.registry import register_fusion_model\nraise RuntimeError('half-written')\n"
    before = list_fusion_models()
    with dropped_in_fusion_module(tmp_path, "broken_model", broken) as path:
        for _ in range(2):  # not skipped on the next query either
            with pytest.raises(ImportError, match="broken_model.py failed to import: RuntimeError: half-written") as info:
                list_fusion_models()
            assert str(path) in str(info.value)
            assert (info.value.name, info.value.path) == ("mmsent.fusion.broken_model", str(path))
        with pytest.raises(ImportError, match="broken_model.py"):
            create_fusion_model("concat", 8, 6)
    assert list_fusion_models() == before


def test_the_registry_does_not_import_the_config() -> None:
    code = ("import sys, mmsent.fusion.registry as r; r.list_fusion_models(); "
            "r.create_fusion_model('gated', 4, 4, {'hidden_dim': 8}); assert 'mmsent.config' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


TOKEN_DEFAULTS = {"num_layers": 1, "num_heads": 4, "attn_dropout": 0.1, "max_image_tokens": 144,
                  "max_text_tokens": 256}
DEFAULTS = {
    "concat": {}, "text_only": {}, "image_only": {},
    "gated": {"gate_from": "image"}, "gated_image": {"gate_from": "image"}, "gated_text": {"gate_from": "text"},
    "single_stream": {**TOKEN_DEFAULTS, "pool": "cls_mean"}, "dual_stream": {**TOKEN_DEFAULTS, "combine": "concat"},
}


@pytest.mark.parametrize("name", BUILT_INS)
def test_each_built_in_has_its_documented_defaults_and_uses_them(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's nested-tensor warning for a pre-LN encoder
        model = create_fusion_model(name, 8, 6)
    assert model.hparams == {"image_dim": 8, "text_dim": 6, "hidden_dim": 256, "dropout": 0.3, **DEFAULTS[name],
                             "num_classes": 3}
    dropouts = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert 0.3 in dropouts and dropouts <= {0.3, 0.1}
    widths = {m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert 256 in widths
    inputs = make_inputs([2, 3])
    inputs.image_pooled, inputs.text_pooled = torch.randn(2, 8), torch.randn(2, 6)
    inputs.image_tokens, inputs.text_tokens = torch.randn(2, 9, 8), torch.randn(2, 10, 6)
    assert model.eval()(inputs).shape == (2, 3)
    # The class on its own has the same defaults (what create_fusion_model records is what it builds).
    plain = create_fusion_model({"gated_image": "gated", "gated_text": "gated"}.get(name, name), 8, 6)
    direct = type(model)(8, 6)
    assert {k: v.shape for k, v in direct.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert [m.p for m in direct.modules() if isinstance(m, torch.nn.Dropout)] == [
        m.p for m in plain.modules() if isinstance(m, torch.nn.Dropout)]
    assert direct.explanation_info() == plain.explanation_info()
    assert getattr(direct, "combine", None) == getattr(plain, "combine", None)
    assert getattr(direct, "pool", None) == getattr(plain, "pool", None)


def test_keyword_only_arguments_reach_the_model(scratch_registry) -> None:
    class KeywordOnly(Tiny):
        def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 4, dropout: float = 0.0, *,
                     scale: float = 1.0) -> None:
            super().__init__(image_dim, text_dim, scale=scale)

    register_fusion_model("keyword_only")(KeywordOnly)
    model = create_fusion_model("keyword_only", 8, 6, scale=3.0)
    assert model.scale == 3.0 and model.hparams["scale"] == 3.0
