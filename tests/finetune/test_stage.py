"""The pipeline with finetune.enabled: only training rows reach fine-tuning, and extraction uses the tuned encoders."""

from __future__ import annotations

import json
from pathlib import Path

from mmsent import pipeline
from mmsent.config import load_config
from mmsent.data.splits import load_split
from mmsent.data.text import TextCleaner
from mmsent.features.cache import FeatureCache
from mmsent.finetune import stage
from mmsent.finetune.base import TuningAdapter
from mmsent.predict import read_predictions

FAST = ["finetune.enabled=true", "compare.models=concat", "compare.seeds=0", "training.epochs=2",
        "training.hidden_dim=8", "finetune.text.last_n=1", "finetune.image.last_n=1",
        "finetune.text.epochs=1", "finetune.image.epochs=1"]


def test_validation_rows_never_reach_finetuning_and_run_uses_the_tuned_encoders(tmp_path, overrides, monkeypatch):
    cfg = load_config(overrides=overrides + FAST)
    calls: list[dict] = []
    stepped: dict[str, set[str]] = {"image": set(), "text": set()}
    prepared: dict[str, list] = {}
    real_finetune = stage.finetune

    def spy_finetune(adapter, items, labels, guids, *args, callbacks=(), **kwargs):
        modality = adapter.encoder.modality
        calls.append({"modality": modality, "guids": list(guids), "items": list(items)})
        def spy(info) -> None:  # every batch the steps train on
            stepped[modality].update(info.guids)

        return real_finetune(adapter, items, labels, guids, *args, callbacks=[*callbacks, spy], **kwargs)

    def spy_prepare(cls):
        original = cls.prepare

        def prepare(self, items, *args, **kwargs):
            prepared.setdefault(self.encoder.modality, []).extend(items)
            return original(self, items, *args, **kwargs)
        return prepare

    from mmsent.finetune.image import ImageAdapter
    from mmsent.finetune.text import TextAdapter

    for cls in (ImageAdapter, TextAdapter):
        monkeypatch.setattr(cls, "prepare", spy_prepare(cls))
    monkeypatch.setattr(stage, "finetune", spy_finetune)

    import mmsent.report

    monkeypatch.setattr(mmsent.report, "build_report", lambda *a, **k: None)  # the HTML report is not under test
    run_dir = tmp_path / "run"
    result = pipeline.run(cfg, run_dir, progress=False)

    split = load_split(run_dir / "split.csv")
    train, val = set(split.train), set(split.val)
    dataset = pipeline.load_dataset(cfg)
    by_guid = {ex.guid: ex for ex in dataset.train}
    cleaner = TextCleaner(cfg.cleaning)
    assert sorted(c["modality"] for c in calls) == ["image", "text"]
    for call in calls:
        assert call["guids"] == split.train  # exactly the split's training rows, in order
    for modality in ("image", "text"):
        assert stepped[modality] and stepped[modality] <= train and not stepped[modality] & val
    # what the encoders saw while fine-tuning: training rows' images and texts only, in the split's order
    assert {Path(p).stem for p in prepared["image"]} == train
    assert prepared["text"] == [cleaner.clean(by_guid[g].text) for g in split.train]

    record = json.loads((run_dir / "finetune.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["timings"]["finetune_seconds"] > 0
    fingerprints = {m["fingerprint"] for m in FeatureCache(cfg.cache_dir).entries()}
    for modality in ("image", "text"):
        assert record[modality]["fingerprint"] != record[modality]["base_fingerprint"]
        assert record[modality]["fingerprint"] in fingerprints  # features came from the fine-tuned encoder
        assert record[modality]["base_fingerprint"] not in fingerprints

    # predicting later rebuilds the same fine-tuned encoders (and hits their cached features)
    out = pipeline.predict_from_run(run_dir, cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(out) == read_predictions(result.predictions_path)
    assert len(FeatureCache(cfg.cache_dir).entries()) == 2


def test_a_second_run_reuses_the_finetuned_encoders(tmp_path, overrides, monkeypatch):
    cfg = load_config(overrides=overrides + FAST)
    dataset = pipeline.load_dataset(cfg)
    split = pipeline.prepare_split(cfg, dataset)
    first = stage.finetune_encoders(cfg, dataset, split, tmp_path / "one", progress=False)
    built: list[str] = []
    monkeypatch.setattr(TuningAdapter, "freeze", lambda self: built.append(self.encoder.modality))
    second = stage.finetune_encoders(cfg, dataset, split, tmp_path / "two", progress=False)
    assert built == []  # no adapter was even built: both folders were found finished
    assert [e.fingerprint() for e in first] == [e.fingerprint() for e in second]
