"""The main job end to end on the bundled sample, with fake encoders so it runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmsent_testkit import FakeImageEncoder, FakeTextEncoder

import mmsent.pipeline as pipeline
import mmsent.run_folder as run_folder
import mmsent.training.compare as compare_mod
from mmsent.config import load_config
from mmsent.data.sample import sample_dataset_path
from mmsent.data.splits import load_split
from mmsent.labels import LABELS
from mmsent.predict import read_predictions

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

FAST = ["training.hidden_dim=16", "training.epochs=3", "training.patience=2", "training.num_heads=2",
        "compare.seeds=0,1"]


@pytest.fixture
def fakes(monkeypatch):
    encoders = (FakeImageEncoder(), FakeTextEncoder(max_length=8))
    monkeypatch.setattr(pipeline, "create_encoders_from_config", lambda cfg, **kw: encoders)
    monkeypatch.setattr(run_folder, "create_encoders_from_config", lambda cfg, **kw: encoders)
    return encoders


@pytest.fixture
def cfg(tmp_path):
    return load_config(overrides=FAST + [f"cache_dir={tmp_path / 'cache'}"])


def _sample_test_guids() -> list[str]:
    lines = (sample_dataset_path() / "test_without_label.txt").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split(",")[0].strip() for line in lines if line.strip()]


def test_run_writes_every_output_and_predictions_in_input_order(tmp_path, cfg, fakes):
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    run_dir = tmp_path / "run"
    for name in ("config.yaml", "split.csv", "comparison.md", "comparison.json", "comparison.csv", "metrics.json",
                 "data_report.json", "validation_predictions.csv", "predictions.txt", "predictions_proba.csv"):
        assert (run_dir / name).is_file(), name
    rows = read_predictions(result.predictions_path)
    assert [g for g, _ in rows] == _sample_test_guids()
    assert {t for _, t in rows} <= set(LABELS)
    # the default predictor: the mean of every compared design's seeds, all saved and named in predictor.json
    assert result.chosen_model == "ensemble"
    predictor = json.loads((run_dir / "predictor.json").read_text(encoding="utf-8"))
    assert predictor["members"] == cfg.compare.models and "class_weights" not in predictor
    saved = sorted(p.name for p in (run_dir / "models").iterdir())
    assert saved == sorted(predictor["models"]) == sorted(f"{m}_seed{s}" for m in cfg.compare.models for s in (0, 1))
    table = (run_dir / "comparison.md").read_text(encoding="utf-8")
    for name in cfg.compare.models:
        assert name in table
    assert "±" in table and "predictor: ensemble" in table


def test_validation_rows_never_train_or_stop_a_run(tmp_path, cfg, fakes, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_train = compare_mod.train_model

    def rows_of(inputs) -> torch.Tensor:
        return torch.cat([inputs.image_pooled, inputs.text_pooled], 1).clone()

    def spy(model, fit_in, fit_labels, stop_in, *args, **kwargs):
        seen.append((rows_of(fit_in), rows_of(stop_in)))
        return real_train(model, fit_in, fit_labels, stop_in, *args, **kwargs)

    monkeypatch.setattr(compare_mod, "train_model", spy)
    cfg.compare.workers = 1  # the spy records in this process; worker processes would train out of its sight
    pipeline.run(cfg, tmp_path / "run", progress=False)
    split = load_split(tmp_path / "run" / "split.csv")
    dataset = pipeline.load_dataset(cfg)
    feats = pipeline.extract(cfg, dataset.train + dataset.test, progress=False)
    val = feats.select(split.val)
    val_rows = torch.cat([val.image.pooled, val.text.pooled], 1)
    train = feats.select(split.train)
    train_rows = torch.cat([train.image.pooled, train.text.pooled], 1)
    assert len(seen) == len(cfg.compare.models) * len(cfg.compare.seeds)
    # distinct rows lie ~2 apart; cdist's float32 rounding reaches ~1e-3, hence the 0.05 match radius
    for fit_rows, stop_rows in seen:
        assert len(fit_rows) + len(stop_rows) == len(split.train) and len(stop_rows) >= 1
        both = torch.cat([fit_rows, stop_rows])
        # fitting and early stopping share out exactly the split's training rows ...
        assert (torch.cdist(train_rows, both).min(dim=1).values < 0.05).all()
        assert not (torch.cdist(stop_rows, fit_rows).min(dim=1).values < 0.05).any()
        # ... and neither sees a validation row
        assert not (torch.cdist(val_rows, both).min(dim=1).values < 0.05).any()
    # each seed draws its own early-stopping rows
    assert not torch.equal(seen[0][1], seen[1][1])


def test_second_run_reuses_cached_features_and_split_file(tmp_path, cfg, fakes):
    image_enc, text_enc = fakes
    pipeline.run(cfg, tmp_path / "first", progress=False)
    assert len(image_enc.calls) == 1 and len(text_enc.calls) == 1
    cfg.data.split_file = str(tmp_path / "first" / "split.csv")
    cfg.compare.models = ["concat", "text_only"]
    pipeline.run(cfg, tmp_path / "second", progress=False)
    assert len(image_enc.calls) == 1 and len(text_enc.calls) == 1  # both modalities came from the cache
    first = load_split(tmp_path / "first" / "split.csv")
    second = load_split(tmp_path / "second" / "split.csv")
    assert (first.train, first.val) == (second.train, second.val)


def test_predict_from_run_matches_the_runs_own_predictions(tmp_path, cfg, fakes):
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    out = pipeline.predict_from_run(tmp_path / "run", cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(out) == read_predictions(result.predictions_path)
    a = np.loadtxt(result.predictions_path.with_name("predictions_proba.csv"), delimiter=",", skiprows=1,
                   usecols=(2, 3, 4))
    b = np.loadtxt(tmp_path / "again_proba.csv", delimiter=",", skiprows=1, usecols=(2, 3, 4))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_predict_from_run_without_models_says_what_to_do(tmp_path, cfg):
    with pytest.raises(FileNotFoundError, match="is .* a run directory.*mmsent run --out RUN_DIR"):
        pipeline.predict_from_run(tmp_path, cfg)
    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(FileNotFoundError, match="predictor.json not found: the run did not finish"):
        pipeline.predict_from_run(tmp_path, cfg)


def test_predict_with_names_a_model_not_compared(tmp_path, cfg, fakes):
    cfg.compare.models = ["concat"]
    cfg.compare.predict_with = "dual_stream"
    with pytest.raises(ValueError, match="predict_with"):
        pipeline.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_predict_with_a_named_model(tmp_path, cfg, fakes):
    cfg.compare.models = ["concat", "gated"]
    cfg.compare.predict_with = "gated"
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    assert result.chosen_model == "gated"
    assert Path(tmp_path / "run" / "models" / "gated_seed0").is_dir()


def test_cross_validation_scores_each_row_once_by_models_that_never_trained_on_it(tmp_path, cfg, fakes,
                                                                               monkeypatch):
    cfg.data.kfold = 3
    cfg.compare.models = ["concat", "gated"]
    cfg.compare.workers = 1
    seen: list[tuple[list[str], list[str]]] = []
    real_compare = pipeline.compare_models

    def spy(features, labels, split, *args, **kwargs):
        seen.append((list(split.train), list(split.val)))
        assert set(features.guids) == set(split.train) | set(split.val)  # no other row is even handed over
        return real_compare(features, labels, split, *args, **kwargs)

    monkeypatch.setattr(pipeline, "compare_models", spy)
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    run_dir = tmp_path / "run"
    labelled = {ex.guid for ex in pipeline.load_dataset(cfg).train}
    assert len(seen) == 3
    for train, val in seen:
        assert not set(train) & set(val) and set(train) | set(val) == labelled
    assert sorted(g for _, val in seen for g in val) == sorted(labelled)  # the folds' validation parts partition
    for k, (train, val) in enumerate(seen):
        fold = load_split(run_dir / f"split_fold{k}.csv")
        assert (fold.train, fold.val) == (train, val)

    # out-of-fold probabilities: every labelled row once per design and seed, scored by its own fold's models
    fold_of = {g: k for k, (_, val) in enumerate(seen) for g in val}
    rows = (run_dir / "oof_predictions.csv").read_text(encoding="utf-8").splitlines()
    header, rows = rows[0].split(","), [r.split(",") for r in rows[1:]]
    assert header[:5] == ["guid", "gold", "model", "fold", "seed"]
    for model in cfg.compare.models:
        for seed in ("0", "1"):
            mine = [r for r in rows if r[2] == model and r[4] == seed]
            assert sorted(r[0] for r in mine) == sorted(labelled)
            assert all(int(r[3]) == fold_of[r[0]] for r in mine)
    assert sorted(r[0] for r in rows if r[2] == "ensemble") == sorted(labelled)

    predictor = json.loads((run_dir / "predictor.json").read_text(encoding="utf-8"))
    assert result.chosen_model == "ensemble" and predictor["members"] == ["concat", "gated"]
    assert sorted(predictor["models"]) == sorted(f"{m}_fold{k}_seed{s}" for m in cfg.compare.models
                                                 for k in range(3) for s in (0, 1))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["folds"] == 3 and metrics["validation_rows"] == len(labelled)
    assert metrics["ensemble_validation_metrics"] == predictor["scores"]["argmax"]
    again = pipeline.predict_from_run(run_dir, cfg, tmp_path / "again.txt", progress=False)
    labels_written = read_predictions(result.predictions_path)
    assert read_predictions(again) == labels_written  # the same models, the same labels

    # a single-split rerun into the same folder leaves nothing of the cross-validated run behind
    cfg.data.kfold = None
    pipeline.run(cfg, run_dir, progress=False)
    assert not list(run_dir.glob("split_fold*.csv")) and not (run_dir / "oof_predictions.csv").exists()
    assert all("_fold" not in p.name for p in (run_dir / "models").iterdir())


def test_a_rerun_into_the_same_folder_leaves_no_stale_models(tmp_path, cfg, fakes):
    cfg.compare.models = ["concat", "gated"]
    pipeline.run(cfg, tmp_path / "run", progress=False)
    cfg.compare.models, cfg.compare.seeds, cfg.compare.predict_with = ["concat"], [0], "concat"
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "models").iterdir()) == ["concat_seed0"]
    loaded = run_folder.load_run_models(tmp_path / "run")
    assert (loaded.name, loaded.seeds, len(loaded.models)) == ("concat", [0], 1)
    again = pipeline.predict_from_run(tmp_path / "run", cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(again) == read_predictions(result.predictions_path)


def test_a_skipped_test_row_is_written_as_null_not_dropped(tmp_path, cfg, fakes):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(sample_dataset_path(), root)
    guids = _sample_test_guids()
    (root / "data" / f"{guids[3]}.jpg").write_bytes(b"not an image")
    cfg.data.root, cfg.data.on_error = str(root), "skip"
    result = pipeline.run(cfg, tmp_path / "run", progress=False)
    rows = read_predictions(result.predictions_path)
    assert [g for g, _ in rows] == guids  # every input row, in input order
    assert rows[3] == (guids[3], "null") and all(tag in LABELS for g, tag in rows if g != guids[3])
    skipped = (tmp_path / "run" / "predictions_skipped.csv").read_text(encoding="utf-8").splitlines()
    assert skipped[0] == "guid,location,problem,fix" and skipped[1].startswith(f"{guids[3]},data/{guids[3]}.jpg,not an image")
    # mmsent predict on the same data answers the same way
    out = pipeline.predict_from_run(tmp_path / "run", cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(out) == rows and (tmp_path / "again_skipped.csv").is_file()
