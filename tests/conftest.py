"""Fixtures shared by the report, serving and explanation tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Set by tools/mutation.py: a tiny run built once, copied for each mutant's test session instead of rebuilt.
PREBUILT_TINY_RUN = "MMSENT_TEST_PREBUILT_TINY_RUN"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (dual-stream chosen, 2 seeds) made by the real pipeline with tiny random encoders."""
    import torch
    from mmsent_runkit import build_tiny_run

    prebuilt = os.environ.get(PREBUILT_TINY_RUN)
    if prebuilt:
        base = tmp_path_factory.mktemp("tiny_run")
        shutil.copytree(Path(prebuilt).parent / "lab", base / "lab")  # the lab data beside the run, read by tests
        return Path(shutil.copytree(prebuilt, base / "run"))
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


def _labelled_run(tmp_path_factory, labels: tuple[str, ...], **kwargs) -> Path:
    import torch
    from mmsent_runkit import build_labelled_run

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_labelled_run(tmp_path_factory.mktemp(f"run{len(labels)}"), labels, **kwargs)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def seven_class_run(tmp_path_factory) -> Path:
    """A sealed 7-class run folder (TumEmo's emotions) with validation probabilities and a test_metrics.json."""
    from mmsent_runkit import EMOTIONS

    return _labelled_run(tmp_path_factory, EMOTIONS)


@pytest.fixture(scope="session")
def two_class_run(tmp_path_factory) -> Path:
    """A sealed 2-class run folder (HFM's sarcasm classes) whose test scores carry the positive class's F1."""
    from mmsent_runkit import SARCASM

    return _labelled_run(tmp_path_factory, SARCASM, positive_label="sarcastic")
