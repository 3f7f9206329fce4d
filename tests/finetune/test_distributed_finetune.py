"""`mmsent finetune` under torchrun: 2 CPU processes (gloo) fine-tune like 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from mmsent_testkit import build_tiny_bert
from safetensors.torch import load_file

from mmsent.finetune.finetuned import ENCODER_WEIGHTS

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

TOLERANCE = 1e-4  # float summation order differs; there is no dropout to differ


def _finetune(tmp_path, name: str, lab, bert, processes: int) -> dict:
    """Runs `mmsent finetune` (text last_n with 2 cross-fitting folds, image frozen); its finetune.json."""
    out = tmp_path / name
    sets = [f"data.root={lab}", "data.val_fraction=0.3", f"cache_dir={tmp_path / name}-cache",
            f"encoders.text={bert}", "encoders.text_max_length=16", "encoders.device=cpu", "training.device=cpu",
            "finetune.image.mode=frozen", "finetune.text.mode=last_n", "finetune.text.last_n=1",
            "finetune.text.epochs=2", "finetune.text.batch_size=5", "finetune.text.dropout=0",
            "finetune.text.crossfit_folds=2", "finetune.holdout_fraction=0.25", "finetune.checkpoint_every=2"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, "-m", "mmsent", "finetune", "--out", str(out), "-q"] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "finetune.json").read_text(encoding="utf-8"))


def test_two_processes_fine_tune_like_one(tmp_path, lab):
    bert = build_tiny_bert(tmp_path / "bert", dropout=0.0)
    one = _finetune(tmp_path, "one", lab, bert, 1)["text"]
    two = _finetune(tmp_path, "two", lab, bert, 2)["text"]
    assert two["result"]["best_epoch"] == one["result"]["best_epoch"]
    assert two["result"]["steps"] == one["result"]["steps"]  # the same global batches
    for got, want in zip(two["result"]["history"], one["result"]["history"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=TOLERANCE)
        assert got["val_macro_f1"] == want["val_macro_f1"]
    assert two["crossfit"]["cv_metrics"] == one["crossfit"]["cv_metrics"]
    weights_one = load_file(os.path.join(one["dir"], ENCODER_WEIGHTS))
    weights_two = load_file(os.path.join(two["dir"], ENCODER_WEIGHTS))
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, atol=TOLERANCE, rtol=TOLERANCE)
