"""Cross-fitting: every training row's features come from an encoder copy that never trained on that row."""

from __future__ import annotations

import json

import pytest
import torch
from test_finetune import Kill, _cfg, _kill_after, separable_texts

from mmsent.encoders import create_text_encoder
from mmsent.finetune import crossfit as cf
from mmsent.finetune import make_adapter
from mmsent.training.metrics import compute_metrics


def test_folds_partition_the_rows_and_keep_label_shares():
    labels = [0] * 12 + [1] * 6 + [2] * 3
    folds = cf.fold_rows(labels, 3, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(21))
    for held in folds:
        assert sorted(labels[i] for i in held) == [0, 0, 0, 0, 1, 1, 2]
    assert folds == cf.fold_rows(labels, 3, seed=0) and folds != cf.fold_rows(labels, 3, seed=1)
    with pytest.raises(ValueError, match="crossfit_folds"):
        cf.fold_rows(labels, 1, seed=0)
    with pytest.raises(ValueError, match="21 training rows into 30 folds"):
        cf.fold_rows(labels, 30, seed=0)


def _setup(tmp_path, tiny_bert, *extra: str):
    cfg = _cfg(tmp_path, "finetune.text.epochs=2", "finetune.text.batch_size=4", "finetune.text.last_n=1",
               "finetune.text.crossfit_folds=3", "finetune.holdout_fraction=0.25", "finetune.patience=null", *extra)
    texts, labels, guids = separable_texts(18)
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    return cfg, texts, labels, guids, adapter


def test_each_rows_features_come_from_a_fold_that_never_trained_on_it(tmp_path, tiny_bert, monkeypatch):
    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert)
    trained: list[set[str]] = []
    heads: list[torch.nn.Module] = []
    real = cf.finetune

    def spy(adapter_, items, labels_, guids_, *args, callbacks=(), **kwargs):
        seen: set[str] = set()
        trained.append(seen)
        result = real(adapter_, items, labels_, guids_, *args, callbacks=[*callbacks, lambda i: seen.update(i.guids)],
                      **kwargs)
        heads.append(result.head)
        return result

    monkeypatch.setattr(cf, "finetune", spy)
    start = {k: v.clone() for k, v in adapter.tuned_state().items()}
    rows = adapter.prepare(texts)
    out_guids, feats = cf.crossfit(adapter, texts, rows, labels, guids, cfg.finetune.text, cfg.finetune,
                                   tmp_path / "cf", run_key="k")
    assert out_guids == guids and len(feats) == 18
    assert len(trained) == 3
    for fold, held in enumerate(cf.fold_rows(labels, 3, cfg.finetune.seed)):
        held_guids = {guids[i] for i in held}
        assert trained[fold] and not trained[fold] & held_guids  # the fold's steps never saw its own rows
        assert trained[fold] <= set(guids) - held_guids
    # the encoder is handed back with the weights every fold started from
    for key, value in adapter.tuned_state().items():
        assert torch.equal(value, start[key])
    # features differ from the untuned encoder's (the folds did train) and match what was stored
    plain = adapter.features(rows)
    assert not torch.allclose(plain.pooled, feats.pooled)
    again_guids, again = cf.load_crossfit(tmp_path / "cf")
    pos = {g: i for i, g in enumerate(again_guids)}
    assert torch.equal(again.pooled[[pos[g] for g in guids]], feats.pooled)
    # the cross-validated score: each fold head's predictions on the rows that fold left out, over all rows
    predicted = torch.empty(18, dtype=torch.long)
    for head, held in zip(heads, cf.fold_rows(labels, 3, cfg.finetune.seed), strict=True):
        head.eval()
        with torch.no_grad():
            predicted[held] = head(feats.pooled[held]).argmax(1)
    record = json.loads((tmp_path / "cf" / cf.RECORD_FILE).read_text(encoding="utf-8"))
    expected = compute_metrics(labels, predicted.tolist())
    assert record["cv_metrics"]["n"] == 18
    assert record["cv_metrics"]["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert record["cv_metrics"]["accuracy"] == pytest.approx(expected["accuracy"])


def test_an_interrupted_crossfit_resumes_to_the_same_features(tmp_path, tiny_bert):
    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert, "finetune.checkpoint_every=1")
    rows = adapter.prepare(texts)
    args = (cfg.finetune.text, cfg.finetune)
    _, expected = cf.crossfit(adapter, texts, rows, labels, guids, *args, tmp_path / "plain", run_key="k")

    # 9 training + 3 holdout rows per fold, batch 4: 3 steps an epoch, 6 a fold; step 4 is mid-epoch of fold 2
    _, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert, "finetune.checkpoint_every=1")
    killer = _kill_after(4)
    calls = {"n": 0}

    def kill_in_second_fold(info):
        if info.step == 1:
            calls["n"] += 1
        if calls["n"] == 2:
            killer(info)

    with pytest.raises(Kill):
        cf.crossfit(adapter, texts, rows, labels, guids, *args, tmp_path / "cut", run_key="k",
                    callbacks=[kill_in_second_fold])
    assert (tmp_path / "cut" / "fold0.safetensors").is_file() and (tmp_path / "cut" / "fold1").is_dir()
    assert not cf.is_crossfitted(tmp_path / "cut")

    _, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert, "finetune.checkpoint_every=1")
    _, resumed = cf.crossfit(adapter, texts, adapter.prepare(texts), labels, guids, *args, tmp_path / "cut",
                             run_key="k")
    for name in ("pooled", "tokens", "mask"):
        assert torch.equal(getattr(resumed, name), getattr(expected, name)), name
    assert not (tmp_path / "cut" / "fold1").exists()  # the fold's checkpoints went once it finished


