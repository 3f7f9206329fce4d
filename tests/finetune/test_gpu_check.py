"""benchmarks/gpu_check.py runs on a CPU too: a tiny configuration, both encoders fully fine-tuned in k-fold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a whole pipeline: not in `make test-fast`

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_the_preset_with_both_encoders_fully_finetuned_out_of_fold(tmp_path, overrides, no_report,
                                                                                   tiny_bert):
    tiny = [o for o in overrides if not o.startswith(("encoders.device", "training.device"))]
    # a combined text encoder, as the preset's mpnet+e5+vader: its first part is what fine-tunes
    sets = [*tiny, f"encoders.text={tiny_bert}+vader", "data.kfold=3", "finetune.image.crossfit_folds=3",
            "finetune.text.crossfit_folds=null", "compare.models=concat", "compare.seeds=0", "training.epochs=2", "training.hidden_dim=8",
            "finetune.text.epochs=1", "finetune.image.epochs=1", "encoders.backend=torch"]
    out = tmp_path / "check"
    args = ["--device", "cpu", "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    assert _gpu_check().main(args) == 0

    result = json.loads((out / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["peak_gpu_mib"] is None
    assert (result["folds"], result["rows"]) == (3, 30)  # every labelled row scored once, out of fold
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["f1_per_class"]) == {"negative", "neutral", "positive"}
    record = json.loads((out / "run" / "finetune.json").read_text())
    assert record["text"]["encoder"] == str(tiny_bert)
    for modality in ("image", "text"):  # both fine-tuned in full and cross-fitted over the run's 3 folds
        assert record[modality]["mode"] == "full"
        assert record[modality]["crossfit"]["folds"] == 3
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert result["accuracy"] == metrics["ensemble_validation_metrics"]["accuracy"]
    assert (out / "run" / "predictions.txt").is_file()


def test_gpu_check_refuses_cuda_where_there_is_none(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device here"):
        _gpu_check().main(["--out", str(tmp_path)])
