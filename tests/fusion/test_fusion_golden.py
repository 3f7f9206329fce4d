"""Each built-in computes the same function as when its golden outputs were recorded.

A saved model is its weights plus the code that uses them: a change to a model's layers, their order or their
arithmetic would make every saved model compute something else while still loading without error. These tests pin
the outputs (eval and seeded train mode, and the explanation tensors) of each built-in, initialised from a fixed
seed, on inputs with padding and an empty text. Regenerate on purpose only, for a model that may change meaning:
``MMSENT_UPDATE_GOLDEN=1 pytest tests/fusion/test_fusion_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mmsent.fusion import list_fusion_models

from .helpers import make_inputs, tiny_model

GOLDEN = Path(__file__).with_name("golden_outputs.json")
BUILT_INS = ["concat", "single_stream", "dual_stream", "gated", "gated_image", "gated_text", "text_only",
             "image_only"]
OVERRIDES = {"dual_stream_product": ("dual_stream", {"combine": "product"}),
             "single_stream_cls": ("single_stream", {"pool": "cls"}),
             # a dropout other than the layers' own default (0.1), so that each layer must be handed it
             "single_stream_dropout": ("single_stream", {"dropout": 0.25}),
             "dual_stream_dropout": ("dual_stream", {"dropout": 0.25})}
CASES = BUILT_INS + list(OVERRIDES)
TEXT_LENGTHS, IMAGE_LENGTHS = [10, 3, 0, 7, 1], [9, 4, 9, 1, 6]


def outputs(case: str) -> dict[str, list]:
    """Logits in eval and in seeded train mode, every explanation tensor (5 decimals), and the weights' shapes."""
    name, overrides = OVERRIDES.get(case, (case, {}))
    torch.manual_seed(0)
    model = tiny_model(name, **overrides)
    inputs = make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS, seed=3)
    with torch.no_grad():
        out = {"eval": model.eval()(inputs)}
        out.update({f"explanation.{k}": v for k, v in model.last_explanation.items()})
        torch.manual_seed(1)
        out["train"] = model.train()(inputs)
    shapes = {f"shape.{k}": [list(v.shape)] for k, v in model.state_dict().items()}  # what saved weights must fit
    return {**shapes, **{k: [round(x, 5) for x in v.flatten().tolist()] + [list(v.shape)] for k, v in out.items()}}


def test_every_built_in_has_golden_outputs() -> None:
    assert set(list_fusion_models()) == set(BUILT_INS)
    if GOLDEN.exists() and not os.environ.get("MMSENT_UPDATE_GOLDEN"):
        assert set(json.loads(GOLDEN.read_text())) == set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_outputs_match_the_recorded_ones(case: str) -> None:
    got = outputs(case)
    if os.environ.get("MMSENT_UPDATE_GOLDEN"):
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({**golden, case: got}, indent=0, sort_keys=True) + "\n")
        pytest.skip("golden outputs written")
    want = json.loads(GOLDEN.read_text())[case]
    assert set(got) == set(want)
    for key in want:
        assert got[key][-1] == want[key][-1], f"{case} {key}: shape"
        torch.testing.assert_close(torch.tensor(got[key][:-1]), torch.tensor(want[key][:-1]), atol=2e-4, rtol=1e-3,
                                   msg=lambda m, key=key: f"{case} {key}: {m}")


@pytest.mark.parametrize("name", BUILT_INS)
def test_forward_keeps_every_tensor_on_the_inputs_device(name: str) -> None:
    """On the "meta" device (shapes only) a tensor made on the CPU inside forward would fail to combine."""
    model = tiny_model(name).to("meta").eval()
    for inputs in (make_inputs(TEXT_LENGTHS, IMAGE_LENGTHS), make_inputs([0, 0], text_tokens=0)):
        for field in vars(inputs):
            setattr(inputs, field, getattr(inputs, field).to("meta"))
        assert model(inputs).device.type == "meta"
