"""Fine-tuning view of a CNN image encoder: images decoded once; for EfficientNet, the last N blocks train.

BatchNorm layers keep their running statistics (eval mode) throughout: CPU batches of 16-32 give noisy batch
statistics, and freezing them is the usual recipe for fine-tuning with small batches. Their affine weights train.
``last_n`` has no pixel augmentation: the trunk's outputs are computed once per image, which is what makes it
affordable on a CPU. ``full`` can augment (``augment=True``: a random resized crop and flip of every training image at
every step, :mod:`mmsent.finetune.augment`), the usual recipe on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mmsent.device import inference_autocast
from mmsent.encoders.efficientnet import ConvImageEncoder, grid_tokens
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.augment import random_resized_crop_flip
from mmsent.finetune.base import TuningAdapter


class ImageAdapter(TuningAdapter):
    """Trunk/top split of a :class:`ConvImageEncoder`.

    Args:
        encoder: the image encoder (its net is changed in place).
        mode: ``"full"`` (any conv encoder) or ``"last_n"`` (EfficientNet: the last ``last_n`` blocks plus the head
            conv train; ``last_n=0`` trains the head conv alone).
        last_n: trainable blocks in ``last_n`` mode.
        max_pixels: decompression-bomb limit handed to the image loader.
        augment: random resized crop + flip of each training image per step (``mode="full"`` only).
    """

    def __init__(self, encoder: ConvImageEncoder, mode: str = "last_n", last_n: int = 2,
                 max_pixels: int | None = None, augment: bool = False) -> None:
        self.encoder = encoder
        self.network = encoder.net
        self.mode = mode
        self.max_pixels = max_pixels
        self.augment = bool(augment)
        self.training = False
        if mode not in ("full", "last_n"):
            raise ValueError(f"image fine-tuning mode must be full or last_n here, got {mode!r}")
        if self.augment and mode != "full":
            raise ValueError("finetune.image.augment needs finetune.image.mode=full: in last_n mode the frozen trunk "
                             "runs once per image, so its input cannot change from step to step")
        if mode == "last_n":
            if not all(hasattr(self.network, a) for a in ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1")):
                raise ValueError(f"finetune.image.mode=last_n needs an EfficientNet-Lite encoder, not {encoder.name}; "
                                 "use mode=full or frozen")
            n_blocks = len(self.network._blocks)
            if not 0 <= last_n <= n_blocks:
                raise ValueError(f"finetune.image.last_n must be 0..{n_blocks} for {encoder.name}, got {last_n}")
            self.last_n = int(last_n)
            self.split = n_blocks - self.last_n  # index of the first trainable block
        else:
            self.last_n = len(getattr(self.network, "_blocks", []))
            self.split = 0
        self._mean = torch.tensor(encoder.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(encoder.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.freeze()

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        if self.mode == "full":
            return {"": self.network}
        blocks = {f"_blocks.{i}": self.network._blocks[i] for i in range(self.split, len(self.network._blocks))}
        return {**blocks, "_conv_head": self.network._conv_head, "_bn1": self.network._bn1}

    def train(self) -> None:
        super().train()
        self.training = True
        for module in self.network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    def eval(self) -> None:
        super().eval()
        self.training = False

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 -> normalised float ``(B, 3, S, S)`` on the device, as extraction does."""
        x = pixels.to(self.device).permute(0, 3, 1, 2).float()
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        return x.contiguous(memory_format=torch.channels_last)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[: self.split]:
            x = block(x)  # eval mode: no drop connect
        return x

    def prepare(self, items: Sequence, batch_size: int = 32, progress: bool = False) -> list[torch.Tensor]:
        """``full``: decoded ``(S, S, 3)`` uint8 images. ``last_n``: the trunk's ``(C, h, w)`` float32 maps."""
        from tqdm.auto import tqdm

        out: list[torch.Tensor] = []
        self.eval()
        batch_size = max(1, batch_size)
        with ThreadPoolExecutor(2, thread_name_prefix="mmsent-ft-decode") as pool, \
                tqdm(total=len(items), disable=not progress, unit="img", desc="image trunk", dynamic_ncols=True) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                decoded = pool.map(lambda p: self.encoder.load(p, self.max_pixels), chunk)
                pixels = torch.from_numpy(np.stack(list(decoded)))
                if self.mode == "full":
                    out.extend(pixels.unbind(0))
                else:
                    with torch.inference_mode(), inference_autocast(self.device):
                        maps = self._trunk(self._normalise(pixels)).float().cpu()
                    out.extend(m.contiguous().clone() for m in maps.unbind(0))
                bar.update(len(chunk))
        return out

    def _feature_map(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """Prepared rows -> the encoder's final feature map ``(B, dim, h, w)``."""
        net = self.network
        x = torch.stack(list(rows)).to(self.device)
        if self.mode == "full":
            x = self._normalise(x)
            if self.augment and self.training:
                x = random_resized_crop_flip(x)
            return self.encoder.feature_map(x)
        n_blocks = len(net._blocks)
        rate = net._global_params.drop_connect_rate
        for idx in range(self.split, n_blocks):
            # Same stochastic-depth schedule as EfficientNet.extract_features (active in train mode only).
            x = net._blocks[idx](x, drop_connect_rate=rate * idx / n_blocks if rate else rate)
        return net._swish(net._bn1(net._conv_head(x)))

    def forward(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        return self._feature_map(rows).float().mean(dim=(2, 3))

    def forward_tokens(self, rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap = self._feature_map(rows).float()
        tokens = grid_tokens(fmap, self.encoder.grid)
        return fmap.mean(dim=(2, 3)), tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    @torch.no_grad()
    def features(self, rows: Sequence[torch.Tensor], batch_size: int = 64) -> ModalityFeatures:
        self.eval()
        pooled, tokens = [], []
        for start in range(0, len(rows), max(1, batch_size)):
            with inference_autocast(self.device):
                fmap = self._feature_map(rows[start : start + batch_size]).float()
            pooled.append(fmap.mean(dim=(2, 3)).cpu())
            tokens.append(grid_tokens(fmap, self.encoder.grid).contiguous().cpu())
        if not pooled:
            side = self.encoder.grid or self.encoder.map_side
            return ModalityFeatures(torch.zeros(0, self.dim), torch.zeros(0, side * side, self.dim),
                                    torch.zeros(0, side * side, dtype=torch.bool))
        tok = torch.cat(tokens)
        return ModalityFeatures(torch.cat(pooled), tok, torch.ones(tok.shape[:2], dtype=torch.bool))
