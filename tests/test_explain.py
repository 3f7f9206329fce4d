"""Explanations on tiny random fusion models: ablation, gates, attention, and gradient x input checked numerically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmsent_testkit import one_torch_thread  # noqa: F401 -- autouse: one torch thread per test

from mmsent.config import TrainConfig
from mmsent.explain import baseline_from_features, dominant_modality, explain, gate_summary, overlay_heatmap
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.fusion import FusionInputs, create_fusion_model
from mmsent.labels import LABELS

IMAGE_DIM, TEXT_DIM, GRID = 10, 8, 3
TINY = TrainConfig(hidden_dim=16, dropout=0.1, num_layers=1, num_heads=2)


def models(name: str, seeds=(0, 1), dtype=torch.float32):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(create_fusion_model(name, IMAGE_DIM, TEXT_DIM, TINY).to(dtype).eval())
    return out


def inputs(lengths=(5, 2, 7), seed=0, dtype=torch.float32) -> FusionInputs:
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), 7
    text_mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    image_tokens = torch.randn(b, GRID * GRID, IMAGE_DIM, generator=g, dtype=dtype)
    text_tokens = torch.randn(b, t, TEXT_DIM, generator=g, dtype=dtype) * text_mask.unsqueeze(-1)
    text_pooled = (text_tokens * text_mask.unsqueeze(-1)).sum(1) / text_mask.sum(1, keepdim=True)
    return FusionInputs(image_tokens.mean(1), image_tokens, torch.ones(b, GRID * GRID, dtype=torch.bool),
                        text_pooled, text_tokens, text_mask)


def row(x: FusionInputs, i: int) -> FusionInputs:
    return FusionInputs(*(getattr(x, f)[i:i + 1] for f in ("image_pooled", "image_tokens", "image_mask",
                                                            "text_pooled", "text_tokens", "text_mask")))


@pytest.mark.parametrize("name", ["concat", "gated", "single_stream", "dual_stream", "text_only", "image_only"])
def test_every_model_gets_probabilities_and_ablation(name):
    rows = explain(models(name), inputs())
    assert len(rows) == 3
    for r in rows:
        assert r["label"] in LABELS
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert set(r["modality_ablation"]) == {"image", "text"}
        assert r["dominant_modality"] in ("image", "text", "both", "neither")
    if name == "text_only":
        assert all(r["modality_ablation"]["image"] == 0 and r["image_saliency"] is None for r in rows)
    if name == "image_only":
        assert all(r["modality_ablation"]["text"] == 0 and r["text_saliency"] is None for r in rows)
    assert all((r["gate"] is not None) == (name == "gated") for r in rows)
    assert all((r["image_attention"] is not None) == (name == "dual_stream") for r in rows)


def test_gate_summary_is_a_share_in_unit_range():
    [r] = explain(models("gated"), row(inputs(), 0))
    g = r["gate"]
    assert g["gate_from"] == "image" and 0 <= g["mean"] <= 1 and 0 <= g["open_fraction"] <= 1
    assert len(g["per_seed_mean"]) == 2
    assert g["summary"] == gate_summary("image", g["mean"])


@pytest.mark.parametrize(("gate_from", "mean", "words"), [
    ("image", 0.8, "The image decides how much of the text reaches the classifier; for this post it lets most of it "
                   "through (80%), so the model leans on the text."),
    ("text", 0.2, "The text decides how much of the image reaches the classifier; for this post it lets little of it "
                  "through (20%), so the model holds the image back."),
    ("image", 0.5, "lets about half of it through (50%), so the model weighs both."),
])
def test_the_gate_is_told_in_words(gate_from, mean, words):
    assert words in gate_summary(gate_from, mean)


def test_dual_stream_attention_is_a_distribution_over_the_grid():
    for r in explain(models("dual_stream"), inputs()):
        grid = np.array(r["image_attention"])
        assert grid.shape == (GRID, GRID)
        assert grid.min() >= 0 and grid.sum() == pytest.approx(1.0, abs=1e-4)


def test_rows_are_explained_independently_of_their_batch():
    x = inputs()
    together = explain(models("dual_stream"), x)
    for i in range(3):
        [alone] = explain(models("dual_stream"), row(x, i))
        assert alone["label"] == together[i]["label"]
        np.testing.assert_allclose(alone["text_saliency"], together[i]["text_saliency"], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(alone["image_attention"], together[i]["image_attention"], atol=1e-5)
        assert len(alone["text_saliency"]) == int(x.text_mask[i].sum())


def _score(ms, x: FusionInputs, target: int) -> float:
    with torch.no_grad():
        logits = [m(x)[0] for m in ms]
    return float(np.mean([(lg[target] - lg.mean()).item() for lg in logits]))


@pytest.mark.parametrize("name", ["concat", "dual_stream"])
def test_gradient_times_input_matches_finite_differences(name):
    # Scaling token j by (1 - eps) changes the score by about eps * (grad . x_j): that is what the scores claim.
    # concat reads only pooled vectors, so this also checks the route from pooled vectors back to the tokens.
    ms = models(name, dtype=torch.float64)
    x = row(inputs(dtype=torch.float64), 0)
    [r] = explain(ms, x)
    target = LABELS.index(r["label"])
    base, eps = _score(ms, x, target), 1e-5
    for j in range(int(x.text_mask[0].sum())):
        tokens = x.text_tokens.clone()
        tokens[0, j] *= 1 - eps
        pooled = (tokens * x.text_mask.unsqueeze(-1)).sum(1) / x.text_mask.sum(1, keepdim=True)
        moved = FusionInputs(x.image_pooled, x.image_tokens, x.image_mask, pooled, tokens, x.text_mask)
        numeric = (base - _score(ms, moved, target)) / eps
        assert r["text_saliency"][j] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_training_mean_baseline():
    x = inputs()
    feats = FeatureSet(["a", "b", "c"], ModalityFeatures(x.image_pooled, x.image_tokens, x.image_mask),
                       ModalityFeatures(x.text_pooled, x.text_tokens, x.text_mask))
    base = baseline_from_features(feats)
    assert base["image"].tokens.shape == (GRID * GRID, IMAGE_DIM) and base["text"].tokens.shape == (TEXT_DIM,)
    rows = explain(models("concat"), x, baseline=base)
    assert all(r["baseline"] == "training_mean" for r in rows)
    # Ablating with the mean of these very rows is not ablating with zeros.
    zeros = explain(models("concat"), x)
    assert any(a["modality_ablation"] != b["modality_ablation"] for a, b in zip(rows, zeros))


def test_the_map_is_drawn_beside_the_image_where_it_peaks_with_a_colour_bar():
    from matplotlib import colormaps

    crop = np.full((60, 60, 3), 128, dtype=np.uint8)
    cells = [[0, 0, 0], [0, 0, 0], [0, 0, 1.0]]
    out = np.asarray(overlay_heatmap(crop, cells)).astype(int)
    assert out.shape[0] == 60 and out.shape[1] > 120
    assert (out[:, :60] == 128).all()  # the image itself, untouched, on the left
    gap = 4
    heat = out[:, 60 + gap:120 + gap]
    high, low = (np.array(colormaps["viridis"](v)[:3]) * 255 for v in (1.0, 0.0))
    assert np.abs(heat[57, 57] - (0.75 * high + 0.25 * 128)).max() < 30  # the peak cell in the top colour
    assert np.abs(heat[2, 2] - (0.75 * low + 0.25 * 128)).max() < 30  # a cold cell in the bottom colour
    bar = out[:, 120 + 2 * gap]
    assert np.abs(bar[0] - high).max() < 10 and np.abs(bar[-1] - low).max() < 10  # the bar: high on top


@pytest.mark.parametrize("drops, expected", [
    ({"image": 0.30, "text": 0.05}, "image"), ({"image": 0.0, "text": 0.2}, "text"),
    ({"image": 0.21, "text": 0.20}, "both"), ({"image": 0.0, "text": -0.04}, "neither"),
    ({"image": -0.3, "text": 0.1}, "text"),
])
def test_dominant_modality_counts_only_support(drops, expected):
    assert dominant_modality(drops) == expected


def test_the_label_is_the_argmax_of_the_mean_probabilities():
    rows = explain(models("concat"), inputs(), saliency=False)
    assert [r["label"] for r in rows] == [max(r["probabilities"], key=r["probabilities"].get) for r in rows]


def test_seven_class_probabilities_are_named_by_the_labels_given_or_saved(tmp_path):
    from mmsent.fusion import load_model, save_model
    from mmsent.labels import LabelSet

    emotions = LabelSet(("angry", "bored", "calm", "fear", "happy", "love", "sad"))
    ms = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ms.append(create_fusion_model("gated", IMAGE_DIM, TEXT_DIM, TINY, num_classes=7).eval())
    rows = explain(ms, inputs(), labels=emotions)
    assert all(list(r["probabilities"]) == list(emotions) and r["label"] in emotions for r in rows)
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for r in rows)
    # loaded models name their outputs themselves
    loaded = [load_model(save_model(m, tmp_path / f"m{i}", labels=emotions)) for i, m in enumerate(ms)]
    assert [r["probabilities"] for r in explain(loaded, inputs())] == [r["probabilities"] for r in rows]
    with pytest.raises(ValueError, match="predict 7 classes, but the labels name 3"):
        explain(ms, inputs())  # fresh models default to the three sentiment classes: refused, not mislabelled


@pytest.mark.parametrize(("tokens", "expected"), [
    # WordPiece: "##" continues the word before it
    (["[CLS]", "the", "girl", "##s", "are", "sad", "[SEP]"], [("the", 1.0), ("girls", 5.0), ("are", 4.0),
                                                              ("sad", 5.0)]),
    # SentencePiece: "▁" opens a word, so an unmarked piece continues it; a bare "▁" is filled by the next piece
    (["<s>", "▁sun", "ny", "▁day", "▁", ",", "</s>"], [("sunny", 3.0), ("day", 3.0), (",", 9.0)]),
    # byte-level BPE: "Ġ" opens a word, the first word has no mark
    (["<s>", "what", "Ġa", "Ġday", "s", "</s>"], [("what", 1.0), ("a", 2.0), ("days", 7.0)]),
])
def test_word_scores_merge_pieces_into_words_and_sum_their_scores(tokens, expected):
    from mmsent.explain import word_scores

    scores = [0.0, *range(1, len(tokens) - 1), 0.0]
    assert word_scores(tokens, scores, {"[CLS]", "[SEP]", "<s>", "</s>"}) == expected
