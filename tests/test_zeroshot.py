"""The zero-shot baseline's prompts come from the run's class names, can be overridden, and score those classes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mmsent_runkit import EMOTIONS, SARCASM
from mmsent_testkit import build_tiny_clip, make_examples, one_torch_thread  # noqa: F401 -- autouse fixture

from mmsent.config import CleaningConfig
from mmsent.data.text import TextCleaner
from mmsent.zeroshot import GENERIC_PROMPT, PROMPT, ZeroShotClassifier, label_prompts, zero_shot_scores


def test_prompts_are_made_from_the_class_names():
    # the sentiment classes keep the prompts every earlier baseline was scored with
    assert label_prompts() == ["a positive social media post", "a neutral social media post",
                               "a negative social media post"]
    assert label_prompts(("negative", "positive")) == ["a negative social media post", "a positive social media post"]
    assert label_prompts(EMOTIONS)[0] == "a social media post expressing angry" == GENERIC_PROMPT.format(label="angry")
    assert label_prompts(SARCASM) == ["a social media post expressing not sarcastic",
                                      "a social media post expressing sarcastic"]  # underscores read as spaces
    assert PROMPT.format(label="neutral") == "a neutral social media post"


def test_prompts_can_be_overridden_by_a_template_or_one_per_class():
    assert label_prompts(SARCASM, "a photo of a {label} post") == ["a photo of a not sarcastic post",
                                                                    "a photo of a sarcastic post"]
    own = {"not_sarcastic": "a sincere post", "sarcastic": "an ironic post"}
    assert label_prompts(SARCASM, own) == ["a sincere post", "an ironic post"]
    with pytest.raises(ValueError, match=r"has no \{label\}"):
        label_prompts(SARCASM, "a social media post")
    with pytest.raises(ValueError, match=r"only \{label\}"):
        label_prompts(SARCASM, "a {label} post about {topic}")
    with pytest.raises(ValueError, match=r"missing \['sarcastic'\], not a class \['ironic'\]"):
        label_prompts(SARCASM, {"not_sarcastic": "a sincere post", "ironic": "an ironic post"})


def test_zero_shot_scores_a_seven_class_task_over_its_classes(tmp_path):
    clip = build_tiny_clip(tmp_path / "clip")
    examples = [dataclasses.replace(ex, label=EMOTIONS[i % 7]) for i, ex in enumerate(make_examples(tmp_path / "ex"))]
    clf = ZeroShotClassifier(f"hf-clip:{clip}", labels=EMOTIONS, device="cpu")
    assert clf.prompts == label_prompts(EMOTIONS)
    probs = clf.predict_proba([ex.image_path for ex in examples], [ex.text for ex in examples], batch_size=2)
    for p in probs.values():
        assert p.shape == (len(examples), 7) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    rows = zero_shot_scores(f"hf-clip:{clip}", examples, TextCleaner(CleaningConfig()), labels=EMOTIONS,
                            prompt="a {label} photo", positive_label="happy", device="cpu")
    assert [r["name"] for r in rows] == ["zero-shot image", "zero-shot text", "zero-shot image+text"]
    for row in rows:
        assert row["labels"] == list(EMOTIONS) and list(row["per_class"]) == list(EMOTIONS)
        assert row["prompt"][0] == "a angry photo" and row["n"] == len(examples)
        assert len(row["confusion_matrix"]) == 7 and "positive_f1" in row
