"""The CLI's front door: --set on every command that reads a config, --json for one post, and cheap mistakes (an
unknown design, a missing image) refused before anything heavy loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mmsent.inference as inference
import mmsent.pipeline as pipeline
import mmsent.run_folder as run_folder
from mmsent.cli import app

runner = CliRunner()

# Commands that build a config for new work: a bad key in --set is refused, naming it, before anything runs.
USER_CONFIG_COMMANDS = {
    "run": [], "validate": [], "prepare": ["--out", "{tmp}/p"], "extract": [], "train": ["concat"],
    "compare": [], "finetune": ["--out", "{tmp}/f"], "tune": ["--out", "{tmp}/t"],
    "predict": ["{run}", "--out", "{tmp}/pred.txt"], "evaluate": ["{run}"],
}
# Commands on a finished run: --set may change how it runs, never what it answers.
RUN_CONFIG_COMMANDS = {
    "serve": ["{run}"], "report": ["{run}"], "track": ["{run}"], "evaluate": ["{run}"],
    "predict": ["{run}", "--image", "{image}", "--text", "rain again"],
    "predict --input": ["{run}", "--input", "{tmp}/m.csv", "--out", "{tmp}/o.jsonl"],
    "predict --data": ["{run}", "--out", "{tmp}/p.txt"],
}


def _args(template: list[str], tiny_run, tmp_path) -> list[str]:
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    return [a.format(run=tiny_run, tmp=tmp_path, image=image) for a in template]


@pytest.mark.parametrize("command", sorted(USER_CONFIG_COMMANDS))
def test_every_command_building_a_config_takes_set(command, tiny_run, tmp_path):
    args = [command, *_args(USER_CONFIG_COMMANDS[command], tiny_run, tmp_path), "--set", "training.lrr=0.1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "config error" in result.output and "training.lrr" in result.output and "did you mean 'lr'" in result.output


@pytest.mark.parametrize("command", sorted(RUN_CONFIG_COMMANDS))
def test_every_command_on_a_finished_run_takes_set_but_refuses_what_changes_answers(command, tiny_run, tmp_path):
    (tmp_path / "m.csv").write_text("id,text,image\n1,rain,x.jpg\n")
    args = [command.split()[0], *_args(RUN_CONFIG_COMMANDS[command], tiny_run, tmp_path)]
    result = runner.invoke(app, [*args, "--set", "cleaning.lowercase=true"])
    assert result.exit_code == 2, result.output
    assert "cleaning.lowercase: the run was trained with False, not True" in result.output
    assert "encoders.device" in result.output  # what may be set instead
    bad_key = runner.invoke(app, [*args, "--set", "encoders.devise=cpu"])
    assert bad_key.exit_code == 2 and "did you mean 'device'" in bad_key.output


def test_runtime_settings_are_taken_and_json_gives_the_pipeline_answer(tiny_run, tmp_path):
    import mmsent

    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    result = runner.invoke(app, ["predict", str(tiny_run), "--image", str(image), "--text", "rain again", "--json",
                                 "--set", "encoders.batch_size=2", "--set", "encoders.device=cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == mmsent.load(tiny_run)(image, "rain again")
    # the config the run was trained with may be given again: only keys that differ are refused
    same = runner.invoke(app, ["predict", str(tiny_run), "--image", str(image), "--text", "rain again", "--json",
                               "--config", str(tiny_run / "config.yaml")])
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout) == json.loads(result.stdout)


def _fail(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran before the cheap checks")

    return fail


def test_an_unknown_design_is_refused_before_any_data_feature_or_model_loads(tmp_path, monkeypatch):
    for name in ("load_dataset", "prepare_splits", "extract", "compare_folds"):
        monkeypatch.setattr(pipeline, name, _fail(f"pipeline.{name}"))
    result = runner.invoke(app, ["train", "concatt", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "unknown model 'concatt'" in result.output and "did you mean 'concat'" in result.output
    assert "gated_text" in result.output  # every registered name is listed
    assert not (tmp_path / "r").exists()


def test_a_missing_image_is_refused_before_the_models_load(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "load_run_models", _fail("load_run_models"))
    monkeypatch.setattr(run_folder, "load_run_models", _fail("load_run_models"))
    result = runner.invoke(app, ["predict", str(tiny_run), "--image", str(tmp_path / "missing.jpg"), "--text", "x"])
    assert result.exit_code == 1
    assert f"--image {tmp_path / 'missing.jpg'}: no such file" in result.output
    folder = runner.invoke(app, ["predict", str(tiny_run), "--image", str(tmp_path), "--text", "x"])
    assert folder.exit_code == 1 and f"--image {tmp_path}: a folder; give an image file in it" in folder.output


@pytest.mark.parametrize("key", ["encoders.device", "training.device"])
def test_a_device_this_machine_lacks_is_refused_before_the_models_load(key, tiny_run, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(inference, "load_run_models", _fail("load_run_models"))
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    for args in (["predict", str(tiny_run), "--image", str(image), "--text", "x"], ["evaluate", str(tiny_run)]):
        result = runner.invoke(app, [*args, "--set", f"{key}=cuda"])
        assert result.exit_code == 2, result.output
        assert "CUDA is not available here" in result.output


def test_a_run_trained_on_a_gpu_predicts_on_this_cpu_with_a_warning(tiny_run, tmp_path):
    import shutil

    import torch

    from mmsent.run_folder import seal_run

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    seal_run(run)  # a run folder made on a GPU machine, as it arrives here
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    result = runner.invoke(app, ["predict", str(run), "--image", str(image), "--text", "rain again", "--json"])
    assert result.exit_code == 0, result.output
    assert "predicting on the CPU" in result.output and json.loads(result.stdout)["label"]
    asked = runner.invoke(app, ["predict", str(run), "--image", str(image), "--text", "x", "--set",
                                "encoders.device=cuda"])
    assert asked.exit_code == 2 and "CUDA is not available here" in asked.output
