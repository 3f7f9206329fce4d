"""mmsent tune on the bundled sample with fake encoders: cross-validated, pruned, resumable, usable output."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("optuna")

from mmsent_testkit import FakeImageEncoder, FakeTextEncoder

import mmsent.pipeline as pipeline
import mmsent.training.compare as compare_mod
import mmsent.tuning as tuning
from mmsent.config import load_config


def test_trials_are_scored_on_held_out_folds_and_a_rerun_resumes(tmp_path, monkeypatch):
    encoders = (FakeImageEncoder(), FakeTextEncoder(max_length=8))
    monkeypatch.setattr(pipeline, "create_encoders_from_config", lambda cfg, **kw: encoders)
    cfg = load_config(overrides=["training.epochs=3", "training.patience=2", f"cache_dir={tmp_path / 'cache'}"])
    seen = []
    real = compare_mod.compare_models

    def spy(features, labels, split, models, seeds, train_cfg, **kwargs):
        seen.append((set(split.train), set(split.val), kwargs["model_overrides"]["concat"]))
        return real(features, labels, split, models, seeds, train_cfg, **kwargs)

    monkeypatch.setattr(compare_mod, "compare_models", spy)
    result = tuning.tune(cfg, tmp_path / "study", "concat", trials=3, folds=2, progress=False)
    assert result.trials + result.pruned == 3 and result.trials >= 1 and 0 <= result.best_macro_f1 <= 1
    assert len(seen) <= 3 * 2
    for train, val, settings in seen:
        assert not train & val  # a trial's scored fold never trains (or early-stops) it
        assert {"lr", "hidden_dim", "dropout"} <= set(settings)
    assert len({frozenset(v) for _, v, _ in seen}) == 2  # both folds score
    first = json.loads((tmp_path / "study" / "tuning.json").read_text())
    assert first["best_settings"] == result.best_settings

    # resumed: the three finished trials count, one more runs
    seen.clear()
    again = tuning.tune(cfg, tmp_path / "study", "concat", trials=4, folds=2, progress=False)
    assert again.trials + again.pruned == 4 and 1 <= len(seen) <= 2

    with pytest.raises(ValueError, match=r"other settings \(folds differ\)"):
        tuning.tune(cfg, tmp_path / "study", "concat", trials=5, folds=3, progress=False)

    snippet = yaml.safe_load((tmp_path / "study" / "best_config.yaml").read_text())
    tuned = load_config(tmp_path / "study" / "best_config.yaml")
    assert tuned.compare.model_overrides["concat"] == again.best_settings == snippet["compare"]["model_overrides"][
        "concat"]
    assert tuned.compare.model_overrides["dual_stream"]["hidden_dim"] == 128  # the defaults' overrides are kept
    assert "| trial | macro-F1 |" in (tmp_path / "study" / "tuning.md").read_text()
