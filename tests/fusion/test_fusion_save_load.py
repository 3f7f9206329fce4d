"""Saving and loading: the loaded model is the same model, exactly."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mmsent.config import TrainConfig
from mmsent.fusion import create_fusion_model, list_fusion_models, load_model, save_model
from mmsent.labels import LabelSet

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


def _saved(tmp_path, edit=None):
    """A concat model saved to ``tmp_path / 'm'``, its model.json optionally edited; the folder."""
    save_model(create_fusion_model("concat", 4, 4), tmp_path / "m")
    if edit is not None:
        path = tmp_path / "m" / "model.json"
        description = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(edit(description)), encoding="utf-8")
    return tmp_path / "m"


def test_the_saved_files_carry_format_version_and_labels(tmp_path) -> None:
    from safetensors import safe_open

    folder = _saved(tmp_path)
    description = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    assert (description["format"], description["version"], description["name"]) == ("mmsent-fusion", 2, "concat")
    assert description["id2label"] == {"0": "positive", "1": "neutral", "2": "negative"}
    assert description["label2id"] == {"positive": 0, "neutral": 1, "negative": 2} and description["meta"] == {}
    assert description["modalities"] == ["image", "text"]
    with safe_open(str(folder / "weights.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "mmsent-fusion"}


def test_meta_values_are_stored_as_json_or_refused_by_type(tmp_path) -> None:
    import dataclasses
    from pathlib import Path

    import numpy as np

    @dataclasses.dataclass
    class Point:
        x: int

    model = create_fusion_model("concat", 4, 4)
    meta = {"point": Point(2), "scalar": np.float32(0.5), "array": np.arange(2), "tensor": torch.tensor([1, 2]),
            "path": Path("/runs/a")}
    loaded = load_model(save_model(model, tmp_path / "m", meta=meta)).saved_meta
    assert loaded == {"point": {"x": 2}, "scalar": 0.5, "array": [0, 1], "tensor": [1, 2], "path": "/runs/a"}
    for bad, type_name in ((Point, "type"), ({1, 2}, "set")):
        with pytest.raises(TypeError, match=f"^cannot store {type_name} in model.json$"):
            save_model(model, tmp_path / "n", meta={"bad": bad})


def test_save_names_a_model_built_without_the_registry(tmp_path) -> None:
    from mmsent.fusion.concat import ConcatFusion

    with pytest.raises(TypeError, match="^ConcatFusion records no fusion_name/hparams; build it with "
                                        "create_fusion_model$"):
        save_model(ConcatFusion(4, 4), tmp_path)


@pytest.mark.parametrize("missing", ["model.json", "weights.safetensors"])
def test_a_missing_file_is_named(tmp_path, missing) -> None:
    folder = _saved(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"^{folder / missing} not found; expected a directory written by "
                                                "save_model$"):
        load_model(folder)


@pytest.mark.parametrize("edit", [lambda d: [d], lambda d: {**d, "format": "other"}], ids=["not-an-object", "format"])
def test_a_file_that_is_not_a_model_description_is_named(tmp_path, edit) -> None:
    folder = _saved(tmp_path, edit)
    with pytest.raises(ValueError, match=f"^{folder / 'model.json'} is not an mmsent fusion model description$"):
        load_model(folder)


def test_a_model_keeps_the_class_names_it_was_saved_with(tmp_path) -> None:
    emotions = LabelSet(("angry", "bored", "calm", "fear", "happy", "love", "sad"))
    model = create_fusion_model("gated", 4, 4, num_classes=7)
    save_model(model, tmp_path / "m", labels=emotions)
    loaded = load_model(tmp_path / "m")
    assert loaded.label_set == emotions and loaded.num_classes == 7
    with pytest.raises(ValueError, match=r"predicts 7 classes, but 3 labels were given"):
        save_model(model, tmp_path / "other")


def test_a_version_1_description_reads_its_label_list(tmp_path) -> None:
    def version_1(d: dict) -> dict:
        d = {k: v for k, v in d.items() if k not in ("id2label", "label2id")}
        return {**d, "version": 1, "labels": ["negative", "neutral", "positive"]}

    assert load_model(_saved(tmp_path, version_1)).label_set.names == ("negative", "neutral", "positive")


def test_a_description_whose_labels_disagree_with_its_width_is_refused(tmp_path) -> None:
    folder = _saved(tmp_path, lambda d: {**d, "id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1}})
    with pytest.raises(ValueError, match=r"'hparams.num_classes' is 3 but 'id2label' names 2 classes"):
        load_model(folder)


def test_an_unregistered_name_lists_every_known_one(tmp_path) -> None:
    folder = _saved(tmp_path, lambda d: {**d, "name": "vanished_model"})
    with pytest.raises(ValueError, match=re.escape(f"(known: {', '.join(list_fusion_models())}); put the module")):
        load_model(folder)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_weights_must_match_the_description_key_for_key(tmp_path, change) -> None:
    from safetensors.torch import load_file, save_file

    folder = _saved(tmp_path)
    weights = load_file(str(folder / "weights.safetensors"))
    if change == "missing":
        for name in sorted(weights)[:6]:
            weights.pop(name)
    else:
        weights["stray.weight"] = torch.zeros(1)
    save_file(weights, str(folder / "weights.safetensors"))
    with pytest.raises(ValueError) as info:
        load_model(folder)
    try:  # what torch says, cut to its first 200 characters in the message
        create_fusion_model("concat", 4, 4).load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        said = str(exc)
    assert len(said) > 200 or change == "extra"
    assert str(info.value) == (f"{folder / 'weights.safetensors'}: cannot be loaded into the 'concat' that model.json "
                               f"describes (RuntimeError: {said[:200]}); train the model again")


def test_the_nan_message_names_the_tensor_and_the_fix(tmp_path) -> None:
    model = create_fusion_model("concat", 4, 4)
    name = next(iter(model.state_dict()))
    with torch.no_grad():
        model.state_dict()[name].fill_(float("inf"))
    save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match=re.escape(f"1 tensor(s) hold NaN/infinite values (e.g. {name}); the file is "
                                                   "damaged or training diverged: train the model again")):
        load_model(tmp_path / "m")


def test_a_description_without_meta_loads_with_empty_meta_on_the_asked_device(tmp_path) -> None:
    folder = _saved(tmp_path, lambda d: {k: v for k, v in d.items() if k != "meta"})
    assert load_model(folder).saved_meta == {}
    on_meta = load_model(folder, device="meta")  # a device other than the CPU, without a GPU
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(("edit", "key", "fix"), [
    (_without("id2label"), "'id2label' is missing", "restore the file"),
    (lambda d: {**d, "hparams": {**d["hparams"], "stray": 1}}, "'hparams' has a key 'stray' the 'concat' model does "
     "not take (it takes", "remove the key"),
    (lambda d: {**d, "hparams": {k: v for k, v in d["hparams"].items() if k != "text_dim"}},
     "'hparams' lacks 'text_dim'", "restore the file"),
    (lambda d: {**d, "hparams": {**d["hparams"], "image_dim": "4"}}, "'hparams.image_dim' must be a positive "
     "integer", "restore the file"),
    (_without("name"), "'name' is missing", "restore the file"),
    (lambda d: {**d, "name": ["concat"]}, "'name' must be a string", "restore the file"),
    (lambda d: {**d, "hparams": [4, 4]}, "'hparams' must be an object", "restore the file"),
    (lambda d: {**d, "id2label": "positive"}, "'id2label' is missing or not a mapping", "restore the file"),
    (lambda d: {**d, "meta": []}, "'meta' must be an object", "restore the file"),
], ids=["no-labels", "extra-hparam", "missing-hparam", "text-dim", "no-name", "list-name", "list-hparams",
        "string-labels", "list-meta"])
def test_a_description_missing_or_adding_a_key_names_file_key_and_fix(tmp_path, edit, key, fix) -> None:
    folder = _saved(tmp_path, edit)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'model.json'}: {key}") + f".*; {fix}"):
        load_model(folder)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("hidden_dim", 10**12, "'hparams.hidden_dim' must be an integer from 1 to"),
    ("hidden_dim", -5, "'hparams.hidden_dim' must be an integer from 1 to"),
    ("hidden_dim", 0, "'hparams.hidden_dim' must be an integer from 1 to"),
    ("dropout", float("nan"), "'hparams.dropout' must be a finite number"),
], ids=["huge", "negative", "zero", "nan-dropout"])
def test_hparams_that_are_not_sane_sizes_are_refused_before_building(tmp_path, key, value, words) -> None:
    folder = _saved(tmp_path, lambda d: {**d, "hparams": {**d["hparams"], key: value}})
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'model.json'}: {words}") + ".*; restore the file"):
        load_model(folder)


def test_a_width_the_weights_do_not_have_is_refused_before_allocating(tmp_path) -> None:
    wide = {"hidden_dim": 1 << 20, "image_dim": 1 << 20}
    folder = _saved(tmp_path, lambda d: {**d, "hparams": {**d["hparams"], **wide}})
    with pytest.raises(ValueError, match=r"(?s)weights\.safetensors: cannot be loaded into the 'concat' that "
                                         r"model\.json describes \(RuntimeError: .*size mismatch"):
        load_model(folder)  # built for real, 1<<20 x 1<<20 floats would be 4 TiB


def test_a_deeply_nested_model_description_is_a_named_error(tmp_path) -> None:
    folder = _saved(tmp_path)
    (folder / "model.json").write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match=r"model\.json: not readable JSON \(nested too deeply\); train the model"):
        load_model(folder)
