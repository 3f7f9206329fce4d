"""The small bundled sample dataset (lab format), for tests, demos and the default config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from mmsent.data.lab_format import load_lab_dataset
from mmsent.data.records import LabDataset


def sample_dataset_path() -> Path:
    """Returns the folder of the bundled sample dataset; FileNotFoundError if installed without package data."""
    # The sample ships as plain files; a zipped install would need extraction, which nothing here supports.
    path = Path(str(resources.files("mmsent").joinpath("sample_data", "lab")))
    if not (path / "train.txt").is_file():
        raise FileNotFoundError(
            f"the bundled sample dataset is missing at {path}; reinstall mmsent with its package data "
            "(pip install mmsent, or pip install -e . from a checkout)"
        )
    return path


def load_sample_dataset(**kwargs: Any) -> LabDataset:
    """Loads the bundled sample; keyword arguments go to :func:`~mmsent.data.lab_format.load_lab_dataset`."""
    return load_lab_dataset(sample_dataset_path(), **kwargs)
