"""Any timm image model as an image encoder (``timm:<name>`` or ``timm:<name>:<weights file>``).

The model is built with ``timm.create_model(name, num_classes=0)``; its own ``pretrained_cfg`` gives the input size,
crop fraction, interpolation, mean and std. CNNs (ResNet, ConvNeXt, EfficientNet, ...) give a final feature map;
vision transformers (ViT, DeiT, CLIP towers) give patch tokens after their prefix tokens, laid back out as the patch
grid. The original design's ResNet50 is ``timm:resnet50.tv_in1k`` (torchvision's ImageNet weights; the ``resnet50``
alias). Needs ``pip install 'mmsent[timm]'`` (timm imports torchvision).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from mmsent.encoders.base import ImagePreprocess, patch_map
from mmsent.encoders.conv import ConvImageEncoder
from mmsent.encoders.base import EncoderLoadError

logger = logging.getLogger("mmsent.encoders")

PREFIX = "timm:"
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def timm_preprocess(cfg: dict) -> ImagePreprocess:
    """From a timm ``pretrained_cfg``: the crop, the shorter side before it (crop / crop_pct), mean and std (0-255)."""
    side = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
    return ImagePreprocess(side, max(side, int(round(side / crop_pct))), tuple(255.0 * m for m in mean),
                           tuple(255.0 * s for s in std),
                           _RESAMPLE.get(str(cfg.get("interpolation", "bicubic")), Image.Resampling.BICUBIC))


class TimmImageEncoder(ConvImageEncoder):
    """A timm model's final feature map (or patch grid) as features.

    Args:
        model_name: a timm model name, optionally with a pretrained tag (``convnext_base.fb_in22k``), or a
            ``hf-hub:`` / ``local-dir:`` source as timm reads them.
        weights_path: a local checkpoint (``.safetensors`` / ``.pth``) to load instead of the hub's weights.
        pretrained: False builds randomly initialised weights (tests, smoke runs).
        **others: as for :class:`ConvImageEncoder`.
    """

    def __init__(self, model_name: str, *, weights_path: str | Path | None = None, pretrained: bool = True,
                 grid: int = 3, device: str | torch.device = "auto", decode_workers: int = 2,
                 backend: str = "torch") -> None:
        try:
            import timm
        except ImportError as exc:
            raise ImportError("timm image encoders need timm (which needs torchvision): pip install 'mmsent[timm]'"
                              ) from exc
        weights = Path(weights_path).expanduser() if weights_path is not None else None
        if weights is not None and not weights.is_file():
            raise FileNotFoundError(f"timm weights file {weights} does not exist")
        overlay = {"file": str(weights)} if weights is not None else None
        try:
            model = timm.create_model(model_name, pretrained=pretrained or weights is not None, num_classes=0,
                                      pretrained_cfg_overlay=overlay)
        except RuntimeError as exc:  # timm's "Unknown model" and state-dict mismatches
            raise EncoderLoadError(f"timm model {model_name!r} could not be built: {exc}") from exc
        except OSError as exc:
            raise EncoderLoadError(f"timm model {model_name!r}: its weights are not in the hub cache and the hub is "
                                   f"unreachable ({exc}); pass a local file as timm:{model_name}:/path/to/weights."
                                   "safetensors") from exc
        self.model = model.eval()
        self.preprocess = timm_preprocess(model.pretrained_cfg)
        with torch.no_grad():
            side = self.preprocess.input_size
            fmap = self.forward_features(torch.zeros(1, 3, side, side))
        self.dim, map_side = int(fmap.shape[1]), int(fmap.shape[2])
        self.stride = side / map_side
        self.lib_versions = f"timm={timm.__version__}"
        name = f"{PREFIX}{model_name}" + (f":{weights}" if weights is not None else "")
        super().__init__(name, model, grid=grid, device=device, weights_file=weights, decode_workers=decode_workers,
                         backend=backend)
        logger.info("loaded %s (%d-d, %dx%d map)", name, self.dim, map_side, map_side)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_features(x)
        if out.ndim == 3:  # transformer tokens: drop the class / register tokens, lay the patches out as their grid
            return patch_map(out, getattr(self.model, "num_prefix_tokens", 0))
        if out.shape[-1] == self.model.num_features and out.shape[1] != self.model.num_features:
            return out.permute(0, 3, 1, 2)  # channels-last maps (Swin and friends)
        return out
