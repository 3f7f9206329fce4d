"""Fine-tuning view of an image encoder: images decoded once; in ``last_n`` mode the last N blocks train.

BatchNorm layers keep their running statistics (eval mode) throughout: CPU batches of 16-32 give noisy batch
statistics, and freezing them is the usual recipe for fine-tuning with small batches. Their affine weights train.
The trunk's outputs are computed once per image (no pixel augmentation), which is what makes it affordable on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mmsent.device import inference_autocast
from mmsent.encoders.base import ImageEncoder
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter


class ImageAdapter(TuningAdapter):
    """Trunk/top split of an :class:`~mmsent.encoders.base.ImageEncoder` (its network is changed in place).

    ``mode="full"`` suits any image encoder; ``mode="last_n"`` needs one with blocks (e.g. EfficientNet): the last
    ``last_n`` blocks plus the final layer train (``last_n=0``: the final layer alone). ``max_pixels`` is the
    decompression-bomb limit handed to the image loader.
    """

    def __init__(self, encoder: ImageEncoder, mode: str = "last_n", last_n: int = 2,
                 max_pixels: int | None = None) -> None:
        self.encoder = encoder
        self.network = encoder.network
        self.mode = mode
        self.max_pixels = max_pixels
        if mode not in ("full", "last_n"):
            raise ValueError(f"image fine-tuning mode must be full or last_n here, got {mode!r}")
        if mode == "last_n" and encoder.num_blocks == 0:
            raise ValueError(f"finetune.image.mode=last_n needs an encoder with blocks (EfficientNet-Lite), not "
                             f"{encoder.name}; use mode=full or frozen")
        if mode == "last_n" and not 0 <= last_n <= encoder.num_blocks:
            raise ValueError(f"finetune.image.last_n must be 0..{encoder.num_blocks} for {encoder.name}, got {last_n}")
        self.last_n = int(last_n) if mode == "last_n" else encoder.num_blocks
        self.split = encoder.num_blocks - self.last_n  # index of the first trainable block
        self.freeze()

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        if self.mode == "full":
            return {"": self.network}
        return self.encoder.top_modules(self.split)

    def train(self) -> None:
        super().train()
        for module in self.network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

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
                decoded = pool.map(lambda p: self.encoder.crop(self.encoder.open(p, self.max_pixels)), chunk)
                pixels = torch.from_numpy(np.stack(list(decoded)))
                if self.mode == "full":
                    out.extend(pixels.unbind(0))
                else:
                    with torch.inference_mode(), inference_autocast(self.device):
                        maps = self.encoder.forward_trunk(self.encoder.normalize(pixels), self.split).float().cpu()
                    out.extend(m.contiguous().clone() for m in maps.unbind(0))
                bar.update(len(chunk))
        return out

    def _feature_map(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """Prepared rows -> the encoder's final feature map ``(B, dim, h, w)``."""
        x = torch.stack(list(rows)).to(self.device)
        if self.mode == "full":
            return self.encoder.forward_features(self.encoder.normalize(x))
        return self.encoder.forward_top(x, self.split)

    def forward(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        return self._feature_map(rows).float().mean(dim=(2, 3))

    @torch.no_grad()
    def features(self, rows: Sequence[torch.Tensor], batch_size: int = 64) -> ModalityFeatures:
        self.eval()
        pooled, tokens = [], []
        for start in range(0, len(rows), max(1, batch_size)):
            with inference_autocast(self.device):
                vec, tok = self.encoder.forward_head(self._feature_map(rows[start : start + batch_size]))
            pooled.append(vec.cpu())
            tokens.append(tok.contiguous().cpu())
        if not pooled:
            return ModalityFeatures(torch.zeros(0, self.dim), torch.zeros(0, 0, self.dim), torch.zeros(0, 0).bool())
        tok = torch.cat(tokens)
        return ModalityFeatures(torch.cat(pooled), tok, torch.ones(tok.shape[:2], dtype=torch.bool))
