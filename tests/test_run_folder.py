"""Damaged run files: one error naming the file and the fix, never a traceback from deep inside."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from mmsent.config import RunConfig, load_config
from mmsent.fusion.registry import create_fusion_model, save_model
from mmsent.io import write_json
from mmsent.run_folder import load_run_encoders, load_run_models, model_dir


@pytest.fixture
def run_dir(tmp_path):
    RunConfig().save(tmp_path / "config.yaml")
    return tmp_path


@pytest.mark.parametrize(("text", "words"), [
    ('{"members": ["gated"], "models": [', "predictor.json: not readable JSON"),
    ("[]", "predictor.json: expected a JSON object"),
    ('{"members": ["gated"], "models": ["../../other/gated_seed0"]}', "'models' must list folder names"),
    ('{"members": ["gated"], "models": ["gated_seed0"], "class_weights": [1, 2, 1]}',
     "'class_weights' holds the weights of the decision rule"),
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


# --- a damaged or edited folder never answers differently without a word (each found by an adversarial probe) ---

def _copy_of_the_shipped_model(tmp_path: Path) -> Path:
    from mmsent.export import shipped_model_path

    return Path(shutil.copytree(shipped_model_path(), tmp_path / "model"))


def _flip_one_weight_bit(path: Path) -> None:
    """Flips the lowest bit of one float in the tensor data (the header intact), as a disk or copy fault would."""
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]
    data[start + 4 * 1000] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_flipped_bit_in_a_models_weights_is_refused_naming_the_file(tmp_path):
    folder = _copy_of_the_shipped_model(tmp_path)
    _flip_one_weight_bit(folder / "models" / "concat_seed0" / "weights.safetensors")
    with pytest.raises(ValueError, match=r"models/concat_seed0/weights\.safetensors: changed since"):
        load_run_models(folder)


@pytest.mark.parametrize(("old", "new"), [("text_max_length: 64", "text_max_length: 16"),
                                          ("lowercase: false", "lowercase: true"),
                                          ("hashtags: strip_symbol", "hashtags: drop")])
def test_an_edited_setting_in_the_runs_config_is_refused(tmp_path, old, new):
    folder = _copy_of_the_shipped_model(tmp_path)
    text = (folder / "config.yaml").read_text(encoding="utf-8")
    assert old in text
    (folder / "config.yaml").write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.yaml: changed since .*mmsent seal"):
        load_run_models(folder)


def _hand_made_run(tmp_path: Path, models: list[str], **predictor: Any) -> Path:
    """A run folder written with the public writers: a default config, concat models, a predictor naming them."""
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(run / "config.yaml")
    for name in dict.fromkeys(models):
        save_model(create_fusion_model("concat", 4, 4), model_dir(run, "concat", int(name[-1])))
    write_json(run / "predictor.json", {"members": ["concat"], "models": models, "name": "concat", **predictor})
    return run


@pytest.mark.parametrize(("models", "predictor", "words"), [
    (["concat_seed0", "concat_seed0", "concat_seed1"], {}, "'models' names concat_seed0 more than once"),
    (["concat_seed0"], {"name": ["concat"]}, "'name' must be a string"),
    (["concat_seed0"], {"class_weights": [True, True, True]}, "'class_weights' holds the weights of the decision"),
    (["concat_seed0"], {"members": ["concat", "concat"]}, "'members' names concat more than once"),
    (["concat_seed0"], {"members": ["gated"], "name": "gated"},
     "concat_seed0 is a concat model, which 'members' does not name"),
], ids=["duplicate-models", "list-name", "boolean-weights", "duplicate-members", "model-not-a-member"])
def test_a_predictor_file_that_would_answer_differently_is_refused(tmp_path, models, predictor, words):
    run = _hand_made_run(tmp_path, models, **predictor)
    with pytest.raises(ValueError, match=rf"predictor\.json: {words}.*"):
        load_run_models(run)


def test_a_model_folder_linked_from_outside_the_run_is_refused(tmp_path):
    run = _hand_made_run(tmp_path, ["concat_seed0"])
    outside = tmp_path / "elsewhere" / "concat_seed0"
    shutil.move(str(model_dir(run, "concat", 0)), outside)
    model_dir(run, "concat", 0).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError) as err:
        load_run_models(run)
    assert str(err.value) == (f"{model_dir(run, 'concat', 0)} resolves to {outside.resolve()}, outside the run folder "
                              f"{run}; a run predicts only with its own files: copy them into the folder instead of "
                              "linking them")


@pytest.mark.parametrize(("models", "expected"), [
    (["concat_seed0"], "one model (seed 0)"),
    (["concat_seed0", "concat_seed1"], "mean of 2 seeds"),
    (["concat_seed0", "concat_seed1", "gated_seed0", "gated_seed1"], "mean of 2 designs × 2 seeds"),
    (["concat_fold0_seed0", "concat_fold1_seed0"], "mean of 2 folds × 1 seed"),
    (["concat_fold0_seed0", "concat_fold1_seed0", "concat_fold2_seed0", "gated_fold0_seed0", "gated_fold1_seed0",
      "gated_fold2_seed0"], "mean of 2 designs × 3 folds × 1 seed"),
])
def test_the_predictor_is_described_in_words(tmp_path, models, expected):
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(run / "config.yaml")
    for name in models:
        design, *_ = name.partition("_")
        save_model(create_fusion_model(design, 4, 4), run / "models" / name)
    designs = list(dict.fromkeys(n.partition("_")[0] for n in models))
    write_json(run / "predictor.json", {"members": designs, "models": models,
                                        "name": designs[0] if len(designs) == 1 else "ensemble"})
    loaded = load_run_models(run, verify=False)
    assert loaded.describe() == expected
    assert loaded.designs == designs and loaded.folds == (3 if "fold2" in str(models) else 2 if "fold" in
                                                          str(models) else 1)


def test_the_runs_probabilities_are_its_models_mean(tmp_path):
    import numpy as np
    import torch

    from mmsent.features.featureset import FeatureSet, ModalityFeatures
    from mmsent.training.trainer import predict_proba

    run = _hand_made_run(tmp_path, ["concat_seed0", "concat_seed1"])
    loaded = load_run_models(run, verify=False)
    g = torch.Generator().manual_seed(0)

    def modality(n_tokens: int) -> ModalityFeatures:
        tokens = torch.randn(5, n_tokens, 4, generator=g)
        return ModalityFeatures(tokens.mean(1), tokens, torch.ones(5, n_tokens, dtype=torch.bool))

    feats = FeatureSet([str(i) for i in range(5)], modality(2), modality(3))
    each = [predict_proba(m, feats) for m in loaded.models]
    assert not np.allclose(each[0], each[1])  # two different models, so the mean is a real average
    assert np.allclose(loaded.proba(feats), (each[0] + each[1]) / 2, atol=1e-6)


def test_the_runs_probabilities_are_computed_on_the_device_asked_for_the_cpu_by_default(tmp_path, monkeypatch):
    from mmsent import run_folder

    asked = []
    monkeypatch.setattr(run_folder, "mean_proba", lambda models, feats, device: asked.append((len(models), device)))
    loaded = load_run_models(_hand_made_run(tmp_path, ["concat_seed0", "concat_seed1"]), verify=False)
    loaded.proba(None)
    loaded.proba(None, "cuda:1")
    assert asked == [(2, "cpu"), (2, "cuda:1")]


def test_a_sealed_export_covers_its_finetuned_weights_but_not_checkpoints_or_files_outside(tmp_path):
    from mmsent.run_folder import prediction_files

    run = _hand_made_run(tmp_path, ["concat_seed0"])
    inside = run / "finetuned" / "text"
    (inside / "checkpoints").mkdir(parents=True)
    for name in ("encoder.safetensors", "head.safetensors", "finetuned.json"):
        (inside / name).write_bytes(b"w")
    (inside / "crossfit-k5-0123456789ab").mkdir()  # the fine-tuning's own: training rows' features, never read
    (inside / "crossfit-k5-0123456789ab" / "fold0.safetensors").write_bytes(b"f")
    (inside / "checkpoints" / "step-1.safetensors").write_bytes(b"c")
    outside = tmp_path / "cache" / "image"
    outside.mkdir(parents=True)
    (outside / "encoder.safetensors").write_bytes(b"o")
    write_json(run / "finetune.json", {"text": {"dir": "finetuned/text", "mode": "full"},
                                       "image": {"dir": str(outside), "mode": "full"}, "note": "not an entry",
                                       "other": {"dir": 5}})
    tuned = ["finetuned/text/encoder.safetensors", "finetuned/text/head.safetensors", "finetuned/text/finetuned.json"]
    assert prediction_files(run) == ["config.yaml", "predictor.json", "models/concat_seed0/model.json",
                                     "models/concat_seed0/weights.safetensors", "finetune.json", *tuned]
    shutil.copytree(outside, run / "finetuned" / "image")  # an export that fine-tuned both encoders
    write_json(run / "finetune.json", {"image": {"dir": "finetuned/image"}, "text": {"dir": "finetuned/text"}})
    assert prediction_files(run)[4:] == ["finetune.json", "finetuned/image/encoder.safetensors",
                                         "finetuned/image/head.safetensors", "finetuned/image/finetuned.json", *tuned]


def test_a_fold_models_folder_names_its_fold():
    assert model_dir("run", "concat", 1) == Path("run/models/concat_seed1")
    assert model_dir("run", "concat", 1, fold=2) == Path("run/models/concat_fold2_seed1")


def test_sealing_reads_every_byte_even_when_size_and_time_are_unchanged(tmp_path):
    import hashlib
    import os

    from mmsent.run_folder import MANIFEST_FILE, seal_run

    run = _hand_made_run(tmp_path, ["concat_seed0"])
    seal_run(run)
    config = run / "config.yaml"
    stat = config.stat()
    text = config.read_text()
    config.write_text(text.replace("lowercase: false", "lowercase: true "[:len("lowercase: false")]))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a bit flipped on disk keeps both
    assert config.stat().st_size == stat.st_size and config.read_text() != text
    seal_run(run)
    line = next(x for x in (run / MANIFEST_FILE).read_text().splitlines() if x.endswith("config.yaml"))
    assert line.split()[0] == hashlib.sha256(config.read_bytes()).hexdigest()


@pytest.mark.parametrize("gone", [["weights.safetensors"], ["model.json", "weights.safetensors"]])
def test_sealing_a_folder_missing_model_files_names_them(tmp_path, gone):
    from mmsent.run_folder import seal_run

    run = _hand_made_run(tmp_path, ["concat_seed0"])
    for name in gone:
        (model_dir(run, "concat", 0) / name).unlink()
    with pytest.raises(FileNotFoundError) as err:
        seal_run(run)
    assert str(err.value) == (f"{run}: cannot seal, missing {', '.join(f'models/concat_seed0/{n}' for n in gone)}; "
                              "run the job again")


def test_a_changed_file_is_refused_with_both_ways_out(tmp_path):
    from mmsent.run_folder import IntegrityError, seal_run

    run = _hand_made_run(tmp_path, ["concat_seed0"])
    seal_run(run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "\n")
    with pytest.raises(IntegrityError) as err:
        load_run_models(run)
    assert (f"if you changed it on purpose, `mmsent seal {run}` accepts the folder as it is now; `--no-verify` "
            "(verify=False) loads it unchecked") in str(err.value)


def test_saved_labels_are_none_without_a_predictor_file_and_named_when_damaged(tmp_path):
    from mmsent.run_folder import saved_labels

    assert saved_labels(tmp_path) is None
    write_json(tmp_path / "predictor.json", {"id2label": {"0": "sad", "1": "glad"}, "label2id": {"sad": 0, "glad": 1}})
    assert list(saved_labels(tmp_path)) == ["sad", "glad"]
    write_json(tmp_path / "predictor.json", {"id2label": {"0": "sad", "2": "glad"}})
    with pytest.raises(ValueError, match=r"predictor\.json.*; run the job again$"):
        saved_labels(tmp_path)


def test_a_runs_encoders_come_from_its_config_and_its_finetuned_folders(tmp_path, monkeypatch):
    import mmsent.finetune.finetuned as finetuned
    import mmsent.run_folder as run_folder

    built, applied = [], []

    class Encoder:
        def __init__(self, modality: str, first_part: Encoder | None = None) -> None:
            self.modality, self.first_part = modality, first_part

        @property
        def tunable(self) -> Encoder:  # as a combined text encoder: its first part is the one fine-tuned
            return self.first_part or self

    first_text_part = Encoder("text")

    def build(encoders, cache_dir):
        built.append((encoders.device, cache_dir))
        return Encoder("image"), Encoder("text", first_text_part)

    monkeypatch.setattr(run_folder, "create_encoders_from_config", build)
    monkeypatch.setattr(finetuned, "apply_finetuned", lambda encoder, folder: applied.append((encoder, folder)))
    cfg = load_config(overrides=[f"cache_dir={tmp_path / 'cache'}"])
    run = _hand_made_run(tmp_path, ["concat_seed0"])
    loaded = load_run_models(run, verify=False, cfg=cfg)
    image, text = loaded.encoders()
    assert (image.modality, text.modality) == ("image", "text") and applied == []
    loaded.encoders("cuda:1")
    assert built == [("cpu", tmp_path / "cache" / "models"), ("cuda:1", tmp_path / "cache" / "models")]
    cfg.finetune.enabled = True
    with pytest.raises(FileNotFoundError) as err:
        load_run_encoders(run, cfg)
    assert str(err.value) == f"{run / 'finetune.json'} not found: the run's fine-tuning did not finish; run it again"
    write_json(run / "finetune.json", {"image": {"dir": "finetuned/image"}, "text": {"dir": None}})
    image, _ = loaded.encoders()
    assert applied == [(image, run / "finetuned" / "image")]
    write_json(run / "finetune.json", {"text": {"dir": "finetuned/text"}})  # only the text encoder was fine-tuned
    load_run_encoders(run, cfg)
    assert applied[1:] == [(first_text_part, run / "finetuned" / "text")]  # the part that was fine-tuned


# --- what a run folder loads, and each refusal's exact words (from the mutation run's survivors) ---

RERUN_FIX = "run the job again"


def _ensemble_run(tmp_path: Path) -> Path:
    """A run whose predictor averages two designs: concat (seeds 0, 1) and gated (seed 0)."""
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(run / "config.yaml")
    models = ["concat_seed0", "concat_seed1", "gated_seed0"]
    for name in models:
        design, _, seed = name.partition("_seed")
        save_model(create_fusion_model(design, 4, 4), model_dir(run, design, int(seed)))
    write_json(run / "predictor.json", {"members": ["concat", "gated"], "models": models, "name": "ensemble"})
    return run


@pytest.mark.parametrize(("model_name", "name", "seeds", "designs"), [
    (None, "ensemble", [0, 1], ["concat", "gated"]),
    ("ensemble", "ensemble", [0, 1], ["concat", "gated"]),
    ("gated", "gated", [0], ["gated"]),
    ("concat", "concat", [0, 1], ["concat"]),
])
def test_a_run_loads_its_predictor_or_only_the_named_designs_models(tmp_path, model_name, name, seeds, designs):
    from mmsent.labels import LABELS

    run = _ensemble_run(tmp_path)
    loaded = load_run_models(run, model_name=model_name, verify=False)
    assert (loaded.run_dir, loaded.name, loaded.seeds, loaded.designs) == (run, name, seeds, designs)
    assert [m.fusion_name for m in loaded.models] == [d for d in ("concat", "concat", "gated") if d in designs]
    assert list(loaded.labels) == list(LABELS) and loaded.folds == 1


def test_a_design_the_run_saved_no_models_of_is_named(tmp_path):
    run = _ensemble_run(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_run_models(run, model_name="attention", verify=False)
    assert str(err.value) == (f"{run}: no saved attention models; the run saved only its predictor's members "
                              "(see predictor.json)")


def test_models_load_onto_the_device_asked_for(tmp_path):
    run = _hand_made_run(tmp_path, ["concat_seed0", "concat_seed1"])
    loaded = load_run_models(run, verify=False, device="meta")  # no memory, but a device other than the default
    assert {p.device.type for m in loaded.models for p in m.parameters()} == {"meta"}


def test_a_folder_that_is_not_a_run_is_named_with_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_run_models(tmp_path)
    assert str(err.value) == (f"{tmp_path / 'config.yaml'} not found; is {tmp_path} a run directory? (`mmsent run "
                              "--out RUN_DIR` makes one)")


def _predictor_path(run: Path) -> str:
    return str(run / "predictor.json")


@pytest.mark.parametrize(("predictor", "words"), [
    ({"members": ["concat"], "models": {"concat_seed0": 1}},
     "'models' must list folder names like gated_seed0 or gated_fold0_seed0"),
    ({"members": ["concat"], "models": "concat_seed0"},
     "'models' must list folder names like gated_seed0 or gated_fold0_seed0"),
    ({"members": ["concat"], "models": []}, "'models' must list folder names like gated_seed0 or gated_fold0_seed0"),
    ({"members": ["concat"], "models": ["concat_seed0", "concat_seed0"]}, "'models' names concat_seed0 more than once"),
    ({"members": ["concat", "gated", "attention"], "name": "concat", "models": ["concat_seed0"]},
     "'members' names gated, attention, but 'models' lists no model of it"),
    ({"members": ["gated"], "models": ["concat_seed0"]}, "concat_seed0 is a concat model, which 'members' does not name"),
    ({"members": [], "models": ["concat_seed0"]}, "'members' must be a non-empty list of model names"),
], ids=["models-a-mapping", "models-a-string", "no-models", "repeated-model", "idle-members", "stray-model",
        "no-members"])
def test_a_damaged_predictor_file_is_refused_naming_its_path_and_the_fix(tmp_path, predictor, words):
    run = _hand_made_run(tmp_path, ["concat_seed0"])
    write_json(run / "predictor.json", predictor)
    with pytest.raises(ValueError) as err:
        load_run_models(run)
    assert str(err.value) == f"{_predictor_path(run)}: {words}; {RERUN_FIX}"


def _legacy_run(tmp_path: Path, metrics: str | None) -> Path:
    """A run from before predictor.json: only metrics.json (here ``metrics``, written as is) names its models."""
    run = _hand_made_run(tmp_path, ["concat_seed1"])
    (run / "predictor.json").unlink()
    if metrics is not None:
        (run / "metrics.json").write_text(metrics, encoding="utf-8")
    return run


@pytest.mark.parametrize(("metrics", "seeds"), [
    ('{"chosen_model": "concat", "seeds": [1, 2]}', [1, 2]),
    ('{"chosen_model": "concat"}', [0]),
    ('{"chosen_model": "concat", "seeds": []}', [0]),
])
def test_a_run_from_before_predictor_files_predicts_with_the_chosen_designs_seeds(tmp_path, metrics, seeds):
    from mmsent.run_folder import prediction_files

    run = _legacy_run(tmp_path, metrics)
    assert prediction_files(run) == ["config.yaml", "metrics.json", *(
        f"models/concat_seed{s}/{f}" for s in seeds for f in ("model.json", "weights.safetensors"))]


@pytest.mark.parametrize(("metrics", "error", "message"), [
    (None, FileNotFoundError, ("{run}/predictor.json not found: the run did not finish, or the file was deleted; "
                               f"{RERUN_FIX}")),
    ('{"chosen_model": "Concat"}', FileNotFoundError,
     f"{{run}}/metrics.json names no chosen_model: the run did not finish; {RERUN_FIX}"),
    ('{"chosen_model": 3}', FileNotFoundError,
     f"{{run}}/metrics.json names no chosen_model: the run did not finish; {RERUN_FIX}"),
    ('{"chosen_model": "concat", ', ValueError,
     ("{run}/metrics.json: not readable JSON (Expecting property name enclosed in double quotes: line 1 column 28 "
      f"(char 27)); {RERUN_FIX}")),
], ids=["no-predictor-or-metrics", "bad-design-name", "not-a-name", "damaged-metrics"])
def test_a_run_that_names_no_models_says_which_file_and_what_to_do(tmp_path, metrics, error, message):
    run = _legacy_run(tmp_path, metrics)
    with pytest.raises(error) as err:
        load_run_models(run, verify=False)
    assert str(err.value) == message.format(run=run)


@pytest.mark.parametrize(("predictor", "source"), [
    (True, "predictor.json"),
    (False, "metrics.json (read because {run}/predictor.json is missing)"),
])
def test_missing_model_folders_are_all_named_with_the_file_that_names_them(tmp_path, predictor, source):
    run = _hand_made_run(tmp_path, ["concat_seed0", "concat_seed1"])
    shutil.rmtree(run / "models")
    if not predictor:
        (run / "predictor.json").unlink()
        write_json(run / "metrics.json", {"chosen_model": "concat", "seeds": [0, 1]})
    with pytest.raises(FileNotFoundError) as err:
        load_run_models(run, verify=False)
    assert str(err.value) == (f"{run}: saved model folder(s) missing: {run / 'models' / 'concat_seed0'}, "
                              f"{run / 'models' / 'concat_seed1'}, named by {source.format(run=run)}; {RERUN_FIX}")


def test_a_predictor_whose_class_names_differ_from_its_models_is_refused_naming_both(tmp_path):
    run = _hand_made_run(tmp_path, ["concat_seed0"], id2label={"0": "pos", "1": "neu", "2": "neg"})
    with pytest.raises(ValueError) as err:
        load_run_models(run, verify=False)
    assert str(err.value) == (
        f"{run / 'models' / 'concat_seed0' / 'model.json'} has labels ['positive', 'neutral', 'negative'] but "
        f"{run / 'predictor.json'} has ['pos', 'neu', 'neg']; its outputs would be mislabelled: use a model trained "
        f"on these labels; {RERUN_FIX}")


@pytest.mark.parametrize("enabled", [True, False])
def test_finetune_enabled_must_say_what_the_run_did_both_ways(tmp_path, enabled):
    # The other value would predict with other encoders than those that made the training features.
    run = _hand_made_run(tmp_path, ["concat_seed0"])
    cfg = RunConfig()
    cfg.finetune.enabled = enabled
    cfg.finetune.text.mode = "frozen"  # the default combined text encoder cannot be fine-tuned
    cfg.save(run / "config.yaml")
    if not enabled:
        write_json(run / "finetune.json", {})
    with pytest.raises(ValueError) as err:
        load_run_models(run, verify=False)
    assert str(err.value) == (
        f"{run / 'config.yaml'}: finetune.enabled is {enabled}, but the run {'has no' if enabled else 'has a'} "
        "finetune.json: its models were trained on features of the encoders as that record says; set it back, or run "
        "the job again")
