"""Encoder factories; network modules are imported inside them, so ``import mmsent.encoders`` stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsent.encoders.names import (  # re-exported: the names' tables and errors belong to names.py
    IMAGE_ALIASES,
    IMAGE_ENCODERS,
    RESNET50_HINT,
    RETIRED_IMAGE_ENCODERS,
    SIGNAL_ALIASES,
    TEXT_ENCODERS,
    UnknownEncoderError,
    parse_image_encoder,
    text_encoder_parts,
    timm_source,
)

if TYPE_CHECKING:  # annotations only
    import torch

    from mmsent.encoders.base import Encoder

__all__ = ["IMAGE_ALIASES", "IMAGE_ENCODERS", "RESNET50_HINT", "RETIRED_IMAGE_ENCODERS", "SIGNAL_ALIASES",
           "TEXT_ENCODERS", "UnknownEncoderError", "create_encoders_from_config", "create_image_encoder",
           "create_text_encoder", "list_encoders", "timm_source"]

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
    parsed = parse_image_encoder(name)
    if parsed.source in ("hf-image", "hf-clip"):
        from mmsent.encoders.hf_image import HFImageEncoder

        kw.pop("weights_path", None)
        return HFImageEncoder(parsed.model, grid=grid, device=device, prefix=f"{parsed.source}:", **kw)
    if parsed.source == "timm":
        from mmsent.encoders.timm_image import TimmImageEncoder

        return TimmImageEncoder(parsed.model, weights_path=parsed.weights or kw.pop("weights_path", None), grid=grid,
                                pretrained=pretrained, device=device, **kw)
    from mmsent.encoders.efficientnet import EfficientNetLiteEncoder

    if parsed.weights:
        kw.setdefault("weights_path", Path(parsed.weights).expanduser())
    return EfficientNetLiteEncoder(parsed.model, grid=grid, pretrained=pretrained, device=device, **kw)


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
    names = text_encoder_parts(name, Path(name).expanduser().exists())
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
