"""Tiny randomly initialised models and synthetic images: encoder tests never download anything."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WORDS = [
    "a",
    "the",
    "dog",
    "cat",
    "park",
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


def build_tiny_bert(folder: Path, *, seed: int = 0, do_lower_case: bool = True, cased_words: bool = False) -> Path:
    """Writes a 2-layer, 32-wide random BERT plus a WordPiece tokenizer as a plain HF folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = list(WORDS) + (["Hello", "World"] if cased_words else [])
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
    )
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(str(folder))
    return folder


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Random-noise JPEGs (plus a PNG with alpha and a greyscale one) of the given sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if i % 3 == 1:
            p = folder / f"{i}.png"
            alpha = rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8)
            Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA").save(p)
        elif i % 3 == 2:
            p = folder / f"{i}.jpg"
            Image.fromarray(arr[..., 0], "L").save(p, quality=90)
        else:
            p = folder / f"{i}.jpg"
            Image.fromarray(arr, "RGB").save(p, quality=90)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_bert_other(tmp_path_factory) -> Path:
    """Same architecture and vocab, different random weights."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_other"), seed=1)


@pytest.fixture(scope="session")
def tiny_bert_cased(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_cased"), do_lower_case=False, cased_words=True)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("images"), [(64, 48), (40, 90), (100, 100), (300, 200)])


@pytest.fixture(scope="session")
def lite0_random():
    """A randomly initialised EfficientNet-Lite0 (224 px, 7x7 final map), full-map tokens."""
    import torch

    from mmsent.encoders import create_image_encoder

    torch.manual_seed(0)
    return create_image_encoder("efficientnet-lite0", grid=0, pretrained=False, device="cpu")
