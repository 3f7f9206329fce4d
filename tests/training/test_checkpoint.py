"""Saving and loading trained models: safetensors + JSON, rebuilt through the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmsent.config import TrainConfig
from mmsent.fusion import create_fusion_model, list_fusion_models
from mmsent.training import load_model, predict_proba, save_model, set_seed

from .helpers import IMAGE_DIM, TEXT_DIM, make_task


@pytest.mark.parametrize("name", list_fusion_models())
def test_roundtrip_gives_identical_predictions(name: str, tmp_path) -> None:
    set_seed(0)
    cfg = TrainConfig(hidden_dim=16, num_heads=2, num_layers=1, gate_from="text")
    model = create_fusion_model(name, IMAGE_DIM, TEXT_DIM, cfg).eval()
    feats, _ = make_task(20, seed=4)
    save_model(model, tmp_path / "m", meta={"config": cfg, "seed": np.int64(0)})
    assert not list((tmp_path / "m").glob("*.pt")) and not list((tmp_path / "m").glob("*.pkl"))
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.hparams == model.hparams
    assert loaded.saved_meta["config"]["hidden_dim"] == 16
    np.testing.assert_array_equal(predict_proba(loaded, feats), predict_proba(model, feats))


def test_refuses_a_different_label_order(tmp_path) -> None:
    save_model(create_fusion_model("concat", 4, 4), tmp_path)
    description = json.loads((tmp_path / "model.json").read_text())
    description["labels"] = ["negative", "neutral", "positive"]
    (tmp_path / "model.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match="label order"):
        load_model(tmp_path)
