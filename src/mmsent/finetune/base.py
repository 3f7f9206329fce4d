"""The protocol a fine-tunable encoder view follows: a frozen trunk computed once, a trainable top run every step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from mmsent.encoders.base import Encoder
from mmsent.features.featureset import ModalityFeatures


def load_partial_state(network: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Loads some of ``network``'s tensors, refusing names it does not have."""
    unknown = sorted(set(state) - set(network.state_dict()))
    if unknown:
        raise ValueError(f"tuned weights name {len(unknown)} tensors {name} lacks, e.g. {unknown[:3]}; were they made "
                         "from another encoder?")
    network.load_state_dict(state, strict=False)


class TuningAdapter(ABC):
    """Splits an encoder into a frozen trunk (run once per item) and a trainable top (run every step).

    ``mode="full"`` makes the trunk empty (the prepared rows are the model inputs); ``mode="last_n"`` freezes all but
    the last ``last_n`` layers/blocks and caches the trunk's outputs, which is what makes CPU fine-tuning affordable.
    ``encoder`` (changed in place) keeps its weights in the state dict of ``network``.
    """

    encoder: Encoder
    network: torch.nn.Module
    mode: str
    last_n: int

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @abstractmethod
    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        """Qualified name (relative to :attr:`network`, ``""`` for all of it) -> module that trains."""

    @abstractmethod
    def prepare(self, items: Sequence, batch_size: int = 32, progress: bool = False) -> list[torch.Tensor]:
        """Runs the frozen trunk once per item; returns one CPU tensor per item (its cached trunk output)."""

    @abstractmethod
    def forward(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """Trainable top on prepared rows -> pooled vectors ``(B, dim)``, the same pooling extraction uses."""

    @abstractmethod
    def features(self, rows: Sequence[torch.Tensor], batch_size: int = 64) -> ModalityFeatures:
        """Prepared rows -> features exactly as the encoder's ``encode`` makes them (eval mode, no gradients)."""

    def lengths(self, rows: Sequence[torch.Tensor]) -> list[int] | None:
        """Per-row sequence lengths for length-grouped batches; None where rows have no length (images)."""
        return None

    def layer_groups(self) -> list[list[torch.nn.Parameter]]:
        """Trainable parameters grouped bottom to top (for layer-wise lr decay); one group by default."""
        return [[p for m in self.trainable_modules().values() for p in m.parameters()]]

    def lr_groups(self, lr: float, layer_decay: float = 1.0) -> list[tuple[list[torch.nn.Parameter], float]]:
        """``(parameters, lr)`` per layer group: ``lr`` at the top, times ``layer_decay`` per group below."""
        groups = self.layer_groups()
        return [(params, lr * layer_decay ** (len(groups) - 1 - k)) for k, params in enumerate(groups)]

    def load_tuned_state(self, state: dict[str, torch.Tensor]) -> None:
        load_partial_state(self.network, state, self.encoder.name)

    def freeze(self) -> None:
        """Only the trainable modules get gradients."""
        self.network.requires_grad_(False)
        for module in self.trainable_modules().values():
            module.requires_grad_(True)

    def train(self) -> None:
        """Training mode for the trainable modules (dropout on); the frozen trunk stays in eval mode."""
        self.network.eval()
        for module in self.trainable_modules().values():
            module.train()

    def eval(self) -> None:
        self.network.eval()

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """Tensors (parameters and buffers) of the trainable modules, keyed as in ``network.state_dict()``."""
        return {f"{prefix}.{key}" if prefix else key: value
                for prefix, module in self.trainable_modules().items() for key, value in module.state_dict().items()}

    def describe(self) -> dict[str, Any]:
        trainable = sum(p.numel() for p in self.network.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.network.parameters())
        return {"mode": self.mode, "last_n": self.last_n, "trainable_params": trainable, "total_params": total}
