"""Tiny random encoders and a tiny separable dataset for the fine-tuning tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmsent_runkit import write_lab_dataset
from mmsent_testkit import build_tiny_bert, one_torch_thread  # noqa: F401 -- autouse: one torch thread per test


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ft_bert"))


@pytest.fixture(scope="session")
def lite0_weights(tmp_path_factory) -> Path:
    """A random EfficientNet-Lite0 state dict file, so encoders built from config have a fixed base."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ft_lite0") / "lite0-random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), path)
    return path


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Path:
    """30 labelled + 4 unlabeled rows; texts carry their label's words, images are tinted by label."""
    return write_lab_dataset(tmp_path_factory.mktemp("ft_lab"), n_train=30, n_test=4)


@pytest.fixture
def overrides(tmp_path, tiny_bert, lite0_weights, lab) -> list[str]:
    return [
        f"data.root={lab}", "data.val_fraction=0.3", f"cache_dir={tmp_path / 'cache'}",
        f"encoders.image=efficientnet-lite0:{lite0_weights}", f"encoders.text={tiny_bert}", "encoders.image_grid=2",
        "encoders.text_max_length=16", "encoders.device=cpu", "encoders.batch_size=16", "training.device=cpu",
        "finetune.holdout_fraction=0.25", "finetune.checkpoint_every=2",
        "finetune.text.epochs=2", "finetune.text.batch_size=4", "finetune.image.epochs=2",
        "finetune.image.batch_size=4",
    ]


@pytest.fixture
def no_report(monkeypatch) -> None:
    """Runs skip the HTML report (not under test here)."""
    import mmsent.report

    monkeypatch.setattr(mmsent.report, "build_report", lambda *a, **k: None)


@pytest.fixture
def prepared_items(monkeypatch) -> dict[str, list]:
    """modality -> every item the fine-tuning adapters' trunk pass saw (image paths / cleaned texts), in order."""
    from mmsent.finetune.image import ImageAdapter
    from mmsent.finetune.text import TextAdapter

    seen: dict[str, list] = {}

    def spy(cls):
        original = cls.prepare

        def prepare(self, items, *args, **kwargs):
            seen.setdefault(self.encoder.modality, []).extend(items)
            return original(self, items, *args, **kwargs)
        return prepare

    for cls in (ImageAdapter, TextAdapter):
        monkeypatch.setattr(cls, "prepare", spy(cls))
    return seen


@pytest.fixture
def compared_features(monkeypatch) -> list:
    """The FeatureSet each ``pipeline.compare`` call of a run received."""
    from mmsent import pipeline

    seen: list = []
    real_compare = pipeline.compare
    monkeypatch.setattr(pipeline, "compare", lambda cfg_, feats, *a, **k: seen.append(feats) or
                        real_compare(cfg_, feats, *a, **k))
    return seen
