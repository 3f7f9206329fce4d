"""Why a fusion model predicted what it did (:func:`explain`): modality ablation, gates, attention, token importance.

Works on :class:`~mmsent.fusion.base.FusionInputs` and one design's seed models; raw images and texts go through
:class:`mmsent.inference.RunPredictor`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from mmsent.features.featureset import FeatureSet, masked_mean
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.labels import LabelsLike, LabelSet, as_label_set
from mmsent.training.ensemble import decide

#: below this difference between the two ablation scores neither modality is called dominant
DOMINANCE_MARGIN = 0.02


@dataclasses.dataclass
class ModalityBaseline:
    """What a removed modality is replaced by: a pooled vector ``(D,)`` and a token vector ``(D,)`` or ``(T, D)``."""

    pooled: torch.Tensor
    tokens: torch.Tensor


Baseline = Literal["zeros"] | dict[str, ModalityBaseline]


def baseline_from_features(feats: FeatureSet) -> dict[str, ModalityBaseline]:
    """Training means per modality: the mean pooled vector and the mean real token (per cell for images)."""
    out = {}
    for name, mod in (("image", feats.image), ("text", feats.text)):
        mask = mod.mask.unsqueeze(-1).float()
        if name == "image" and bool(mod.mask.all()):
            tokens = mod.tokens.float().mean(0)  # image cells are positional: keep one mean per cell
        else:
            tokens = (mod.tokens.float() * mask).sum((0, 1)) / mask.sum().clamp(min=1.0)
        out[name] = ModalityBaseline(mod.pooled.float().mean(0), tokens)
    return out


def _replace(inputs: FusionInputs, modality: str, baseline: Baseline) -> FusionInputs:
    """``inputs`` with one modality's pooled vector and (real) tokens set to the baseline; masks kept."""
    pooled, tokens = getattr(inputs, f"{modality}_pooled"), getattr(inputs, f"{modality}_tokens")
    if baseline == "zeros":
        new_pooled, new_tokens = torch.zeros_like(pooled), torch.zeros_like(tokens)
    else:
        base = baseline[modality]
        new_pooled = base.pooled.to(pooled).expand_as(pooled).clone()
        tok = base.tokens.to(tokens)
        if tok.dim() == 2 and tok.shape[0] != tokens.shape[1]:
            tok = tok.mean(0)  # a per-cell mean that does not fit this sequence: fall back to one mean token
        mask = getattr(inputs, f"{modality}_mask").unsqueeze(-1).to(tokens.dtype)
        new_tokens = (tok.expand_as(tokens) * mask).clone()
    return dataclasses.replace(inputs, **{f"{modality}_pooled": new_pooled, f"{modality}_tokens": new_tokens})


@torch.inference_mode()
def ensemble_probs(models: Sequence[FusionModel], inputs: FusionInputs) -> tuple[torch.Tensor, list[dict]]:
    """Mean softmax over ``models`` ``(B, classes)``, and each model's ``last_explanation`` of this pass."""
    probs = torch.stack([torch.softmax(model(inputs).float(), dim=-1) for model in models]).mean(0)
    return probs, [dict(model.last_explanation) for model in models]


def output_labels(models: Sequence[FusionModel], labels: LabelsLike | None, width: int) -> LabelSet:
    """The names of the models' ``width`` outputs: ``labels``, else those the loaded models were saved with, else
    the three sentiment classes.

    Raises:
        ValueError: when that set does not name ``width`` classes.
    """
    names = as_label_set(labels if labels is not None else getattr(models[0], "label_set", None))
    if len(names) != width:
        raise ValueError(f"the models predict {width} classes, but the labels name {len(names)}: {list(names)}; "
                         "pass the run's labels")
    return names


