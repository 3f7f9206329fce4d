"""Config: defaults, YAML files, dotted overrides, and clear errors for bad keys or values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmsent.config import ConfigError, RunConfig, load_config


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = RunConfig()
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_file_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"training": {"lr": 0.01, "epochs": 5}}), encoding="utf-8")
    cfg = load_config(tmp_path / "c.yaml", ["training.lr=5e-4", "compare.seeds=1,2", "cleaning.lowercase=true",
                                            "compare.models=concat,gated", "data.root=/x"])
    assert cfg.training.lr == 5e-4 and cfg.training.epochs == 5
    assert cfg.compare.seeds == [1, 2] and cfg.compare.models == ["concat", "gated"]
    assert cfg.cleaning.lowercase is True and cfg.data.root == "/x"


def test_single_item_and_bracketed_lists():
    assert load_config(overrides=["compare.seeds=7"]).compare.seeds == [7]
    assert load_config(overrides=["compare.seeds=[3, 4]"]).compare.seeds == [3, 4]
    assert load_config(overrides=["compare.models=concat"]).compare.models == ["concat"]


def test_shipped_default_config_matches_the_code_defaults():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert load_config(path) == RunConfig()


@pytest.mark.parametrize(("override", "message"), [
    ("training.lrr=1", "unknown config key 'training.lrr'"),
    ("training.epochs=many", "expected an integer"),
    ("cleaning.lowercase=maybe", "expected true/false"),
    ("training", "must look like section.key=value"),
    ("training=3", "is a section"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_unreadable_file_is_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_text("training: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "c.yaml")


def test_model_overrides_merge_per_model():
    cfg = load_config(overrides=["compare.model_overrides.dual_stream.hidden_dim=64",
                                 "compare.model_overrides.concat.dropout=0.5"])
    assert cfg.compare.model_overrides["dual_stream"] == {"hidden_dim": 64, "patience": 4}
    assert cfg.compare.model_overrides["concat"] == {"dropout": 0.5}


@pytest.mark.parametrize("name", ["default.yaml", "finetune.yaml", "joint.yaml"])
def test_shipped_presets_load_without_unknown_keys(name):
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    if name == "joint.yaml":  # joint training refuses cross-fitting and frozen encoders: the preset must not ask
        assert cfg.finetune.enabled and cfg.finetune.joint.enabled
        assert cfg.finetune.image.crossfit_folds == cfg.finetune.text.crossfit_folds == 0
        assert "frozen" not in (cfg.finetune.image.mode, cfg.finetune.text.mode)
