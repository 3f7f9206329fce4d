"""Fine-tuning view of a Hugging Face text encoder: lower layers run once, the last N layers train.

The top runs through the model's own ``forward``: a hook replaces the embeddings' output with the cached hidden
states, and the encoder's layer list temporarily holds only the top layers. The model thus builds its own attention
mask and position handling (model- and version-specific in transformers), and the pooled vector is computed exactly
as :class:`~mmsent.encoders.hf_text.HFTextEncoder` computes it for extraction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch

from mmsent.device import inference_autocast
from mmsent.encoders.base import TextEncoder
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter

logger = logging.getLogger("mmsent.finetune")

# Where encoder-only models keep their transformer layers (BERT/RoBERTa/MPNet/..., DistilBERT, others).
_LAYER_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers")


class _TrunkDone(Exception):
    """Raised from a hook to stop the forward pass once the frozen trunk's output is captured."""


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.Module, str, torch.nn.ModuleList]:
    """``(path, owner, attribute, layers)`` of the model's transformer layer list; ValueError if it has none."""
    for path in _LAYER_PATHS:
        owner_path, _, attr = path.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        layers = getattr(owner, attr, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return path, owner, attr, layers
    raise ValueError(f"{type(model).__name__}: no transformer layer list found (looked for {', '.join(_LAYER_PATHS)});"
                     " use finetune.text.mode=full or frozen")


class TextAdapter(TuningAdapter):
    """Trunk/top split of a :class:`~mmsent.encoders.base.TextEncoder` (its model is changed in place).

    ``mode="full"`` trains the embeddings and every layer; ``"last_n"`` trains the last ``last_n`` layers (>= 1; more
    than the model has means all of them) and keeps the embeddings frozen.
    """

    def __init__(self, encoder: TextEncoder, mode: str = "last_n", last_n: int = 2) -> None:
        self.encoder = encoder
        self.network = encoder.network
        self.mode = mode
        self.layers_path, self._owner, self._attr, self._layers = find_layers(self.network)
        n_layers = len(self._layers)
        if mode == "last_n" and last_n < 1:
            raise ValueError(f"finetune.text.last_n must be >= 1 (and counts {encoder.name}'s {n_layers} layers), "
                             f"got {last_n}")
        if mode == "last_n" and last_n > n_layers:
            # The default names all of MiniLM's 6 layers; a shallower model trains all of its own.
            logger.info("finetune.text.last_n=%d > %s's %d layers: all of them train (the embeddings stay frozen)",
                        last_n, encoder.name, n_layers)
        if mode not in ("full", "last_n"):
            raise ValueError(f"text fine-tuning mode must be full or last_n here, got {mode!r}")
        self.last_n = n_layers if mode == "full" else min(int(last_n), n_layers)
        self.split = n_layers - self.last_n  # index of the first trainable layer
        if not hasattr(self.network, "embeddings"):
            raise ValueError(f"{type(self.network).__name__} has no .embeddings module; use finetune.text.mode=full")
        self.freeze()

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        if self.mode == "full":
            return {"": self.network}
        return {f"{self.layers_path}.{i}": self._layers[i] for i in range(self.split, len(self._layers))}

    def layer_groups(self) -> list[list[torch.nn.Parameter]]:
        top = [list(self._layers[i].parameters()) for i in range(self.split, len(self._layers))]
        if self.mode != "full":
            return top
        in_layers = {id(p) for group in top for p in group}
        # Embeddings (and anything else outside the layers, e.g. an unused pooler) form the bottom group.
        rest = [p for p in self.network.parameters() if id(p) not in in_layers]
        return [rest] + top

    def _padded(self, rows: Sequence[torch.Tensor], value: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows padded with ``value`` to the longest one, and the attention mask, on the device."""
        lengths = torch.tensor(self.lengths(rows))
        mask = (torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)).long()
        padded = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=value)
        return padded.to(self.device), mask.to(self.device)

    def prepare(self, items: Sequence[str], batch_size: int = 32, progress: bool = False) -> list[torch.Tensor]:
        """``full``: token ids per text. ``last_n``: the hidden states entering the first trainable layer, trimmed
        to each text's own length (float32, CPU), computed once in length-sorted batches."""
        from tqdm.auto import tqdm

        enc = self.encoder.tokenizer(["" if t is None else str(t) for t in items], truncation=True,
                                     max_length=self.encoder.max_length, padding=False)  # exactly as extraction
        ids = [torch.tensor(x, dtype=torch.long) for x in enc["input_ids"]]
        if self.mode == "full":
            return ids
        out: list[torch.Tensor | None] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)  # pad each batch to its own longest
        captured: list[torch.Tensor] = []

        def grab(_module, _inputs, output):
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _TrunkDone

        # The trunk ends at the embeddings (every layer trains) or at the last frozen layer.
        last_frozen = self.network.embeddings if self.split == 0 else self._layers[self.split - 1]
        handle = last_frozen.register_forward_hook(grab)
        self.eval()
        try:
            with tqdm(total=len(ids), disable=not progress, unit="text", desc="text trunk", dynamic_ncols=True) as bar:
                for start in range(0, len(order), max(1, batch_size)):
                    idx = order[start : start + batch_size]
                    input_ids, mask = self._padded([ids[i] for i in idx], self.encoder.tokenizer.pad_token_id)
                    captured.clear()
                    with torch.inference_mode(), inference_autocast(self.device), contextlib.suppress(_TrunkDone):
                        self.network(input_ids=input_ids, attention_mask=mask)
                    states = captured[0].float().cpu()
                    for row, i in enumerate(idx):
                        out[i] = states[row, : len(ids[i])].clone()
                    bar.update(len(idx))
        finally:
            handle.remove()
        return out  # type: ignore[return-value]

    def lengths(self, rows: Sequence[torch.Tensor]) -> list[int]:
        return [int(r.shape[0]) for r in rows]

    def _states(self, rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared rows -> last hidden states ``(B, L, dim)`` and attention mask ``(B, L)`` (L: longest row)."""
        if self.mode == "full":
            input_ids, mask = self._padded(rows, self.encoder.tokenizer.pad_token_id)
            return self.network(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask
        hidden, mask = self._padded(rows, 0.0)
        # The ids only drive the (discarded) embedding lookup; the hook substitutes the cached states, and the layer
        # list holds only the trainable layers (the same module objects) for the call.
        dummy = torch.full_like(mask, self.encoder.tokenizer.pad_token_id)
        handle = self.network.embeddings.register_forward_hook(lambda _m, _i, _o: hidden)
        setattr(self._owner, self._attr, torch.nn.ModuleList(self._layers[self.split :]))
        try:
            states = self.network(input_ids=dummy, attention_mask=mask).last_hidden_state
        finally:
            handle.remove()
            setattr(self._owner, self._attr, self._layers)
        return states, mask

    def forward(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.encoder.pool(*self._states(rows))

    @torch.no_grad()
    def features(self, rows: Sequence[torch.Tensor], batch_size: int = 64) -> ModalityFeatures:
        """As the encoder's ``encode`` returns them: tokens padded to ``max_length`` with exact zeros."""
        self.eval()
        n, width = len(rows), self.encoder.max_length
        pooled = torch.zeros(n, self.dim)
        tokens = torch.zeros(n, width, self.dim)
        out_mask = torch.zeros(n, width, dtype=torch.bool)
        order = sorted(range(n), key=lambda i: int(rows[i].shape[0]), reverse=True)
        for start in range(0, n, max(1, batch_size)):
            idx = order[start : start + batch_size]
            with inference_autocast(self.device):
                states, mask = self._states([rows[i] for i in idx])
            states = states.float()
            vec = self.encoder.pool(states, mask).cpu()
            states = (states * mask.unsqueeze(-1)).cpu()
            pooled[idx] = vec
            tokens[idx, : states.shape[1]] = states
            out_mask[idx, : states.shape[1]] = mask.bool().cpu()
        return ModalityFeatures(pooled, tokens, out_mask)
