"""torchvision ResNet50 image encoder (the original design's), optional: needs ``pip install mmsent[resnet]``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mmsent.encoders.base import ImagePreprocess
from mmsent.encoders.efficientnet import ConvImageEncoder

logger = logging.getLogger("mmsent.encoders")

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def cached_resnet50_weights() -> Path | None:
    """The IMAGENET1K_V2 checkpoint in torch's hub cache, if it was downloaded before (no network access)."""
    from torchvision.models import ResNet50_Weights

    filename = ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


class ResNet50Encoder(ConvImageEncoder):
    """ResNet50 layer4 features (2048-d, 7x7 map at 224 px) with ImageNet normalisation.

    Args:
        pretrained: load ImageNet weights (``IMAGENET1K_V2`` from torchvision's cache, else a download where the
            network allows it); False builds a randomly initialised net (tests).
        weights_path: a local state-dict file (takes precedence over the torchvision cache).
        **others: as for :class:`~mmsent.encoders.efficientnet.ConvImageEncoder` (``grid=0`` is the full 7x7 map).
    """

    # the standard ImageNet eval transform: shorter side 256, center crop 224
    preprocess = ImagePreprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD)
    dim = 2048

    def __init__(
        self,
        *,
        grid: int = 3,
        pretrained: bool = True,
        weights_path: str | Path | None = None,
        device: str | torch.device = "auto",
        decode_workers: int = 2,
        backend: str = "torch",
    ) -> None:
        try:
            import torchvision
        except ImportError as exc:
            raise ImportError(
                "the resnet50 image encoder needs torchvision, which is not installed; run `pip install mmsent[resnet]` "
                "(or `pip install torchvision` matching your torch build)"
            ) from exc
        self.lib_versions = f"torchvision={torchvision.__version__}"
        net = torchvision.models.resnet50(weights=None)
        weights_file: Path | None = None
        if weights_path is not None:
            weights_file = Path(weights_path).expanduser()
            if not weights_file.is_file():
                raise FileNotFoundError(f"resnet50 weights file {weights_file} does not exist")
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:  # lightning / training checkpoints
                state = state["state_dict"]
            net.load_state_dict(state)
        elif pretrained:
            weights_file = cached_resnet50_weights()
            if weights_file is not None:
                net.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
            else:
                try:
                    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
                    net.load_state_dict(weights.get_state_dict(progress=False))
                except Exception as exc:
                    raise FileNotFoundError(
                        "resnet50 ImageNet weights are not in torchvision's cache and could not be downloaded "
                        f"({exc}); pass a local state dict as 'resnet50:/path/to/weights.pth' or weights_path=..., "
                        "or use the offline 'efficientnet-lite2' encoder"
                    ) from exc
                weights_file = cached_resnet50_weights()
        if weights_file is not None:
            logger.info("loaded resnet50 weights from %s", weights_file)
        net.fc = torch.nn.Identity()
        super().__init__(
            "resnet50", net, grid=grid, device=device, weights_file=weights_file, decode_workers=decode_workers,
            backend=backend,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))
