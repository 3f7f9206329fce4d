"""The base of CNN-style image encoders (EfficientNet-Lite, timm, Hugging Face backbones): threaded decoding,
normalisation, and the final feature map turned into a pooled vector and ``grid x grid`` tokens."""

from __future__ import annotations

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

from mmsent.data.images import check_image_size, load_image, load_image_bytes
from mmsent.device import inference_autocast, resolve_device
from mmsent.encoders.base import ImageEncoder, ImageItem, ImagePreprocess, ImageSource
from mmsent.encoders.openvino_runtime import FP32_BLOCKS, compile_features, keeps_fp32_trunk, resolve_backend
from mmsent.features.featureset import ModalityFeatures
from mmsent.fingerprint import file_digest, state_dict_digest

logger = logging.getLogger("mmsent.encoders")

# Bump when the pooling/preprocessing code changes in a way that changes outputs (part of every fingerprint).
_CODE_VERSION = 1


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
        if isinstance(source, Image.Image):  # already decoded: held to the same limits as a file
            return check_image_size(source, max_pixels, name).convert("RGB")
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
