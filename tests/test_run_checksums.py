"""Sealed run folders: checksums.sha256 lists every file predicting reads, and loading refuses any change by name."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsent.cli import app
from mmsent.config import RunConfig
from mmsent.fusion.registry import create_fusion_model, save_model
from mmsent.io import write_json
from mmsent.run_folder import (
    MANIFEST_FILE,
    IntegrityError,
    load_run_models,
    model_dir,
    prediction_files,
    seal_run,
    verify_run,
)

runner = CliRunner()
MODELS = ["concat_seed0", "concat_seed1"]


@pytest.fixture
def sealed(tmp_path) -> Path:
    """A run folder written with the public writers and sealed: a default config, two concat models, a predictor."""
    run = tmp_path / "run"
    run.mkdir()
    RunConfig().save(run / "config.yaml")
    for seed in (0, 1):
        save_model(create_fusion_model("concat", 4, 4), model_dir(run, "concat", seed))
    write_json(run / "predictor.json", {"members": ["concat"], "models": MODELS, "name": "concat"})
    seal_run(run)
    return run


def _lines(run: Path) -> list[str]:
    return (run / MANIFEST_FILE).read_text(encoding="utf-8").splitlines()


def test_the_seal_lists_every_file_predicting_reads_in_sha256sum_format(sealed):
    listed = [line.split("  ", 1)[1] for line in _lines(sealed)]
    assert listed == sorted(prediction_files(sealed)) == sorted(
        ["config.yaml", "predictor.json", *(f"models/{m}/{f}" for m in MODELS
                                            for f in ("model.json", "weights.safetensors"))])
    assert len(load_run_models(sealed).models) == 2
    if shutil.which("sha256sum"):  # users can check a folder without mmsent
        subprocess.run(["sha256sum", "--check", "--strict", "--quiet", MANIFEST_FILE], cwd=sealed, check=True)


def test_a_folder_without_checksums_is_refused_saying_how_to_proceed(sealed):
    (sealed / MANIFEST_FILE).unlink()  # as in a folder made before runs were sealed
    with pytest.raises(IntegrityError, match=rf"{MANIFEST_FILE} not found: .*`mmsent seal {sealed}`.*--no-verify"):
        load_run_models(sealed)


def test_verify_false_loads_an_unsealed_folder_with_a_warning(sealed, caplog):
    (sealed / MANIFEST_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="mmsent.run_folder"):
        assert len(load_run_models(sealed, verify=False).models) == 2
    warning = (f"{sealed}: not verified against {MANIFEST_FILE} (--no-verify): a damaged or edited file would change "
               "its answers without an error")
    assert [r.getMessage() for r in caplog.records if r.name == "mmsent.run_folder"] == [warning]


def test_a_model_the_predictor_names_but_the_seal_does_not_list_is_refused(sealed):
    manifest = sealed / MANIFEST_FILE
    manifest.write_text("".join(f"{line}\n" for line in _lines(sealed) if "concat_seed1" not in line))
    with pytest.raises(IntegrityError, match=r"models/concat_seed1/model\.json: read to predict, but "
                                             rf"{MANIFEST_FILE} does not list it"):
        load_run_models(sealed)


def test_a_listed_file_that_is_gone_is_named(sealed):
    (model_dir(sealed, "concat", 1) / "model.json").unlink()
    with pytest.raises(IntegrityError, match=rf"concat_seed1/model\.json: listed in {MANIFEST_FILE} but missing"):
        verify_run(sealed)


def test_only_the_chosen_design_loads_but_the_whole_seal_is_checked(sealed):
    (model_dir(sealed, "concat", 1) / "weights.safetensors").write_bytes(b"changed")
    with pytest.raises(IntegrityError, match=r"concat_seed1/weights\.safetensors: changed since the run was sealed"):
        load_run_models(sealed, model_name="concat")


@pytest.mark.parametrize(("line", "words"), [
    (f"{'0' * 64}  ../outside.txt", "outside the run folder"),
    ("not a checksum line", "line 7 is not '<sha256>  <path>': 'not a checksum line'; .*mmsent seal"),
])
def test_a_damaged_seal_is_named(sealed, line, words):
    (sealed.parent / "outside.txt").write_text("x")
    with (sealed / MANIFEST_FILE).open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(ValueError, match=words):
        load_run_models(sealed)


def test_seal_accepts_a_change_made_on_purpose(sealed):
    config = sealed / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("text_max_length: 64", "text_max_length: 32"))
    assert "text_max_length: 32" in config.read_text(encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"config\.yaml: changed since"):
        load_run_models(sealed)
    result = runner.invoke(app, ["seal", str(sealed)])
    assert result.exit_code == 0, result.output
    assert load_run_models(sealed).cfg.encoders.text_max_length == 32


def test_seal_refuses_a_folder_that_does_not_load(sealed):
    (model_dir(sealed, "concat", 0) / "model.json").write_text("{}")
    result = runner.invoke(app, ["seal", str(sealed)])
    assert result.exit_code == 1 and "model.json is not an mmsent fusion model description" in result.output


def test_a_pipeline_run_is_sealed_after_every_file_predicting_reads(tiny_run):
    verify_run(tiny_run)
    manifest = (tiny_run / MANIFEST_FILE).stat().st_mtime_ns
    assert all((tiny_run / f).stat().st_mtime_ns <= manifest for f in prediction_files(tiny_run))


def test_predict_refuses_an_unsealed_run_unless_told_not_to_verify(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (run / MANIFEST_FILE).unlink()
    post = ["--image", str(tiny_run.parent / "lab" / "data" / "130.jpg"), "--text", "sad hate awful rain"]
    refused = runner.invoke(app, ["predict", str(run), *post])
    assert refused.exit_code == 1 and "--no-verify" in refused.output and "Traceback" not in refused.output
    result = runner.invoke(app, ["predict", str(run), *post, "--no-verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].split()[0] in ("positive", "neutral", "negative")


def test_serve_passes_no_verify_to_the_loader(monkeypatch, tmp_path):
    import mmsent.inference
    import mmsent.serve  # noqa: F401 -- imported first: a first import under the patch would keep the fake for good

    asked = []

    def loader(run_dir, **kwargs):
        asked.append(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(mmsent.inference, "RunPredictor", loader)
    for flag, verify in (([], True), (["--no-verify"], False)):
        result = runner.invoke(app, ["serve", str(tmp_path), *flag])
        assert result.exit_code == 1 and "stop here" in result.output
        assert asked.pop()["verify"] is verify


def test_a_file_linked_from_outside_is_refused_even_unverified(sealed, tmp_path):
    weights = model_dir(sealed, "concat", 1) / "weights.safetensors"
    shutil.move(str(weights), tmp_path / "weights.safetensors")
    weights.symlink_to(tmp_path / "weights.safetensors")
    with pytest.raises(ValueError, match=r"concat_seed1/weights\.safetensors resolves to .*, outside the run folder"):
        load_run_models(sealed, verify=False)


def test_a_deleted_predictor_file_is_named_not_taken_from_metrics(sealed):
    write_json(sealed / "metrics.json", {"chosen_model": "concat", "seeds": [0]})
    (sealed / "predictor.json").unlink()
    with pytest.raises(IntegrityError, match=rf"predictor\.json: listed in {MANIFEST_FILE} but missing"):
        load_run_models(sealed)


@pytest.mark.parametrize("verify", [True, False])
def test_a_deeply_nested_predictor_file_is_a_named_error_not_a_recursion_crash(sealed, verify):
    (sealed / "predictor.json").write_text("[" * 100_000, encoding="utf-8")
    error = IntegrityError if verify else ValueError  # verified: named as changed, before it is parsed
    words = "predictor.json: changed since the run was sealed" if verify else \
        r"predictor\.json: not readable JSON \(nested too deeply\); run the job again"
    with pytest.raises(error, match=words):
        load_run_models(sealed, verify=verify)


def test_a_deleted_predictor_file_names_it_even_where_metrics_names_no_saved_model(sealed):
    write_json(sealed / "metrics.json", {"chosen_model": "ensemble", "seeds": [0]})  # as a pipeline run writes it
    (sealed / "predictor.json").unlink()
    with pytest.raises(IntegrityError, match=rf"predictor\.json: listed in {MANIFEST_FILE} but missing"):
        load_run_models(sealed)
    with pytest.raises(FileNotFoundError, match=r"ensemble_seed0, named by metrics\.json \(read because "
                                                r".*predictor\.json is missing\)"):
        load_run_models(sealed, verify=False)


def test_checksums_that_are_not_utf8_or_a_folder_are_named_as_such(sealed):
    manifest = sealed / MANIFEST_FILE
    manifest.write_bytes(b"\xff\xfe" + manifest.read_bytes())
    with pytest.raises(IntegrityError, match=rf"{MANIFEST_FILE}: not UTF-8 text"):
        load_run_models(sealed)
    manifest.unlink()
    manifest.mkdir()
    with pytest.raises(IntegrityError, match=rf"{MANIFEST_FILE} is a folder, not the checksums file"):
        load_run_models(sealed)


@pytest.mark.parametrize("option", ["--max-upload-mb=inf", "--memory-budget-mb=nan", "--max-batch=-1",
                                    "--max-batch-mb=0", "--body-timeout=inf", "--max-image-pixels=0",
                                    "--threads=-2", "--port=70000"])
def test_serve_refuses_a_numeric_option_out_of_range_as_a_usage_error(monkeypatch, tmp_path, option):
    import mmsent.inference

    def loader(run_dir, **kwargs):
        raise AssertionError("serve should stop before loading")

    monkeypatch.setattr(mmsent.inference, "RunPredictor", loader)
    result = runner.invoke(app, ["serve", str(tmp_path), option])
    assert result.exit_code == 2, result.output
    assert option.split("=")[0] in result.output and "Traceback" not in result.output


# --- each refusal's exact words: the file, what is wrong, and both ways out (from the mutation run's survivors) ---

def _hatch(run: Path) -> str:
    return (f"if you changed it on purpose, `mmsent seal {run}` accepts the folder as it is now; `--no-verify` "
            "(verify=False) loads it unchecked")


def _no_manifest(run: Path) -> str:
    (run / MANIFEST_FILE).unlink()
    return (f"{run / MANIFEST_FILE} not found: {run} was made by an mmsent from before runs were sealed, or the file "
            "was deleted, so nothing shows its files are those the run wrote; if you trust them, "
            f"`mmsent seal {run}` seals them as they are; `--no-verify` (verify=False) loads them unchecked")


def _manifest_a_folder(run: Path) -> str:
    (run / MANIFEST_FILE).unlink()
    (run / MANIFEST_FILE).mkdir()
    return (f"{run / MANIFEST_FILE} is a folder, not the checksums file; remove it and restore the file (rerun or "
            f"re-export the run), or {_hatch(run)}")


def _bad_line(run: Path) -> str:
    with (run / MANIFEST_FILE).open("a", encoding="utf-8") as fh:
        fh.write("not a checksum line\n")
    return (f"{run / MANIFEST_FILE}: line 7 is not '<sha256>  <path>': 'not a checksum line'; rerun or re-export "
            f"the run, or {_hatch(run)}")


def _not_utf8(run: Path) -> str:
    manifest = run / MANIFEST_FILE
    manifest.write_bytes(b"\xff" + manifest.read_bytes())
    return (f"{manifest}: not UTF-8 text ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte); "
            f"rerun or re-export the run, or {_hatch(run)}")


def _gone(run: Path) -> str:
    path = model_dir(run, "concat", 1) / "model.json"
    path.unlink()
    return f"{path}: listed in {MANIFEST_FILE} but missing; restore it (rerun or re-export the run)"


def _unlisted(run: Path) -> str:
    (run / MANIFEST_FILE).write_text("".join(f"{line}\n" for line in _lines(run) if "seed1/model.json" not in line))
    return (f"{model_dir(run, 'concat', 1) / 'model.json'}: read to predict, but {MANIFEST_FILE} does not list it "
            f"(added after the run was sealed?); remove it, or {_hatch(run)}")


def _changed(run: Path) -> str:
    import hashlib

    path = model_dir(run, "concat", 1) / "weights.safetensors"
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes() + b"\0")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    return (f"{path}: changed since the run was sealed (sha256 {actual[:12]}..., {MANIFEST_FILE} says "
            f"{expected[:12]}...), so the run would answer differently; restore it (rerun or re-export the run), or "
            f"{_hatch(run)}")


@pytest.mark.parametrize("damage", [_no_manifest, _manifest_a_folder, _bad_line, _not_utf8, _gone, _unlisted,
                                    _changed], ids=lambda f: f.__name__.strip("_"))
def test_each_refusal_names_the_file_and_the_ways_out(sealed, damage):
    expected = damage(sealed)
    with pytest.raises(IntegrityError) as err:
        load_run_models(sealed)
    assert str(err.value) == expected


def test_verifying_reads_every_byte_even_when_size_and_time_are_unchanged(sealed):
    import os

    config = sealed / "config.yaml"
    stat, text = config.stat(), config.read_text(encoding="utf-8")
    config.write_text(text.replace("lowercase: false", "lowercase: true "), encoding="utf-8")
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as a bit flipped on disk leaves them
    assert config.stat().st_size == stat.st_size and config.read_text(encoding="utf-8") != text
    with pytest.raises(IntegrityError, match=r"config\.yaml: changed since the run was sealed"):
        verify_run(sealed)


def test_a_config_edited_and_sealed_again_must_still_make_the_models_features(tmp_path):
    """`mmsent seal` accepts changed files on purpose, but not a config whose encoder or cleaning settings differ
    from those the models were trained with (their model.json keeps them): that would change answers silently."""
    import dataclasses

    import yaml

    run = tmp_path / "run"
    run.mkdir()
    cfg = RunConfig()
    cfg.save(run / "config.yaml")
    meta = {"encoders": dataclasses.asdict(cfg.encoders), "cleaning": dataclasses.asdict(cfg.cleaning)}
    for seed in (0, 1):
        save_model(create_fusion_model("concat", 4, 4), model_dir(run, "concat", seed), meta=meta)
    write_json(run / "predictor.json", {"members": ["concat"], "models": MODELS, "name": "concat"})
    seal_run(run)
    assert len(load_run_models(run).models) == 2

    def edit_and_seal(section: str, key: str, value) -> None:
        data = yaml.safe_load((run / "config.yaml").read_text())
        data[section][key] = value
        (run / "config.yaml").write_text(yaml.safe_dump(data))
        seal_run(run)

    edit_and_seal("encoders", "batch_size", 7)  # how the run runs: fine
    assert len(load_run_models(run).models) == 2
    for section, key, value in (("encoders", "text_max_length", 32), ("cleaning", "lowercase", True),
                                ("encoders", "backend", "openvino-bf16"), ("encoders", "image_grid", 2)):
        before = getattr(getattr(cfg, section), key)
        edit_and_seal(section, key, value)
        with pytest.raises(IntegrityError) as err:
            load_run_models(run)
        message = str(err.value)
        assert f"{section}.{key} is {value!r}" in message and f"with {before!r}" in message
        assert "concat_seed0" in message and "run the job again" in message
        for verify in (True, False):  # not a checksum question: refused unverified too
            with pytest.raises(IntegrityError):
                load_run_models(run, verify=verify)
        edit_and_seal(section, key, before)
    assert len(load_run_models(run).models) == 2
    # the encoders' names may change (weights moved to another path, an alias): the models then load as before
    edit_and_seal("encoders", "text", "MiniLM+e5+vader")
    assert len(load_run_models(run).models) == 2
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["finetune"]["text"]["mode"] = "frozen"
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    # a run that did not fine-tune cannot be made to predict with fine-tuned encoders, nor the other way round
    edit_and_seal("finetune", "enabled", True)
    with pytest.raises(IntegrityError, match=r"finetune\.enabled is True, but the run has no finetune\.json"):
        load_run_models(run)
