"""The interface every encoder declares, and the members callers (extraction, fine-tuning, serving) may use."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmsent.features.featureset import ModalityFeatures

ImageItem = Path | str
ImageSource = bytes | Path | str | Image.Image


class EncoderLoadError(OSError):
    """A model could not be found locally, in a weights package, or on the hub."""


class Encoder(ABC):
    """A pretrained encoder: raw inputs -> a pooled ``(N, dim)`` vector plus a ``(N, T, dim)`` token sequence and mask."""

    name: str  # registry name (or hub id / local path) it was created from
    modality: str  # "image" or "text"
    dim: int  # width of both the pooled vector and the tokens

    @property
    @abstractmethod
    def network(self) -> torch.nn.Module:
        """The module holding the weights (what fine-tuning changes and checkpoints)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the weights or the preprocessing change (feeds the cache key)."""

    @abstractmethod
    def encode(self, items: Sequence, batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        """Image paths or cleaned strings -> float32 pooled ``(N, D)``, tokens ``(N, T, D)`` and bool mask ``(N, T)``."""

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def mark_weights_changed(self) -> None:
        """Declares the weights changed in place (fine-tuning): the fingerprint then hashes the weights in memory."""
        raise NotImplementedError(f"{type(self).__name__} does not support changing its weights in place")

    @property
    def tunable(self) -> Encoder:
        """The encoder fine-tuning trains and its record names: this one; a combined encoder's first part."""
        return self


@dataclass(frozen=True)
class ImagePreprocess:
    """How an image becomes the network's input (as timm's ``pretrained_cfg``): resize, center crop, normalise."""

    input_size: int = 224  # side of the square crop the network sees
    resize_size: int = 224  # the shorter side is resized to this before the crop
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted from 0-255 pixel values
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # divisor after the mean
    resample: int = Image.Resampling.BICUBIC

    def crop(self, image: Image.Image) -> np.ndarray:
        """The ``(S, S, 3)`` uint8 center crop of an RGB image, resized so its shorter side is ``resize_size`` first.

        Only the kept region is resampled: the crop box is mapped back to the source image, one resize pass.
        """
        size, w, h = self.input_size, *image.size
        side = min(w, h) * size / self.resize_size
        left, top = (w - side) / 2, (h - side) / 2
        out = image.resize((size, size), self.resample, box=(left, top, left + side, top + side))
        return np.asarray(out, dtype=np.uint8)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 crops -> float ``(B, 3, S, S)`` input, on the crops' device."""
        x = pixels.permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def patch_map(tokens: torch.Tensor, prefix: int = 0) -> torch.Tensor:
    """A vision transformer's ``(B, T, D)`` tokens as its ``(B, D, side, side)`` patch grid: the ``prefix`` class /
    register tokens dropped, then the trailing square of patches kept."""
    patches = tokens[:, prefix:]
    side = math.isqrt(patches.shape[1])
    return patches[:, patches.shape[1] - side * side:].transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


class ImageEncoder(Encoder):
    """An image encoder: :meth:`open` and :meth:`crop`, then :meth:`encode_pixels`.

    For partial fine-tuning it is a stem, ``num_blocks`` blocks and a final layer; :meth:`forward_trunk` runs the
    frozen part below block ``split`` and :meth:`forward_top` the rest. ``num_blocks = 0``: full fine-tuning only.
    """

    modality = "image"
    preprocess: ImagePreprocess
    grid: int
    num_blocks: int = 0
    # inference runtime (see mmsent.encoders.openvino_runtime): part of the feature cache key, not of the
    # fingerprint, which describes the weights and preprocessing (fine-tuned folders are matched by it)
    backend: str = "torch"

    @abstractmethod
    def open(self, source: ImageSource, max_pixels: int | None = None, name: str = "<upload>") -> Image.Image:
        """Decodes bytes, a path or a PIL image to RGB, refusing more than ``max_pixels`` pixels."""

    @abstractmethod
    def crop(self, image: Image.Image) -> np.ndarray:
        """The ``(S, S, 3)`` uint8 center crop the network sees (its token grid tiles this crop)."""

    @abstractmethod
    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 crops -> normalised float input ``(B, 3, S, S)`` on the network's device."""

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> final feature map ``(B, dim, h, w)``."""

    @abstractmethod
    def forward_head(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map -> (pooled ``(B, dim)``, grid tokens ``(B, T, dim)``), as :meth:`encode` pools."""

    @abstractmethod
    def encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S, S, 3)`` uint8 crops -> (pooled, tokens) float32 on the CPU, in inference mode."""

    @abstractmethod
    def encode(
        self, items: Sequence[ImageItem], batch_size: int = 32, progress: bool = False, *, max_pixels: int | None = None
    ) -> ModalityFeatures:
        """Encodes image files, refusing images of more than ``max_pixels`` pixels."""

    def forward_trunk(self, x: torch.Tensor, split: int) -> torch.Tensor:
        """Normalised input -> the activations entering block ``split``."""
        raise NotImplementedError(f"{self.name} has no block split; fine-tune it with mode=full")

    def forward_top(self, x: torch.Tensor, split: int) -> torch.Tensor:
        """Activations entering block ``split`` -> final feature map."""
        raise NotImplementedError(f"{self.name} has no block split; fine-tune it with mode=full")

    def top_modules(self, split: int) -> dict[str, torch.nn.Module]:
        """Qualified name (in :attr:`network`) -> module, for blocks ``split..`` and the final layer (what trains)."""
        raise NotImplementedError(f"{self.name} has no block split; fine-tune it with mode=full")


class TextEncoder(Encoder):
    """A text encoder over a Hugging Face tokenizer and model."""

    modality = "text"
    max_length: int  # tokens per text (truncation); token outputs are padded to exactly this length
    pooling: str  # "mean" (masked mean of the token states) or "cls"
    tokenizer: object

    @abstractmethod
    def tokens(self, text: str) -> list[str]:
        """The tokenizer's tokens for ``text``; position ``i`` is token state ``i`` of :meth:`encode`."""

    @property
    @abstractmethod
    def special_tokens(self) -> set[str]:
        """Tokens such as ``[CLS]`` that carry no word of the text."""

    @abstractmethod
    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states ``(B, L, dim)`` and mask ``(B, L)`` -> the pooled vector, as :meth:`encode` pools."""
