"""Damaged run files: one error naming the file and the fix, never a traceback from deep inside."""

from __future__ import annotations

import json

import pytest

from mmsent.config import RunConfig, load_config
from mmsent.run_folder import load_run_encoders, load_run_models


@pytest.fixture
def run_dir(tmp_path):
    RunConfig().save(tmp_path / "config.yaml")
    return tmp_path


@pytest.mark.parametrize(("text", "words"), [
    ('{"members": ["gated"], "models": [', "predictor.json: not readable JSON"),
    ("[]", "predictor.json: expected a JSON object"),
    ('{"members": ["gated"], "models": ["../../other/gated_seed0"]}', "'models' must list folder names"),
    ('{"members": ["gated"], "models": ["gated_seed0"], "class_weights": 2.0}', "'class_weights' must be"),
])
def test_a_damaged_predictor_file_is_named(run_dir, text, words):
    (run_dir / "predictor.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=words):
        load_run_models(run_dir)


def test_a_model_folder_named_but_missing_says_so(run_dir):
    (run_dir / "predictor.json").write_text(json.dumps({"members": ["gated"], "models": ["gated_seed0"]}))
    with pytest.raises(FileNotFoundError, match="saved model folder.*gated_seed0.*run the job again"):
        load_run_models(run_dir)


@pytest.mark.parametrize("text", ['{"image": {"dir": ', "[1, 2]"])
def test_a_damaged_finetune_record_is_named(run_dir, text, monkeypatch):
    import mmsent.run_folder as run_folder

    monkeypatch.setattr(run_folder, "create_encoders_from_config", lambda cfg, **kw: (None, None))
    (run_dir / "finetune.json").write_text(text, encoding="utf-8")
    cfg = load_config(overrides=["finetune.enabled=true", "encoders.text=all-MiniLM-L6-v2"])
    with pytest.raises(ValueError, match="finetune.json: .*run the job again"):
        load_run_encoders(run_dir, cfg)
