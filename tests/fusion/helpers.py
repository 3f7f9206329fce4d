"""Small random fusion inputs for the model tests."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from mmsent.config import TrainConfig
from mmsent.fusion import FusionInputs, FusionModel, create_fusion_model, registry

IMAGE_DIM, TEXT_DIM, IMAGE_TOKENS, TEXT_TOKENS = 20, 12, 9, 10
TINY = TrainConfig(hidden_dim=16, dropout=0.1, num_layers=2, num_heads=2)


def tiny_model(name: str, **overrides) -> FusionModel:
    return create_fusion_model(name, IMAGE_DIM, TEXT_DIM, TINY, **overrides)


def make_inputs(text_lengths: Sequence[int], image_lengths: Sequence[int] | None = None, seed: int = 0,
                text_tokens: int = TEXT_TOKENS, image_tokens: int = IMAGE_TOKENS) -> FusionInputs:
    """Random features with the given numbers of real (leading) tokens per row; padding holds random junk."""
    g = torch.Generator().manual_seed(seed)
    b = len(text_lengths)
    image_lengths = image_lengths or [image_tokens] * b
    image_mask = torch.arange(image_tokens)[None, :] < torch.tensor(image_lengths)[:, None]
    text_mask = torch.arange(text_tokens)[None, :] < torch.tensor(text_lengths)[:, None]
    return FusionInputs(
        torch.randn(b, IMAGE_DIM, generator=g) * 3 + 1, torch.randn(b, image_tokens, IMAGE_DIM, generator=g),
        image_mask, torch.randn(b, TEXT_DIM, generator=g), torch.randn(b, text_tokens, TEXT_DIM, generator=g),
        text_mask,
    )


def rows(inputs: FusionInputs, idx: Sequence[int], trim: bool = False) -> FusionInputs:
    """Rows ``idx``; with ``trim``, token sequences cut to the longest real length among them."""
    i = torch.as_tensor(list(idx))
    it, im, tt, tm = inputs.image_tokens[i], inputs.image_mask[i], inputs.text_tokens[i], inputs.text_mask[i]
    if trim:
        li, lt = int(im.sum(1).max()), int(tm.sum(1).max())
        it, im, tt, tm = it[:, :li], im[:, :li], tt[:, :lt], tm[:, :lt]
    return FusionInputs(inputs.image_pooled[i], it, im, inputs.text_pooled[i], tt, tm)


def cat(a: FusionInputs, b: FusionInputs) -> FusionInputs:
    return FusionInputs(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in (
        "image_pooled", "image_tokens", "image_mask", "text_pooled", "text_tokens", "text_mask")))


@contextlib.contextmanager
def dropped_in_fusion_module(folder: Path, name: str, text: str) -> Iterator[Path]:
    """Writes ``folder/name.py`` and makes it a module of ``mmsent.fusion``, as if dropped into src/mmsent/fusion/.

    Inside the block the package path also holds ``folder`` and the registry has forgotten its discovery (so its next
    query imports the new module); afterwards the path, the registry and the import are as they were.
    """
    import mmsent.fusion as package

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(package, "__path__", [*package.__path__, str(folder)])
        mp.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        mp.setattr(registry, "_discovered", False)
        try:
            yield path
        finally:
            sys.modules.pop(f"{package.__name__}.{name}", None)
            vars(package).pop(name, None)
            sys.path_importer_cache.pop(str(folder), None)