def test_damaged_or_foreign_fold_files_are_trained_again_and_a_damaged_finished_one_is_named(tmp_path, tiny_bert,
                                                                                           caplog):
    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert)
    rows = adapter.prepare(texts)
    args = (cfg.finetune.text, cfg.finetune)
    _, expected = cf.crossfit(adapter, texts, rows, labels, guids, *args, tmp_path / "cf", run_key="k")
    (tmp_path / "cf" / "fold0.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "cf" / "fold1.safetensors").replace(tmp_path / "cf" / "fold2.safetensors")  # fold 2: fold 1's rows
    with pytest.raises(ValueError, match=r"fold0.safetensors: not a readable cross-fitting fold.*delete"):
        cf.load_crossfit(tmp_path / "cf")
    with caplog.at_level("WARNING", logger="mmsent.finetune"):
        _, again = cf.crossfit(adapter, texts, rows, labels, guids, *args, tmp_path / "cf", run_key="k")
    assert "not a readable cross-fitting fold" in caplog.text and "holds other rows than fold 2" in caplog.text
    for name in ("pooled", "tokens", "mask"):
        assert torch.equal(getattr(again, name), getattr(expected, name)), name
    cf.load_crossfit(tmp_path / "cf")  # readable again


def test_the_cross_validated_scores_name_the_tasks_classes(tmp_path, tiny_bert):
    from mmsent.labels import LabelSet

    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert, "finetune.text.epochs=1")
    classes = LabelSet(("happy", "plain", "sad"))
    cf.crossfit(adapter, texts, adapter.prepare(texts), labels, guids, cfg.finetune.text, cfg.finetune,
                tmp_path / "cf", label_set=classes)
    record = json.loads((tmp_path / "cf" / cf.RECORD_FILE).read_text(encoding="utf-8"))
    assert list(record["cv_metrics"]["per_class"]) == list(classes)


def test_given_folds_name_their_own_folder_and_must_partition_the_rows(tmp_path, tiny_bert):
    # a k-fold run's folds: another assignment of the same size must never reuse these folds' features
    assert cf.crossfit_dir(tmp_path, 3, [[0, 1], [2, 3], [4, 5]]) == cf.crossfit_dir(tmp_path, 3, [[1, 0], [2, 3],
                                                                                                  [4, 5]])
    assert cf.crossfit_dir(tmp_path, 3, [[0, 1], [2, 3], [4, 5]]) != cf.crossfit_dir(tmp_path, 3, [[0, 2], [1, 3],
                                                                                                  [4, 5]])
    assert cf.crossfit_dir(tmp_path, 3, [[0, 1], [2, 3], [4, 5]]) != cf.crossfit_dir(tmp_path, 3)
    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert)
    rows = adapter.prepare(texts)
    for bad in ([list(range(9)), list(range(8, 18))], [list(range(9)), list(range(10, 18))]):  # overlap; a gap
        with pytest.raises(ValueError, match="do not partition the training rows"):
            cf.crossfit(adapter, texts, rows, labels, guids, cfg.finetune.text, cfg.finetune, tmp_path / "bad",
                        held_out=bad)


def test_given_folds_are_the_folds_trained(tmp_path, tiny_bert, monkeypatch):
    cfg, texts, labels, guids, adapter = _setup(tmp_path, tiny_bert)
    held_out = [list(range(0, 18, 2)), list(range(1, 18, 2))]  # 2 folds, not the config's 3
    trained: list[set[str]] = []
    real = cf.finetune
    monkeypatch.setattr(cf, "finetune", lambda a, items, y, g, *args, **kw: trained.append(set(g)) or
                        real(a, items, y, g, *args, **kw))
    cf.crossfit(adapter, texts, adapter.prepare(texts), labels, guids, cfg.finetune.text, cfg.finetune,
                tmp_path / "given", run_key="k", held_out=held_out)
    assert trained == [{guids[i] for i in range(1, 18, 2)}, {guids[i] for i in range(0, 18, 2)}]
    record = json.loads((tmp_path / "given" / cf.RECORD_FILE).read_text(encoding="utf-8"))
    assert record["folds"] == 2 and record["rows"] == 18
