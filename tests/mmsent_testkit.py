"""Test helpers shared across test folders: tiny random models and fake encoders (nothing is downloaded)."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsent.data.records import Example
from mmsent.encoders.base import Encoder
from mmsent.features.featureset import ModalityFeatures

TEXTS = ["RT @bob: Happy day at the #park", "so sad today http://t.co/abc", "Great GAME!!", "", "love this"]

WORDS = [
    "a",
    "the",
    "dog",
    "cat",
    "park",
    "at",
    "happy",
    "sad",
    "day",
    "good",
    "bad",
    "very",
    "is",
    "in",
    "on",
    "and",
    "love",
    "hate",
    "this",
    "that",
    "what",
    "so",
    "much",
    "sun",
    "rain",
    "hello",
    "world",
    "great",
    "awful",
    "game",
    "team",
    "win",
    "lose",
    "food",
    "today",
    "tomorrow",
    "!",
    ".",
    ",",
    "?",
]


def build_tiny_bert(folder: Path, *, seed: int = 0, do_lower_case: bool = True, cased_words: bool = False,
                    extra_words: Sequence[str] = (), dropout: float = 0.1) -> Path:
    """Writes a 2-layer, 32-wide random BERT plus a WordPiece tokenizer as a plain HF folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = list(WORDS) + (["Hello", "World"] if cased_words else []) + list(extra_words)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=do_lower_case)
    else:
        tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=do_lower_case)
    assert tok.convert_tokens_to_ids("park") == vocab.index("park"), "tiny tokenizer did not take the vocab"
    tok.model_max_length = 128
    tok.save_pretrained(str(folder))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(str(folder))
    return folder


def _vec(data: bytes, dim: int, n: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha1(data).digest()[:4], "little")
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


class FakeImageEncoder(Encoder):
    """Deterministic features from the image bytes; records every call."""

    modality = "image"
    dim = 8
    network = torch.nn.Identity()  # no weights: extraction never asks for them
    backend = "torch"  # the runtime, as ImageEncoder declares it (part of the cache key)

    def __init__(self, tag: str = "v1") -> None:
        self.name = f"fake-image-{tag}"
        self.tag = tag
        self.calls: list[list[str]] = []
        self.kwargs: list[dict] = []

    def fingerprint(self) -> str:
        return f"fake-image|{self.tag}"

    def encode(self, items: Sequence, batch_size: int = 32, progress: bool = False, **kw) -> ModalityFeatures:
        self.calls.append([str(p) for p in items])
        self.kwargs.append(kw)
        tokens = (
            torch.stack([_vec(Path(p).read_bytes(), self.dim, 4) for p in items]) if items else torch.zeros(0, 4, 8)
        )
        return ModalityFeatures(tokens.mean(1), tokens, torch.ones(len(items), 4, dtype=torch.bool))


class FakeTextEncoder(Encoder):
    """Deterministic features from the text; variable-length masks like a real text encoder."""

    modality = "text"
    dim = 6
    network = torch.nn.Identity()

    def __init__(self, tag: str = "v1", max_length: int = 5) -> None:
        self.name = f"fake-text-{tag}"
        self.tag = tag
        self.max_length = max_length
        self.calls: list[list[str]] = []

    def fingerprint(self) -> str:
        return f"fake-text|{self.tag}|max_length={self.max_length}"

    def encode(self, items: Sequence[str], batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        self.calls.append(list(items))
        n, t = len(items), self.max_length
        tokens = torch.zeros(n, t, self.dim)
        mask = torch.zeros(n, t, dtype=torch.bool)
        for i, text in enumerate(items):
            k = min(t, 1 + len(text.split()))
            tokens[i, :k] = _vec(text.encode(), self.dim, k)
            mask[i, :k] = True
        pooled = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return ModalityFeatures(pooled, tokens, mask)


def make_examples(folder: Path, texts: Sequence[str] = TEXTS, seed: int = 0) -> list[Example]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, text in enumerate(texts):
        guid = str(i + 1)
        img = folder / f"{guid}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(40 + 10 * i, 50, 3), dtype=np.uint8)).save(img)
        txt = folder / f"{guid}.txt"
        txt.write_text(text, encoding="utf-8")
        out.append(Example(guid, "positive", text, "utf-8", img, txt, f"train.txt:{i + 2}"))
    return out


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Autouse where imported: tiny tensors on a busy 2-core machine run 10-50x slower with intra-op thread hand-offs."""
    from mmsent.device import torch_threads

    with torch_threads(1):
        yield


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """Writes a random two-tower CLIP (16-wide, 32 px images) with the tiny WordPiece tokenizer as a plain HF folder.

    The tokenizer hands the model only ids and mask, as CLIP's own does (a CLIP text tower takes no token types).
    """
    import json

    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    build_tiny_bert(folder, seed=seed, extra_words=["positive", "neutral", "negative"])  # the label prompts' words
    for stale in ("model.safetensors", "config.json"):
        (folder / stale).unlink()
    tok = AutoTokenizer.from_pretrained(str(folder), model_input_names=["input_ids", "attention_mask"])
    tok.save_pretrained(str(folder))
    layers = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    cfg = CLIPConfig(text_config={**layers, "vocab_size": tok.vocab_size, "max_position_embeddings": 128,
                                                  "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
                     vision_config={**layers, "image_size": 32, "patch_size": 8}, projection_dim=8)
    torch.manual_seed(seed)
    CLIPModel(cfg).eval().save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28], "resample": 3}))
    return folder


def call_unblocked(fn: Callable[[], Any], fifos: Sequence[Path], timeout: float = 10.0) -> Any:
    """``fn()``, failing the test instead of hanging if it blocks on one of ``fifos``: after ``timeout`` seconds the
    FIFOs are opened for writing and closed, which ends a blocked read with EOF."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading this one
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout)
        pytest.fail(f"blocked for {timeout:.0f}s reading a FIFO")
    if "error" in result:
        raise result["error"]
    return result["value"]


def repeated_words(text: str) -> list[str]:
    """Words written twice in a row on one line ("ensemble ensemble"), case-insensitively: a sign of text assembled
    carelessly."""
    import re

    return [m.group(0) for m in re.finditer(r"\b([A-Za-z]{2,})[ \t]+\1\b", text, flags=re.IGNORECASE)]
