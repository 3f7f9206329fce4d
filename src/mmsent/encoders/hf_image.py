"""Any Hugging Face image backbone as an image encoder (``hf-image:<hub id or folder>``).

CNNs (ResNet, ConvNeXt, ...) give a final feature map; vision transformers (ViT, DeiT, the vision towers of CLIP and
SigLIP) give patch tokens, laid back out as the patch grid. Either way the map is pooled like the other image
encoders' (pooled vector = mean of the map, tokens = the map pooled to ``grid x grid`` cells). Preprocessing comes
from the folder's ``preprocessor_config.json`` (resize, crop, mean, std), so e.g. ``microsoft/resnet-50`` (the
original design's ResNet50, ImageNet weights, no torchvision needed) or ``openai/clip-vit-base-patch32`` work as
they were trained. Weights need the hub or a local folder: none ship offline, so the tests build tiny random ones.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from PIL import Image

from mmsent.encoders.base import ImagePreprocess, patch_map
from mmsent.encoders.conv import ConvImageEncoder
from mmsent.encoders.base import EncoderLoadError
from mmsent.encoders.hf_text import quiet_transformers

logger = logging.getLogger("mmsent.encoders")

PREFIX = "hf-image:"
CLIP_PREFIX = "hf-clip:"  # a CLIP / SigLIP model: its vision tower here, its text tower in hf_text
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}


def hf_preprocess(source: str) -> ImagePreprocess:
    """From ``preprocessor_config.json`` (a local folder, or the hub's copy): sizes, mean and std (0-1 scale)."""
    from transformers.utils import cached_file

    path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    cfg = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    size, crop = cfg.get("size", 224), cfg.get("crop_size")
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height") or 224
    if isinstance(crop, dict):
        crop = crop.get("height")
    crop = int(crop or size)
    if cfg.get("crop_pct"):  # ConvNeXt-style: resize to size / crop_pct, then crop size
        crop, size = int(size), int(round(int(size) / float(cfg["crop_pct"])))
    mean, std = cfg.get("image_mean", _IMAGENET[0]), cfg.get("image_std", _IMAGENET[1])
    resample = int(cfg.get("resample", Image.Resampling.BICUBIC))
    return ImagePreprocess(crop, max(int(size), crop), tuple(255.0 * m for m in mean), tuple(255.0 * s for s in std),
                           resample)


class HFImageEncoder(ConvImageEncoder):
    """A Hugging Face image model's final feature map (or patch grid) as features.

    Args:
        source: a hub id or a local folder holding ``config.json``, weights and ``preprocessor_config.json``.
        prefix: the registry prefix the encoder's name keeps (``hf-image:`` or ``hf-clip:``).
        **others: as for :class:`ConvImageEncoder`.
    """

    def __init__(self, source: str, *, grid: int = 3, device: str | torch.device = "auto", decode_workers: int = 2,
                 backend: str = "torch", prefix: str = PREFIX) -> None:
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            config = transformers.AutoConfig.from_pretrained(source)
            tower = _VISION_TOWERS.get(config.model_type)
            loader = getattr(transformers, tower) if tower else transformers.AutoModel
            with quiet_transformers():
                model = loader.from_pretrained(source, dtype=torch.float32)
            self.preprocess = hf_preprocess(source)
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(f"image model {source!r} could not be loaded: not a local folder with a Hugging "
                                   f"Face model, and not reachable on the hub ({type(exc).__name__}: {exc})") from exc
        self.model = model.eval()
        with torch.no_grad():
            side = self.preprocess.input_size
            fmap = self.forward_features(torch.zeros(1, 3, side, side))
        self.dim, map_side = int(fmap.shape[1]), int(fmap.shape[2])
        self.stride = side / map_side
        self.lib_versions = f"transformers={'.'.join(transformers.__version__.split('.')[:2])}"
        weights = [p for p in Path(source).glob("*.safetensors")] if Path(source).is_dir() else []
        super().__init__(f"{prefix}{source}", model, grid=grid, device=device,
                         weights_file=weights[0] if len(weights) == 1 else None, decode_workers=decode_workers,
                         backend=backend)
        logger.info("loaded %s (%s, %d-d, %dx%d map)", source, type(model).__name__, self.dim, map_side, map_side)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        states = self.model(pixel_values=x).last_hidden_state
        if states.ndim == 4:  # a CNN's (B, C, h, w) map
            return states
        return patch_map(states)  # patch tokens after any class/register tokens, as the square patch grid
