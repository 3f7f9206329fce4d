"""Fine-tuning: it learns, it freezes what it should, its fingerprint follows the weights, and it resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from mmsent.config import load_config
from mmsent.encoders import create_image_encoder, create_text_encoder
from mmsent.finetune import apply_finetuned, finetune, finetune_encoder, make_adapter
from mmsent.finetune.finetuned import CHECKPOINTS_DIR, ENCODER_WEIGHTS, HEAD_WEIGHTS, META_FILE
from mmsent.training.loop import StepInfo

WORDS = {0: "happy love great win sun", 1: "the park is on a day", 2: "sad hate awful lose rain"}


def separable_texts(n: int = 24) -> tuple[list[str], list[int], list[str]]:
    labels = [i % 3 for i in range(n)]
    texts = [" ".join(WORDS[y].split()[(i // 3) % 3:][:3]) for i, y in enumerate(labels)]
    return texts, labels, [f"g{i}" for i in range(n)]


def _cfg(tmp_path, *extra: str):
    return load_config(overrides=[f"cache_dir={tmp_path / 'cache'}", "finetune.holdout_fraction=0",
                                  "finetune.checkpoint_every=2", *extra])


def _state(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in adapter.network.state_dict().items()}


def test_loss_decreases_on_a_separable_task(tmp_path, tiny_bert):
    cfg = _cfg(tmp_path, "finetune.text.epochs=8", "finetune.text.batch_size=8", "finetune.text.lr_last_n=3e-3",
               "finetune.text.head_lr=3e-2", "finetune.text.warmup_fraction=0", "finetune.text.dropout=0")
    texts, labels, guids = separable_texts()
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    result = finetune(adapter, texts, labels, guids, cfg.finetune.text, cfg.finetune, None)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(("bf16_cpu", "amp", "expected"), [(True, True, "bfloat16"), (True, False, None),
                                                            (False, True, None)])
def test_the_cpu_trains_in_bf16_only_where_it_has_hardware_bf16_and_amp_is_on(tmp_path, tiny_bert, monkeypatch,
                                                                            bf16_cpu, amp, expected):
    from mmsent import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: bf16_cpu)
    cfg = _cfg(tmp_path, "finetune.text.epochs=1", "finetune.text.batch_size=8", f"finetune.amp={str(amp).lower()}",
               "finetune.text.mode=full")
    texts, labels, guids = separable_texts(16)
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    seen: list[torch.dtype] = []
    linear = next(m for m in adapter.encoder.network.modules() if isinstance(m, torch.nn.Linear))
    hook = linear.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    result = finetune(adapter, texts, labels, guids, cfg.finetune.text, cfg.finetune, None)
    hook.remove()
    assert result.amp == expected  # recorded in finetune.json
    assert seen and set(seen) == {torch.bfloat16 if expected else torch.float32}  # what the steps computed in


@pytest.mark.parametrize("modality", ["text", "image"])
def test_last_n_leaves_the_frozen_part_bit_identical(tmp_path, tiny_bert, lite0_weights, lab, modality):
    cfg = _cfg(tmp_path, f"finetune.{modality}.epochs=1", f"finetune.{modality}.batch_size=4",
               f"finetune.{modality}.last_n=1")
    texts, labels, guids = separable_texts(12)
    if modality == "text":
        enc, items = create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), texts
    else:
        enc = create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu")
        items = sorted((lab / "data").glob("*.jpg"))[:12]
    ecfg = getattr(cfg.finetune, modality)
    adapter = make_adapter(enc, ecfg)
    before = _state(adapter)
    tuned = set(adapter.tuned_state())
    finetune(adapter, items, labels, guids, ecfg, cfg.finetune, None)
    after = _state(adapter)
    for key in before:
        if key not in tuned:
            assert torch.equal(before[key], after[key]), f"frozen tensor {key} changed"
    changed = [k for k in tuned if not torch.equal(before[k], after[k])]
    assert changed, "nothing in the trainable top changed"


def test_fingerprint_changes_and_the_reloaded_encoder_matches(tmp_path, tiny_bert):
    cfg = _cfg(tmp_path, f"encoders.text={tiny_bert}", "encoders.text_max_length=16", "encoders.device=cpu",
               "finetune.text.epochs=1", "finetune.text.batch_size=4")
    texts, labels, guids = separable_texts(12)
    enc = create_text_encoder(str(tiny_bert), max_length=16, device="cpu")
    base_fp = enc.fingerprint()
    folder = finetune_encoder(enc, texts, [str(i) for i in range(12)], labels, guids, cfg, progress=False)
    assert enc.fingerprint() != base_fp and "state:" in enc.fingerprint()
    assert sorted(p.name for p in folder.iterdir()) == sorted([ENCODER_WEIGHTS, HEAD_WEIGHTS, META_FILE])
    reloaded = apply_finetuned(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), folder)
    assert reloaded.fingerprint() == enc.fingerprint()
    torch.testing.assert_close(reloaded.encode(texts).pooled, enc.encode(texts).pooled)
    # the same request again reuses the folder instead of training
    again = create_text_encoder(str(tiny_bert), max_length=16, device="cpu")
    assert finetune_encoder(again, texts, [str(i) for i in range(12)], labels, guids, cfg, progress=False) == folder
    assert again.fingerprint() == enc.fingerprint()


class Kill(Exception):
    pass


def _kill_after(step: int):
    def callback(info: StepInfo) -> None:
        if info.step == step:
            raise Kill(f"killed after step {step}")
    return callback


@pytest.mark.parametrize(("modality", "extra"), [("text", ()), ("image", ()), ("image", ("finetune.image.mode=full",))],
                         ids=["text", "image", "image-full"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_bert, lite0_weights, lab, modality, extra):
    # 18 training rows + 6 holdout, batch 4: 5 steps per epoch, 2 epochs; checkpoints every 2 steps and per epoch.
    cfg = _cfg(tmp_path, "finetune.holdout_fraction=0.25", "finetune.patience=null", f"finetune.{modality}.epochs=2",
               f"finetune.{modality}.batch_size=4", f"finetune.{modality}.last_n=1", "finetune.checkpoint_every=2",
               *extra)
    ecfg = getattr(cfg.finetune, modality)
    texts, labels, guids = separable_texts(24)
    paths = sorted((lab / "data").glob("*.jpg"))[:24]

    def fresh():
        if modality == "text":
            return make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), ecfg), texts
        enc = create_image_encoder(f"efficientnet-lite0:{lite0_weights}", grid=2, device="cpu")
        return make_adapter(enc, ecfg), paths

    adapter, items = fresh()
    plain = finetune(adapter, items, labels, guids, ecfg, cfg.finetune, tmp_path / "a", run_key="k")
    expected = _state(adapter)

    ckpt = tmp_path / "b"
    adapter, items = fresh()
    with pytest.raises(Kill):  # step 7 is mid-epoch 2 and after the step-6 checkpoint: step 7 is redone on resume
        finetune(adapter, items, labels, guids, ecfg, cfg.finetune, ckpt, run_key="k", callbacks=[_kill_after(7)])
    leftovers = sorted(p.name for p in ckpt.iterdir())
    assert leftovers == ["step-00000006.json", "step-00000006.safetensors"]
    for path in ckpt.glob("*.safetensors"):  # no pickle anywhere: safetensors loads them, the sidecar is JSON
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
            assert any(k.startswith("optim.") for k in keys) and "rng.torch" in keys
    json.loads((ckpt / "step-00000006.json").read_text())

    adapter, items = fresh()  # a new process would start from the base weights, like this
    resumed = finetune(adapter, items, labels, guids, ecfg, cfg.finetune, ckpt, run_key="k")
    assert resumed.resumed_from_step == 6 and resumed.steps == plain.steps == 10
    got = _state(adapter)
    for key, value in expected.items():
        assert torch.equal(got[key], value), f"{key} differs after resume"
    for a, b in zip(plain.head.state_dict().values(), resumed.head.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.history == plain.history


def test_checkpoint_of_another_run_is_not_resumed(tmp_path, tiny_bert):
    cfg = _cfg(tmp_path, "finetune.text.epochs=1", "finetune.text.batch_size=4")
    texts, labels, guids = separable_texts(12)
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    finetune(adapter, texts, labels, guids, cfg.finetune.text, cfg.finetune, tmp_path / "c", run_key="one")
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    result = finetune(adapter, texts, labels, guids, cfg.finetune.text, cfg.finetune, tmp_path / "c", run_key="two")
    assert result.resumed_from_step is None and result.steps == 3


def test_no_checkpoint_pickle_in_a_finished_folder(tmp_path, tiny_bert):
    cfg = _cfg(tmp_path, f"encoders.text={tiny_bert}", "finetune.text.epochs=1", "finetune.text.batch_size=4",
               "finetune.text.crossfit_folds=3")
    texts, labels, guids = separable_texts(12)
    enc = create_text_encoder(str(tiny_bert), max_length=16, device="cpu")
    folder = finetune_encoder(enc, texts, [str(i) for i in range(12)], labels, guids, cfg, progress=False)
    assert not (folder / CHECKPOINTS_DIR).exists()
    # finished cross-fitting folds keep only their out-of-fold features (no checkpoints left behind)
    assert sorted(p.name for p in (folder / "crossfit-k3").iterdir()) == sorted(
        ["crossfit.json"] + [f"fold{i}.safetensors" for i in range(3)])
    for path in (folder / "crossfit-k3").glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as fh:
            assert sorted(fh.keys()) == ["mask", "pooled", "tokens"]
    for name in (ENCODER_WEIGHTS, HEAD_WEIGHTS):
        with safe_open(str(folder / name), framework="pt") as fh:
            assert list(fh.keys())


def test_the_head_and_holdout_scores_follow_the_tasks_label_set(tmp_path, tiny_bert):
    from mmsent.labels import LabelSet

    classes = LabelSet(("a_one", "b_two", "c_three", "d_four", "e_five"))
    cfg = _cfg(tmp_path, "finetune.text.epochs=1", "finetune.text.batch_size=8", "finetune.text.last_n=1",
               "finetune.holdout_fraction=0.25")
    texts, _, guids = separable_texts(20)
    labels = [i % 5 for i in range(20)]
    adapter = make_adapter(create_text_encoder(str(tiny_bert), max_length=16, device="cpu"), cfg.finetune.text)
    result = finetune(adapter, texts, labels, guids, cfg.finetune.text, cfg.finetune, None, label_set=classes)
    assert result.head[-1].out_features == 5
    assert list(result.holdout_metrics["per_class"]) == list(classes)
