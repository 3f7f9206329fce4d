"""Adding a fusion model is one new module in src/mmsent/fusion/: the README's worked example, end to end.

The module text below is the example itself. The test writes it into a temporary folder that it appends to the
``mmsent.fusion`` package path, which is what dropping the file into src/mmsent/fusion/ amounts to; afterwards the
path, the registry and the import are restored.
"""

from __future__ import annotations

import json

import pytest
import torch
from fusion.helpers import dropped_in_fusion_module
from mmsent_runkit import jpeg_bytes
from mmsent_testkit import build_tiny_bert
from typer.testing import CliRunner

from mmsent.labels import LABELS
from mmsent.predict import read_predictions

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

MY_MODEL = '''\
"""My fusion model: the element-wise product of the two projected pooled vectors."""

from __future__ import annotations

import torch
from torch import nn

from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import register_fusion_model
from mmsent.labels import LABELS


@register_fusion_model("my_model")  # the name for compare.models, compare.predict_with, ...
class ProductFusion(FusionModel):
    """``logits = W(tanh(A x_image) * tanh(B x_text))`` on the pooled vectors.

    Args:
        image_dim: width of the image pooled vector.
        text_dim: width of the text pooled vector.
        hidden_dim: width of both projections.
        dropout: dropout before the classifier.
    """

    uses_tokens = False  # reads only the pooled vectors, so training need not move the token tensors
    config_fields = ("hidden_dim", "dropout")  # taken from the run's `training` section

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.image_proj = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, hidden_dim), nn.Tanh())
        self.text_proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, hidden_dim), nn.Tanh())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim, len(LABELS))

    def forward(self, inputs: FusionInputs) -> torch.Tensor:
        fused = self.image_proj(inputs.image_pooled) * self.text_proj(inputs.text_pooled)
        return self.classifier(self.dropout(fused))
'''


@pytest.fixture
def my_model(tmp_path):
    """``my_model.py`` as if it had been saved into src/mmsent/fusion/."""
    with dropped_in_fusion_module(tmp_path / "dropped_in", "my_model", MY_MODEL) as path:
        yield path


def test_the_example_is_short() -> None:
    assert len(MY_MODEL.splitlines()) < 50


def test_the_new_model_is_built_by_name(my_model) -> None:
    from mmsent.fusion.registry import create_fusion_model, list_fusion_models

    names = list_fusion_models()
    assert names[-1] == "my_model" and "concat" in names  # added models come after the built-ins
    model = create_fusion_model("my_model", 8, 6, {"hidden_dim": 16, "dropout": 0.0})
    assert type(model).__name__ == "ProductFusion" and model.fusion_name == "my_model"
    assert model.hparams == {"image_dim": 8, "text_dim": 6, "hidden_dim": 16, "dropout": 0.0}
    assert model.uses_tokens is False
    from mmsent.fusion import FusionInputs

    inputs = FusionInputs(torch.randn(2, 8), torch.zeros(2, 1, 8), torch.ones(2, 1, dtype=torch.bool),
                          torch.randn(2, 6), torch.zeros(2, 1, 6), torch.ones(2, 1, dtype=torch.bool))
    assert model(inputs).shape == (2, len(LABELS))
    # a model written for the three sentiment classes is told how to serve another task, not silently mis-sized
    assert create_fusion_model("my_model", 8, 6, num_classes=3).hparams == model.hparams | {"hidden_dim": 128,
                                                                                            "dropout": 0.2}
    with pytest.raises(TypeError, match=r"this task has 7: add `num_classes: int = 3` to its constructor"):
        create_fusion_model("my_model", 8, 6, num_classes=7)


def test_a_run_trains_saves_reports_and_serves_the_new_model(my_model, tmp_path) -> None:
    """``mmsent run`` on the bundled sample with tiny random encoders (nothing downloaded), then ``mmsent serve``."""
    from efficientnet_lite_pytorch import EfficientNet
    from fastapi.testclient import TestClient

    from mmsent.cli import app
    from mmsent.serve import create_app

    torch.manual_seed(0)
    weights = tmp_path / "lite0-random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), weights)
    bert = build_tiny_bert(tmp_path / "bert")
    settings = [
        f"cache_dir={tmp_path / 'cache'}", f"encoders.image=efficientnet-lite0:{weights}", f"encoders.text={bert}",
        "encoders.image_grid=2", "encoders.text_max_length=16", "encoders.device=cpu", "encoders.batch_size=32",
        "training.device=cpu", "training.hidden_dim=16", "training.epochs=3", "training.patience=2",
        "compare.models=my_model,concat", "compare.seeds=0,1", "compare.predict_with=my_model",
    ]
    run_dir = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: thread hand-offs cost more than they save
    try:
        result = CliRunner().invoke(app, ["run", "--out", str(run_dir), "-q",
                                          *[a for s in settings for a in ("--set", s)]])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["chosen_model"] == "my_model"

    assert sorted(p.name for p in (run_dir / "models").iterdir()) == ["my_model_seed0", "my_model_seed1"]
    rows = read_predictions(run_dir / "predictions.txt")
    assert rows and {label for _, label in rows} <= set(LABELS)
    compared = (run_dir / "comparison.md").read_text(encoding="utf-8")
    assert "my_model" in compared and "concat" in compared
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "my_model" in report
    assert "explanations unavailable" not in report  # the gallery re-loaded the saved my_model ensemble

    with TestClient(create_app(run_dir)) as client:
        response = client.post("/predict", files={"image": ("x.jpg", jpeg_bytes(96, 80, seed=1), "image/jpeg")},
                               data={"text": "happy love day"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] in LABELS and body["model"]["name"] == "my_model" and body["model"]["seeds"] == [0, 1]
