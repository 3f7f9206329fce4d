"""End-to-end training (finetune.joint): what trains, on which rows, how it resumes, and how the run uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmsent import pipeline
from mmsent.config import load_config
from mmsent.data.splits import load_split
from mmsent.data.text import TextCleaner
from mmsent.encoders import create_image_encoder, create_text_encoder
from mmsent.finetune import joint as joint_mod
from mmsent.finetune import make_adapter, stage
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.joint import JointAdapter, JointHead, build_joint_fusion
from mmsent.finetune.trainer import StepInfo, finetune
from mmsent.fusion.base import FusionInputs
from mmsent.fusion.registry import load_model
from mmsent.labels import label_to_index
from mmsent.predict import read_predictions

JOINT = ["finetune.enabled=true", "finetune.joint.enabled=true", "finetune.joint.epochs=2",
         "finetune.joint.batch_size=4", "finetune.text.crossfit_folds=0", "finetune.image.crossfit_folds=0",
         "finetune.text.last_n=1", "finetune.image.last_n=1", "compare.models=concat,text_only", "compare.seeds=0",
         "training.epochs=2", "training.hidden_dim=8"]


def test_validation_rows_never_reach_the_joint_training_and_its_model_joins_the_comparison(
        tmp_path, overrides, monkeypatch, no_report, prepared_items, compared_features):
    cfg = load_config(overrides=overrides + JOINT + ["compare.predict_with=joint_gated"])
    calls: list[list[str]] = []
    stepped: set[str] = set()
    prepared, compared = prepared_items, compared_features
    real_finetune = joint_mod.finetune

    def spy_finetune(adapter, items, labels, guids, *args, callbacks=(), **kwargs):
        calls.append(list(guids))
        return real_finetune(adapter, items, labels, guids, *args,
                             callbacks=[*callbacks, lambda info: stepped.update(info.guids)], **kwargs)

    monkeypatch.setattr(joint_mod, "finetune", spy_finetune)
    run_dir = tmp_path / "run"
    result = pipeline.run(cfg, run_dir, progress=False)

    split = load_split(run_dir / "split.csv")
    train, val = set(split.train), set(split.val)
    dataset = pipeline.load_dataset(cfg)
    by_guid = {ex.guid: ex for ex in dataset.train}
    assert calls == [split.train]  # one joint training, on exactly the training rows
    assert stepped and stepped <= train and not stepped & val
    assert {Path(p).stem for p in prepared["image"]} == train
    cleaner = TextCleaner(cfg.cleaning)
    assert prepared["text"] == [cleaner.clean(by_guid[g].text) for g in split.train]

    record = json.loads((run_dir / "finetune.json").read_text())
    for modality in ("image", "text"):  # both encoders changed, and the run extracted with them
        assert record[modality]["joint"] and record[modality]["fingerprint"] != record[modality]["base_fingerprint"]
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert [row["model"] for row in comparison["summary"]] == ["concat", "text_only", "joint_gated"]
    assert result.chosen_model == "joint_gated"

    # its validation score is the saved fusion model's, on the tuned encoders' validation features
    image, text = stage.load_run_encoders(run_dir, cfg)
    feats = pipeline.extract(cfg, dataset, progress=False, encoders=(image, text),
                             examples=[by_guid[g] for g in split.val])
    # the training rows' features came from the cached trunks, and equal what the tuned encoders extract
    extraction = json.loads((run_dir / "metrics.json").read_text())["extraction"]
    assert extraction["image"]["encoded"] + extraction["image"]["reused"] == len(split.val) + len(dataset.test)
    encoded = pipeline.extract(cfg, dataset, progress=False, encoders=(image, text),
                               examples=[by_guid[g] for g in split.train])
    used = compared[0].select(split.train)
    for modality in ("image", "text"):
        torch.testing.assert_close(getattr(used, modality).pooled, getattr(encoded, modality).pooled,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(used, modality).tokens, getattr(encoded, modality).tokens,
                                   atol=1e-5, rtol=1e-5, msg=modality)  # both rounded through float16
    fusion = load_model(Path(record["joint"]["dir"]) / "fusion")
    from mmsent.training.metrics import compute_metrics
    from mmsent.training.trainer import predict_proba

    pred = predict_proba(fusion, feats.select(split.val)).argmax(1)
    gold = [label_to_index(by_guid[g].label) for g in split.val]
    run = next(r for r in comparison["runs"] if r["model"] == "joint_gated")
    assert run["metrics"]["macro_f1"] == pytest.approx(compute_metrics(gold, pred)["macro_f1"])

    # the chosen joint model predicts the test rows, and predicting again from the run gives the same file
    assert (run_dir / "models" / "joint_gated_seed0").is_dir()
    again = pipeline.predict_from_run(run_dir, cfg, tmp_path / "again.txt", progress=False)
    assert read_predictions(again) == read_predictions(result.predictions_path)


def test_a_second_joint_run_reuses_the_finished_training(tmp_path, overrides, monkeypatch):
    cfg = load_config(overrides=overrides + JOINT)
    dataset = pipeline.load_dataset(cfg)
    split = pipeline.prepare_split(cfg, dataset)
    first = stage.finetune_encoders(cfg, dataset, split, tmp_path / "one", progress=False)
    built: list[str] = []
    monkeypatch.setattr(TuningAdapter, "freeze", lambda self: built.append(self.encoder.modality))
    second = stage.finetune_encoders(cfg, dataset, split, tmp_path / "two", progress=False)
    assert built == []
    assert [e.fingerprint() for e in first.encoders] == [e.fingerprint() for e in second.encoders]
    for a, b in zip(first.joint.fusion.state_dict().values(), second.joint.fusion.state_dict().values()):
        assert torch.equal(a, b)
    # trained again elsewhere (another process would start from another RNG state): the same seed, the same weights
    torch.manual_seed(1234)
    monkeypatch.undo()
    cfg.finetune.output_dir = str(tmp_path / "elsewhere")
    third = stage.finetune_encoders(cfg, dataset, split, None, progress=False)
    assert third.joint.folder != first.joint.folder and third.joint.train_features
    for a, b in zip(first.joint.fusion.state_dict().values(), third.joint.fusion.state_dict().values()):
        assert torch.equal(a, b)
    assert [e.fingerprint() for e in first.encoders] == [e.fingerprint() for e in third.encoders]


@pytest.mark.parametrize(("setting", "message"), [("finetune.image.crossfit_folds=5", "crossfit_folds=5"),
                                                  ("finetune.text.mode=frozen", "finetune.text.mode=frozen")])
def test_settings_that_contradict_joint_training_are_refused(tmp_path, overrides, setting, message):
    cfg = load_config(overrides=overrides + JOINT + [setting])
    dataset = pipeline.load_dataset(cfg)
    split = pipeline.prepare_split(cfg, dataset)
    with pytest.raises(ValueError, match=message):
        stage.finetune_encoders(cfg, dataset, split, None, progress=False)


def test_predict_with_a_joint_model_without_joint_training_is_refused_up_front(tmp_path, overrides):
    cfg = load_config(overrides=overrides + ["compare.predict_with=joint_gated"])
    with pytest.raises(ValueError, match="joint_gated"):
        pipeline.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# -- the training unit itself ----------------------------------------------------------------------------------------

def _unit(tmp_path, tiny_bert, lite0_weights, fusion: str, *extra: str):
    cfg = load_config(overrides=[f"cache_dir={tmp_path / 'cache'}", "finetune.holdout_fraction=0.25",
                                 "finetune.patience=0", "finetune.checkpoint_every=2", "finetune.text.last_n=1",
                                 "finetune.image.last_n=1", "finetune.joint.epochs=2", "finetune.joint.batch_size=4",
                                 f"finetune.joint.fusion={fusion}", "training.hidden_dim=8",
                                 "training.num_heads=2", *extra])
    image = make_adapter(create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu"),
                         cfg.finetune.image)
    text = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    torch.manual_seed(0)
    model = build_joint_fusion(cfg, image.dim, text.dim)
    adapter = JointAdapter(image, text, cfg.finetune.image, cfg.finetune.text,
                           with_tokens=getattr(model, "uses_tokens", True))
    head = JointHead(model, image.dim, text.dim, cfg.finetune.joint.aux_weight, cfg.finetune.joint.dropout)
    return cfg, adapter, head


def _items(lab: Path, n: int = 24) -> tuple[list[tuple[Path, str]], list[int], list[str]]:
    from test_finetune import separable_texts

    texts, labels, guids = separable_texts(n)
    paths = sorted((lab / "data").glob("*.jpg"))[:n]
    return list(zip(paths, texts)), labels, guids


@pytest.mark.parametrize("fusion", ["gated", "single_stream"])
def test_training_inputs_equal_the_features_the_fusion_model_later_reads(tmp_path, tiny_bert, lite0_weights, lab,
                                                                         fusion):
    _, adapter, head = _unit(tmp_path, tiny_bert, lite0_weights, fusion)
    items, _, _ = _items(lab, 6)
    rows = adapter.prepare(items)
    adapter.eval()
    head.eval()
    with torch.no_grad():
        live = head(adapter.forward(rows))
    img = adapter.image.features([r[0] for r in rows])
    txt = adapter.text.features([r[1] for r in rows])
    extracted = FusionInputs(img.pooled, img.tokens, img.mask, txt.pooled, txt.tokens, txt.mask)
    from mmsent.training.trainer import predict_logits

    torch.testing.assert_close(live, predict_logits(head.fusion, extracted), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("aux_weight", [0.0, 1.0])
def test_only_the_trainable_tops_change_and_aux_heads_learn_only_with_their_loss(tmp_path, tiny_bert, lite0_weights,
                                                                                 lab, aux_weight):
    cfg, adapter, head = _unit(tmp_path, tiny_bert, lite0_weights, "gated", f"finetune.joint.aux_weight={aux_weight}")
    before = {k: v.clone() for k, v in adapter.network.state_dict().items()}
    aux_before = {k: v.clone() for k, v in head.image_head.state_dict().items()}
    items, labels, guids = _items(lab)
    finetune(adapter, items, labels, guids, cfg.finetune.joint, cfg.finetune, None, head=head)
    after = adapter.network.state_dict()
    tuned = set(adapter.tuned_state())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= tuned  # frozen trunks bit-identical
    assert any(k.startswith("image.") for k in changed) and any(k.startswith("text.") for k in changed)
    aux_changed = any(not torch.equal(v, head.image_head.state_dict()[k]) for k, v in aux_before.items())
    assert aux_changed == (aux_weight > 0)


class Kill(Exception):
    pass


def test_an_interrupted_joint_training_resumes_to_the_same_weights(tmp_path, tiny_bert, lite0_weights, lab):
    items, labels, guids = _items(lab)  # 18 training rows + 6 holdout, batch 4: 5 steps per epoch, 2 epochs

    def run(ckpt: Path, kill_at: int | None = None):
        cfg, adapter, head = _unit(tmp_path, tiny_bert, lite0_weights, "gated")

        def kill(info: StepInfo) -> None:
            if info.step == kill_at:
                raise Kill

        result = finetune(adapter, items, labels, guids, cfg.finetune.joint, cfg.finetune, ckpt, run_key="k",
                          callbacks=[kill], head=head)
        return result, adapter, head

    plain, adapter_a, head_a = run(tmp_path / "a")
    with pytest.raises(Kill):
        run(tmp_path / "b", kill_at=7)
    resumed, adapter_b, head_b = run(tmp_path / "b")
    assert resumed.resumed_from_step == 6 and resumed.steps == plain.steps == 10
    for key, value in adapter_a.tuned_state().items():
        assert torch.equal(adapter_b.tuned_state()[key], value), key
    for key, value in head_a.state_dict().items():
        assert torch.equal(head_b.state_dict()[key], value), key
    assert resumed.history == plain.history
