"""The pipeline with finetune.enabled: only training rows reach fine-tuning, and extraction uses the tuned encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmsent import pipeline
from mmsent.config import ConfigError, load_config
from mmsent.data.splits import load_split
from mmsent.data.text import TextCleaner
from mmsent.features.cache import FeatureCache
from mmsent.finetune import stage
from mmsent.predict import read_predictions
from mmsent.run_folder import load_run_encoders

FAST = ["finetune.enabled=true", "compare.models=concat", "compare.seeds=0", "training.epochs=2",
        "training.hidden_dim=8", "finetune.text.last_n=1", "finetune.image.last_n=1",
        "finetune.text.epochs=1", "finetune.image.epochs=1", "finetune.text.crossfit_folds=3"]


def test_validation_rows_never_reach_finetuning_and_run_uses_the_tuned_encoders(tmp_path, overrides, monkeypatch,
                                                                               no_report, prepared_items,
                                                                               compared_features):
    cfg = load_config(overrides=overrides + FAST)
    calls: list[dict] = []
    stepped: dict[str, set[str]] = {"image": set(), "text": set()}
    prepared, compared = prepared_items, compared_features
    real_finetune = stage.finetune

    def spy_finetune(adapter, items, labels, guids, *args, callbacks=(), **kwargs):
        modality = adapter.encoder.modality
        calls.append({"modality": modality, "guids": list(guids), "items": list(items)})
        def spy(info) -> None:  # every batch the steps train on
            stepped[modality].update(info.guids)

        return real_finetune(adapter, items, labels, guids, *args, callbacks=[*callbacks, spy], **kwargs)

    monkeypatch.setattr(stage, "finetune", spy_finetune)
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

    # the fusion models trained on the cross-fitting's out-of-fold features of the training rows
    from mmsent.finetune.crossfit import load_crossfit

    for modality, folds in (("image", 5), ("text", 3)):  # the image default; the text one set in FAST
        assert record[modality]["crossfit"]["folds"] == folds
        oof_guids, oof = load_crossfit(record[modality]["crossfit"]["dir"])
        assert sorted(oof_guids) == sorted(split.train)
        pos = {g: i for i, g in enumerate(oof_guids)}
        used = getattr(compared[0].select(split.train), modality)
        assert torch.equal(used.pooled, oof.pooled[[pos[g] for g in split.train]])

    # predicting later rebuilds the same fine-tuned encoders (and hits their cached features)
    out = pipeline.predict_from_run(run_dir, cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(out) == read_predictions(result.predictions_path)
    assert len(FeatureCache(cfg.cache_dir).entries()) == 2


def test_a_second_run_reuses_the_finetuned_encoders(tmp_path, overrides, monkeypatch):
    cfg = load_config(overrides=overrides + FAST)
    dataset = pipeline.load_dataset(cfg)
    split = pipeline.prepare_split(cfg, dataset)
    first = stage.finetune_encoders(cfg, dataset, [split], tmp_path / "one", progress=False)

    def no_work(*args, **kwargs):
        raise AssertionError("a finished fine-tuning was trained again")

    # nothing is prepared (no trunk pass), fine-tuned or cross-fitted the second time
    for name in ("make_adapter", "finetune", "crossfit"):
        monkeypatch.setattr(stage, name, no_work)
    second = stage.finetune_encoders(cfg, dataset, [split], tmp_path / "two", progress=False)
    for modality in ("image", "text"):
        one, two = getattr(first, modality), getattr(second, modality)
        assert one.fingerprint() == two.fingerprint() and "state:" in two.fingerprint()  # the tuned weights
        assert all(torch.equal(a, b) for a, b in zip(one.network.state_dict().values(),
                                                       two.network.state_dict().values(), strict=True))
        # and the cross-fitting's out-of-fold features came back from disk
        assert first.precomputed[modality][0] == second.precomputed[modality][0]
        assert torch.equal(first.precomputed[modality][1].tokens, second.precomputed[modality][1].tokens)


def test_without_text_crossfitting_only_the_image_rows_are_replaced(tmp_path, overrides, no_report,
                                                                    compared_features):
    cfg = load_config(overrides=overrides + FAST + ["finetune.text.crossfit_folds=null"])
    compared = compared_features
    run_dir = tmp_path / "run"
    pipeline.run(cfg, run_dir, progress=False)
    split = load_split(run_dir / "split.csv")
    record = json.loads((run_dir / "finetune.json").read_text())
    assert "crossfit" in record["image"] and "crossfit" not in record["text"]
    # the tuned image encoder only encoded the rows without out-of-fold features (validation and test rows)
    extraction = json.loads((run_dir / "metrics.json").read_text())["extraction"]
    n_test = len(pipeline.load_dataset(cfg).test)
    assert 0 < extraction["image"]["encoded"] <= len(split.val) + n_test
    assert extraction["text"]["encoded"] + extraction["text"]["reused"] > len(split.val) + n_test

    from mmsent.finetune.crossfit import load_crossfit

    used = compared[0].select(split.train)
    oof_guids, oof = load_crossfit(record["image"]["crossfit"]["dir"])
    pos = {g: i for i, g in enumerate(oof_guids)}
    assert torch.equal(used.image.pooled, oof.pooled[[pos[g] for g in split.train]])
    # text rows: the fully fine-tuned text encoder's own features
    _, text_encoder = load_run_encoders(run_dir, cfg)
    by_guid = {ex.guid: ex for ex in pipeline.load_dataset(cfg).train}
    cleaner = TextCleaner(cfg.cleaning)
    expected = text_encoder.encode([cleaner.clean(by_guid[g].text) for g in split.train])
    torch.testing.assert_close(used.text.pooled, expected.pooled, atol=1e-5, rtol=1e-5)


def test_a_single_crossfitting_fold_is_refused(overrides):
    with pytest.raises(ConfigError, match="finetune.image.crossfit_folds"):
        load_config(overrides=overrides + FAST + ["finetune.image.crossfit_folds=1"])


class _Captured(Exception):
    pass


@pytest.mark.parametrize("given", [None, ("w_four", "x_one", "y_two", "z_three")])
def test_training_rows_are_indexed_by_the_tasks_label_set(overrides, lab, monkeypatch, given):
    import dataclasses

    from mmsent.data.lab_format import load_lab_dataset
    from mmsent.data.splits import Split
    from mmsent.labels import LabelSet

    cfg = load_config(overrides=overrides + ["finetune.image.mode=frozen"])
    names = ("x_one", "y_two", "z_three", "w_four")  # not the sentiment classes: label_to_index would refuse them
    dataset = load_lab_dataset(lab)
    dataset.train = [dataclasses.replace(ex, label=names[i % 4]) for i, ex in enumerate(dataset.train)]
    dataset.label_order = None  # the lab format fixes the sentiment order; these classes are sorted instead
    guids = [ex.guid for ex in dataset.train]
    seen = {}

    def capture(encoder, items, ids, labels, guids_, cfg_, **kwargs):
        seen.update(labels=labels, guids=guids_, label_set=kwargs["label_set"])
        raise _Captured

    monkeypatch.setattr(stage, "finetune_encoder", capture)
    label_set = None if given is None else LabelSet(given)
    with pytest.raises(_Captured):
        stage.finetune_encoders(cfg, dataset, [Split(guids[:20], guids[20:], 0, 0.3)], progress=False,
                                label_set=label_set)
    expected = LabelSet(given or tuple(sorted(names)))  # default: the dataset's, as the pipeline reads it
    assert seen["label_set"] == expected
    by_guid = {ex.guid: ex.label for ex in dataset.train}
    assert [expected[y] for y in seen["labels"]] == [by_guid[g] for g in seen["guids"]]


def test_kfold_finetuning_never_lets_an_encoder_make_the_features_that_score_rows_it_learned(
        tmp_path, overrides, monkeypatch, no_report, compared_features):
    """Spy: with data.kfold each fold's rows get features from the encoder copy that never trained on them (nor
    early-stopped on them); the encoder fine-tuned on every labelled row makes the test rows' features only."""
    from mmsent.finetune import crossfit as cf
    from mmsent.finetune.crossfit import load_crossfit

    cfg = load_config(overrides=overrides + FAST + ["data.kfold=3", "finetune.image.crossfit_folds=3"])
    given: dict[str, list[set[str]]] = {"image": [], "text": []}  # guids each fold's fine-tuning could see
    stepped: dict[str, list[set[str]]] = {"image": [], "text": []}
    full: dict[str, list[str]] = {}
    real_fold, real_full = cf.finetune, stage.finetune

    def spy_fold(adapter, items, labels, guids, *args, callbacks=(), **kwargs):
        modality = adapter.encoder.modality
        given[modality].append(set(guids))
        seen: set[str] = set()
        stepped[modality].append(seen)
        return real_fold(adapter, items, labels, guids, *args, callbacks=[*callbacks, lambda i: seen.update(i.guids)],
                         **kwargs)

    def spy_full(adapter, items, labels, guids, *args, **kwargs):
        full[adapter.encoder.modality] = list(guids)
        return real_full(adapter, items, labels, guids, *args, **kwargs)

    monkeypatch.setattr(cf, "finetune", spy_fold)
    monkeypatch.setattr(stage, "finetune", spy_full)
    run_dir = tmp_path / "run"
    pipeline.run(cfg, run_dir, progress=False)

    splits = [load_split(run_dir / f"split_fold{k}.csv") for k in range(3)]
    labelled = [ex.guid for ex in pipeline.load_dataset(cfg).train]
    record = json.loads((run_dir / "finetune.json").read_text())
    assert len(compared_features) == 3  # one fusion comparison per fold
    for modality in ("image", "text"):
        assert full[modality] == labelled  # the encoder that predicts the test rows learned every labelled row
        assert len(given[modality]) == 3
        oof_guids, oof = load_crossfit(record[modality]["crossfit"]["dir"])
        pos = {g: i for i, g in enumerate(oof_guids)}
        for k, split in enumerate(splits):
            # fold k's encoder: trained and early-stopped on the other folds only
            assert given[modality][k] == set(labelled) - set(split.val)
            assert stepped[modality][k] and not stepped[modality][k] & set(split.val)
            # and it, not the fully fine-tuned encoder, made the features fold k's rows are scored with
            used = getattr(compared_features[k].select(split.val), modality)
            assert torch.equal(used.pooled, oof.pooled[[pos[g] for g in split.val]])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["timings"]["finetune_seconds"] > 0