def _token_saliency(models: Sequence[FusionModel], inputs: FusionInputs, target: torch.Tensor,
                    text_pooling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient x input on image cells ``(B, Ti)`` and text tokens ``(B, Tt)``, averaged over ``models``."""
    image_sal = torch.zeros(inputs.image_tokens.shape[:2])
    text_sal = torch.zeros(inputs.text_tokens.shape[:2])
    rows = torch.arange(len(inputs))
    for model in models:
        with torch.inference_mode(False), torch.enable_grad():
            # Clones made outside inference mode: tensors made inside it cannot be saved for backward.
            im, tm = inputs.image_mask.clone(), inputs.text_mask.clone()
            it = inputs.image_tokens.detach().clone().requires_grad_(True)
            tt = inputs.text_tokens.detach().clone().requires_grad_(True)
            # x + (f(tokens) - f(tokens).detach()) keeps the pooled value exactly while sending its gradient into
            # the tokens, so pooled-only models get token attributions too.
            img_mean = masked_mean(it, im)
            txt_pool = masked_mean(tt, tm) if text_pooling == "mean" else tt[:, 0]
            ip = inputs.image_pooled.clone() + (img_mean - img_mean.detach())
            tp = inputs.text_pooled.clone() + (txt_pool - txt_pool.detach())
            # The target's logit against the mean logit: softmax-invariant like a log-probability, but it does
            # not saturate, so a confident prediction still gets token scores.
            logits = model(FusionInputs(ip, it, im, tp, tt, tm)).float()
            score = (logits[rows, target.clone()] - logits.mean(-1)).sum()
            g_img, g_txt = torch.autograd.grad(score, [it, tt], allow_unused=True)
            for sal, grad, x, mask in ((image_sal, g_img, it, im), (text_sal, g_txt, tt, tm)):
                if grad is not None:  # None when the model does not read that modality
                    sal += ((grad * x).sum(-1) * mask).detach().float().cpu()
    return image_sal / len(models), text_sal / len(models)


def _grid(values: np.ndarray, digits: int | None = 6) -> list[list[float]] | None:
    """A square map as nested lists (row 0 at the top), or None when the cells do not form a square."""
    side = math.isqrt(values.size)
    if side * side != values.size or side == 0:
        return None
    grid = values.reshape(side, side).astype(float)
    return (grid.round(digits) if digits is not None else grid).tolist()


_WORD_START = ("\u2581", "\u0120")  # SentencePiece's "▁" and byte-level BPE's "Ġ" open a word


def word_scores(tokens: Sequence[str], scores: Sequence[float], special: set[str]) -> list[tuple[str, float]]:
    """Tokenizer pieces merged back into words, each word's score the sum of its pieces' (special tokens dropped).

    WordPiece marks a continuation (``"##girl"``); SentencePiece and byte-level BPE mark a word's start instead
    (``"▁sun"``, ``"Ġsun"``), so there a piece without the mark continues the word before it.
    """
    pairs = [(t, float(s)) for t, s in zip(tokens, scores) if t not in special]
    marks_starts = any(t.startswith(_WORD_START) for t, _ in pairs)
    words: list[tuple[str, float]] = []
    for token, score in pairs:
        if token.startswith("##") and words:
            continues, piece = True, token[2:]
        elif marks_starts:
            continues, piece = not token.startswith(_WORD_START) and bool(words), token.lstrip("".join(_WORD_START))
        else:
            continues, piece = False, token
        if continues:
            word, total = words[-1]
            words[-1] = (word + piece, total + score)
        else:  # a bare start mark ("▁" before punctuation) opens a word its next piece fills
            words.append((piece, score))
    return [(word, score) for word, score in words if word]


def gate_summary(gate_from: str | None, mean: float) -> str:
    """The gate in words: the gating modality decides how much of the other one reaches the classifier."""
    if gate_from not in ("image", "text"):
        return f"The gate lets {mean:.0%} of the signal through for this post."
    other = "text" if gate_from == "image" else "image"
    amount = "most" if mean >= 0.6 else "about half" if mean > 0.4 else "little"
    leans = f"leans on the {other}" if mean >= 0.6 else f"holds the {other} back" if mean <= 0.4 else "weighs both"
    return (f"The {gate_from} decides how much of the {other} reaches the classifier; for this post it lets {amount} "
            f"of it through ({mean:.0%}), so the model {leans}.")


def dominant_modality(drops: dict[str, float], margin: float = DOMINANCE_MARGIN) -> str:
    """``"image"``/``"text"`` when removing it costs the prediction clearly more than the other, else ``"both"``.

    ``"neither"`` when removing either alone costs less than ``margin``; a negative drop counts as no support.
    """
    image, text = max(drops.get("image", 0.0), 0.0), max(drops.get("text", 0.0), 0.0)
    if image < margin and text < margin:
        return "neither"
    if abs(image - text) < margin:
        return "both"
    return "image" if image > text else "text"


def explain(models: Sequence[FusionModel], inputs: FusionInputs, *, baseline: Baseline = "zeros",
            text_pooling: str = "mean", saliency: bool = True, labels: LabelsLike | None = None) -> list[dict[str, Any]]:
    """Per row of ``inputs``: the ensemble's probabilities and label, and the evidence for it.

    Args:
        models: the ensemble (a design's seeds, or several designs' models); all in eval mode.
        inputs: one batch; rows never interact, so any batch size gives the same per-row answer.
        baseline: what an ablated modality is replaced by.
        text_pooling: how the text encoder pooled its token states (``"mean"`` or ``"cls"``), for the saliency route.
        saliency: compute gradient x input (one forward and backward pass per model).
        labels: the class names of the models' outputs, in order (default: those the models were saved with, else
            the three sentiment classes).

    Returns:
        One dict per row: ``label``, ``probabilities``, ``dominant_modality``, ``baseline`` and
        ``modality_ablation``: drop in the predicted class's probability when a modality is replaced by the baseline;
        ``gate`` / ``image_attention`` (grid): gated fusion's gate summary / dual-stream's text->image attention;
        ``image_saliency`` (grid) / ``text_saliency`` (per token): gradient x input for the predicted logit minus the
        mean logit, routed through pooled vectors as if each were the mean of its tokens. None where absent.
    """
    if not models:
        raise ValueError("explain needs at least one model")
    probs, per_model = ensemble_probs(models, inputs)
    names = output_labels(models, labels, probs.shape[1])
    target = torch.as_tensor(decide(probs.cpu().numpy()), device=probs.device)
    rows = torch.arange(len(inputs))
    p_target = probs[rows, target]
    reads = set().union(*(m.modalities for m in models))
    ablation = {modality: torch.zeros(len(inputs)) for modality in ("image", "text")}  # zero for unread ones
    for modality in [m for m in ablation if m in reads]:
        ablated, _ = ensemble_probs(models, _replace(inputs, modality, baseline))
        ablation[modality] = p_target - ablated[rows, target]

    gates = [e["gate"].float().cpu() for e in per_model if "gate" in e]
    gate_from = next((m.explanation_info().get("gate_from") for m, e in zip(models, per_model) if "gate" in e), None)
    attention = [e["text_to_image_attention"].float().cpu() for e in per_model if "text_to_image_attention" in e]
    if attention:
        # Mean over the real text tokens: rows of padded tokens are zero, so dividing by the real count is exact.
        real = inputs.text_mask[:, : attention[0].shape[1]].float().cpu()
        image_attention = torch.stack(attention).mean(0).sum(1) / real.sum(1, keepdim=True).clamp(min=1.0)
    image_sal, text_sal = _token_saliency(models, inputs, target, text_pooling) if saliency else (None, None)

    out = []
    for i in range(len(inputs)):
        scores = {k: round(float(v[i]), 6) for k, v in ablation.items()}
        g = torch.stack([x[i] for x in gates]) if gates else None
        out.append({
            "label": names[int(target[i])],
            "probabilities": {name: round(float(probs[i, k]), 6) for k, name in enumerate(names)},
            "modality_ablation": scores,
            "dominant_modality": dominant_modality(scores),
            "baseline": "zeros" if baseline == "zeros" else "training_mean",
            "gate": None if g is None else {
                "gate_from": gate_from, "summary": gate_summary(gate_from, float(g.mean())),
                "mean": round(float(g.mean()), 6),
                "open_fraction": round(float((g > 0.5).float().mean()), 6),
                "per_seed_mean": [round(float(x), 6) for x in g.mean(-1)]},
            "image_attention": _grid(image_attention[i].numpy()) if attention else None,
            "image_saliency": _grid(image_sal[i].numpy(), digits=None) if saliency and "image" in reads else None,
            "text_saliency": ([float(v) for v in text_sal[i][inputs.text_mask[i].cpu()]]
                              if saliency and "text" in reads else None),
        })
    return out


def overlay_heatmap(crop: np.ndarray, cells: Sequence[Sequence[float]] | np.ndarray,
                    cmap: str = "viridis") -> Image.Image:  # noqa: F821 -- PIL imported lazily
    """The crop and, beside it, a ``grid x grid`` map (row 0 on top) over a dimmed grey copy of it, with a colour bar.

    A perceptual colormap (viridis: brightness rises with the value, readable in grey and by colour-blind readers) at
    full strength, so weak and strong regions are told apart, rather than a faint tint over the photo. Values are
    taken by magnitude and scaled to the map's own maximum: maps of different rows compare in shape only.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    values = np.abs(np.asarray(cells, dtype=np.float32))
    peak = float(values.max()) if values.size else 0.0
    values = values / peak if peak > 0 else values
    h, w = crop.shape[:2]
    # Bilinear upsampling of the cell centers, as the cells are averages over regions, not hard tiles.
    up = np.clip(np.asarray(Image.fromarray(values).resize((w, h), Image.Resampling.BILINEAR), np.float32), 0.0, 1.0)
    grey = crop.astype(np.float32).mean(-1, keepdims=True) / 255.0
    heat = 0.25 * grey + 0.75 * colormaps[cmap](up)[..., :3]  # the photo's shapes stay faintly visible under the map
    gap, bar_w, label_w = max(4, w // 30), max(8, w // 16), max(28, w // 6)
    canvas = Image.new("RGB", (2 * w + 2 * gap + bar_w + label_w, h), "white")
    canvas.paste(Image.fromarray(crop.astype(np.uint8)), (0, 0))
    canvas.paste(Image.fromarray(np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)), (w + gap, 0))
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar_w, 1)  # high at the top
    canvas.paste(Image.fromarray((colormaps[cmap](ramp)[..., :3] * 255).astype(np.uint8)), (2 * w + 2 * gap, 0))
    draw = ImageDraw.Draw(canvas)
    x = 2 * w + 2 * gap + bar_w + 3
    draw.text((x, 0), "high", fill="black")
    draw.text((x, h - 12), "low", fill="black")
    return canvas
