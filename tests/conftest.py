"""Fixtures shared by the report, serving and explanation tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Set by benchmarks/mutation.py: a tiny run built once, copied for each mutant's test session instead of rebuilt.
PREBUILT_TINY_RUN = "MMSENT_TEST_PREBUILT_TINY_RUN"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (dual-stream chosen, 2 seeds) made by the real pipeline with tiny random encoders."""
    import torch
    from mmsent_runkit import build_tiny_run

    prebuilt = os.environ.get(PREBUILT_TINY_RUN)
    if prebuilt:
        return Path(shutil.copytree(prebuilt, tmp_path_factory.mktemp("tiny_run") / "run"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared 2-core machine: thread hand-offs cost more than they save
    try:
        return build_tiny_run(tmp_path_factory.mktemp("tiny_run"))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_run):
    from mmsent.inference import RunPredictor

    return RunPredictor(tiny_run)