def test_a_combined_text_encoder_fine_tunes_its_first_part_and_keeps_the_others_frozen(
        tmp_path, overrides, tiny_bert, no_report, compared_features):
    """``encoders.text=<hf>+vader`` with k-fold: the first part is cross-fitted (each fold's rows get the first part's
    features from the copy that left the fold out), VADER's block is its own frozen score, and the run loads back with
    the fully fine-tuned first part."""
    from mmsent.encoders.combined import VaderEncoder
    from mmsent.finetune.crossfit import load_crossfit

    cfg = load_config(overrides=overrides + FAST + ["data.kfold=3", "finetune.image.mode=frozen",
                                                    f"encoders.text={tiny_bert}+vader"])
    run_dir = tmp_path / "run"
    pipeline.run(cfg, run_dir, progress=False)
    record = json.loads((run_dir / "finetune.json").read_text())
    assert record["image"]["mode"] == "frozen" and record["text"]["encoder"] == str(tiny_bert)
    oof_guids, oof = load_crossfit(record["text"]["crossfit"]["dir"])
    pos = {g: i for i, g in enumerate(oof_guids)}
    dataset = pipeline.load_dataset(cfg)
    cleaner = TextCleaner(cfg.cleaning)
    texts = {ex.guid: cleaner.clean(ex.text) for ex in [*dataset.train, *dataset.test]}
    width = oof.pooled.shape[1]
    for k in range(3):
        val = load_split(run_dir / f"split_fold{k}.csv").val
        used = compared_features[k].select(val).text
        rows = [pos[g] for g in val]
        assert torch.equal(used.pooled[:, :width], oof.pooled[rows])  # the fold copy's vectors, then VADER's
        assert torch.equal(used.tokens[:, 1:, :width], oof.tokens[rows].to(used.tokens.dtype))
        torch.testing.assert_close(used.pooled[:, width:], VaderEncoder().vectors([texts[g] for g in val]))
    _, text_encoder = load_run_encoders(run_dir, cfg)
    assert text_encoder.tunable.fingerprint() == record["text"]["fingerprint"]
    assert text_encoder.parts[1].fingerprint() == VaderEncoder().fingerprint()
    test_guids = [ex.guid for ex in dataset.test]
    expected = text_encoder.encode([texts[g] for g in test_guids])  # the test rows: the fully fine-tuned first part
    torch.testing.assert_close(compared_features[0].select(test_guids).text.pooled, expected.pooled,
                               atol=1e-5, rtol=1e-5)
    assert len(read_predictions(run_dir / "predictions.txt")) == len(test_guids)
