"""`mmsent finetune` end to end on the tiny fixtures: what it prints and what it leaves behind."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmsent.cli import app


def test_finetune_command_reports_each_encoder_and_its_crossfitting(tmp_path, overrides):
    args = ["finetune", "--out", str(tmp_path / "run"), "-q"]
    for o in overrides + ["finetune.text.last_n=1", "finetune.image.last_n=1", "finetune.text.epochs=1",
                          "finetune.image.epochs=1", "finetune.image.crossfit_folds=2"]:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "image: last_n, best epoch 1" in result.output
    assert "out-of-fold features from 2 folds (cross-validated macro-F1 " in result.output
    assert "text: last_n, best epoch 1" in result.output
    record = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert record["image"]["crossfit"]["folds"] == 2 and "crossfit" not in record["text"]
    cross = record["image"]["crossfit"]
    assert cross["cv_metrics"]["n"] == cross["rows"]  # every training row predicted by the fold that left it out
    assert not any("predictions" in fold for fold in cross["fold_results"])  # those stay in crossfit.json
    assert len(record["image"]["crossfit"]["fold_results"]) == 2


def test_finetune_under_torchrun_needs_out(monkeypatch, overrides):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; no process group is joined before the check
    args = ["finetune", "-q"] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "give --out under torchrun: every process must write to the same run folder" in result.output


def test_finetune_checks_the_config_with_finetuning_on(tmp_path):
    # k-fold cross-fits over the run's folds: the image encoder's default 5 cross-fitting folds contradict kfold=3,
    # refused before any data is read (the config it would have written could not be loaded by `mmsent run`)
    result = CliRunner().invoke(app, ["finetune", "--set", "data.kfold=3", "--set", "encoders.text=minilm",
                                      "--out", str(tmp_path / "ft")])
    assert result.exit_code == 2, result.output
    assert "finetune.image.crossfit_folds=5 contradicts data.kfold=3" in result.output
    assert not (tmp_path / "ft").exists()
