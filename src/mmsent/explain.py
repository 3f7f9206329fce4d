"""Why a fusion model predicted what it did: modality ablation, gate values, attention maps, token importance.

Everything here works on :class:`~mmsent.fusion.base.FusionInputs` and a list of models (the seeds of one design,
whose probabilities are averaged); callers that start from raw images and texts use
:class:`mmsent.inference.RunPredictor`, which attaches words and image crops to these numbers.

Scores, per row:
  * ``modality_ablation``: drop in the probability of the predicted class when one modality's features are replaced
    by a baseline (zeros, or training means from :func:`baseline_from_features`). Works for every model.
  * ``gate``: :class:`~mmsent.fusion.gated.GatedFusion`'s gate values, summarised.
  * ``image_attention``: :class:`~mmsent.fusion.dual_stream.DualStreamFusion`'s text->image attention, averaged over
    the real text tokens, as a ``grid x grid`` map over the center-cropped image.
  * ``image_saliency`` / ``text_saliency``: gradient x input on the image cells / text token states for the
    predicted class's logit minus the mean logit. Pooled-only models read the pooled vectors, so the gradient is routed
    through them as if each pooled vector were the mean of its tokens (exact for mean pooling of text; for images
    exact whenever the grid divides the final map evenly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from mmsent.features.featureset import FeatureSet
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.single_stream import masked_mean
from mmsent.labels import LABELS

#: below this difference between the two ablation scores neither modality is called dominant
DOMINANCE_MARGIN = 0.02


@dataclass
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
    pooled = getattr(inputs, f"{modality}_pooled")
    tokens = getattr(inputs, f"{modality}_tokens")
    mask = getattr(inputs, f"{modality}_mask")
    if baseline == "zeros":
        new_pooled, new_tokens = torch.zeros_like(pooled), torch.zeros_like(tokens)
    else:
        base = baseline[modality]
        new_pooled = base.pooled.to(pooled).expand_as(pooled).clone()
        tok = base.tokens.to(tokens)
        if tok.dim() == 2 and tok.shape[0] != tokens.shape[1]:
            tok = tok.mean(0)  # a per-cell mean that does not fit this sequence: fall back to one mean token
        new_tokens = (tok.expand_as(tokens) * mask.unsqueeze(-1).to(tokens.dtype)).clone()
    fields = {f: getattr(inputs, f) for f in ("image_pooled", "image_tokens", "image_mask", "text_pooled",
                                              "text_tokens", "text_mask")}
    fields[f"{modality}_pooled"], fields[f"{modality}_tokens"] = new_pooled, new_tokens
    return FusionInputs(**fields)


@torch.inference_mode()
def ensemble_probs(models: Sequence[FusionModel], inputs: FusionInputs) -> tuple[torch.Tensor, list[dict]]:
    """Mean softmax over ``models`` ``(B, 3)``, and each model's ``last_explanation`` of this pass."""
    probs, explanations = [], []
    for model in models:
        probs.append(torch.softmax(model(inputs).float(), dim=-1))
        explanations.append(dict(model.last_explanation))
    return torch.stack(probs).mean(0), explanations


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
            logits = model(FusionInputs(ip, it, im, tp, tt, tm))
            # The target's logit against the mean logit: softmax-invariant like a log-probability, but it does
            # not saturate, so a confident prediction still gets token scores.
            logits = logits.float()
            score = (logits[rows, target.clone()] - logits.mean(-1)).sum()
            g_img, g_txt = torch.autograd.grad(score, [it, tt], allow_unused=True)
            if g_img is not None:
                image_sal += ((g_img * it).sum(-1) * im).detach().float().cpu()
            if g_txt is not None:
                text_sal += ((g_txt * tt).sum(-1) * tm).detach().float().cpu()
    return image_sal / len(models), text_sal / len(models)


def _grid(values: np.ndarray, digits: int | None = 6) -> list[list[float]] | None:
    """A square map as nested lists (row 0 at the top), or None when the cells do not form a square."""
    side = math.isqrt(values.size)
    if side * side != values.size or side == 0:
        return None
    grid = values.reshape(side, side).astype(float)
    return (grid.round(digits) if digits is not None else grid).tolist()


def dominant_modality(drops: dict[str, float], margin: float = DOMINANCE_MARGIN) -> str:
    """``"image"``/``"text"`` when removing it costs the prediction clearly more than removing the other, ``"both"``
    when both matter about equally, ``"neither"`` when removing either alone costs less than ``margin``.

    A negative drop (removing the modality *raises* the predicted probability) counts as no support.
    """
    image, text = max(drops.get("image", 0.0), 0.0), max(drops.get("text", 0.0), 0.0)
    if image < margin and text < margin:
        return "neither"
    if abs(image - text) < margin:
        return "both"
    return "image" if image > text else "text"


def explain(models: Sequence[FusionModel], inputs: FusionInputs, *, baseline: Baseline = "zeros",
            text_pooling: str = "mean", saliency: bool = True) -> list[dict[str, Any]]:
    """Per row of ``inputs``: the ensemble's probabilities and label, and the evidence for it.

    Args:
        models: the seed ensemble (same design); all in eval mode.
        inputs: one batch; rows never interact, so any batch size gives the same per-row answer.
        baseline: what an ablated modality is replaced by.
        text_pooling: how the text encoder pooled its token states (``"mean"`` or ``"cls"``), for the saliency route.
        saliency: compute gradient x input (one forward and backward pass per model).

    Returns:
        One dict per row: ``label``, ``probabilities``, ``modality_ablation``, ``dominant_modality``, ``baseline``,
        ``gate`` (or None), ``image_attention`` (grid or None), ``image_saliency`` (grid or None) and
        ``text_saliency`` (per token position; None when no model reads text).
    """
    if not models:
        raise ValueError("explain needs at least one model")
    probs, per_model = ensemble_probs(models, inputs)
    target = probs.argmax(-1)
    rows = torch.arange(len(inputs))
    p_target = probs[rows, target]
    reads = set().union(*(m.modalities for m in models))
    ablation: dict[str, torch.Tensor] = {}
    for modality in ("image", "text"):
        if modality in reads:
            ablated, _ = ensemble_probs(models, _replace(inputs, modality, baseline))
            ablation[modality] = p_target - ablated[rows, target]
        else:
            ablation[modality] = torch.zeros(len(inputs))

    gated = [(e["gate"].float().cpu(), m.explanation_info()) for m, e in zip(models, per_model) if "gate" in e]
    gates = [g for g, _ in gated]
    gate_from = gated[0][1].get("gate_from") if gated else None
    attention = [e["text_to_image_attention"].float().cpu() for e in per_model if "text_to_image_attention" in e]
    if attention:
        # Mean over the real text tokens: rows of padded tokens are zero, so dividing by the real count is exact.
        real = inputs.text_mask[:, : attention[0].shape[1]].float().cpu()
        att = torch.stack(attention).mean(0)
        image_attention = att.sum(1) / real.sum(1, keepdim=True).clamp(min=1.0)
    image_sal = text_sal = None
    if saliency:
        image_sal, text_sal = _token_saliency(models, inputs, target, text_pooling)

    out = []
    for i in range(len(inputs)):
        scores = {k: round(float(v[i]), 6) for k, v in ablation.items()}
        dominant = dominant_modality(scores)
        row: dict[str, Any] = {
            "label": LABELS[int(target[i])],
            "probabilities": {name: round(float(probs[i, k]), 6) for k, name in enumerate(LABELS)},
            "modality_ablation": scores,
            "dominant_modality": dominant,
            "baseline": "zeros" if baseline == "zeros" else "training_mean",
            "gate": None,
            "image_attention": None,
            "image_saliency": None,
            "text_saliency": None,
        }
        if gates:
            g = torch.stack([x[i] for x in gates])
            row["gate"] = {"gate_from": gate_from, "mean": round(float(g.mean()), 6),
                           "open_fraction": round(float((g > 0.5).float().mean()), 6),
                           "per_seed_mean": [round(float(x), 6) for x in g.mean(-1)]}
        if attention:
            row["image_attention"] = _grid(image_attention[i].numpy())
        if image_sal is not None and "image" in reads:
            row["image_saliency"] = _grid(image_sal[i].numpy(), digits=None)
        if text_sal is not None and "text" in reads:
            row["text_saliency"] = [float(v) for v in text_sal[i][inputs.text_mask[i].cpu()]]
        out.append(row)
    return out


def overlay_heatmap(crop: np.ndarray, cells: Sequence[Sequence[float]] | np.ndarray, alpha: float = 0.55,
                    cmap: str = "inferno") -> Image.Image:  # noqa: F821 -- PIL imported lazily
    """Draws a ``grid x grid`` map over the center-cropped image the grid cells came from.

    Values are taken by magnitude and scaled to the map's own maximum, so maps of different rows are not comparable
    in brightness, only in shape.

    Args:
        crop: ``(S, S, 3)`` uint8, the crop the image encoder saw.
        cells: the map, row 0 at the top.
        alpha: opacity of the heat-map at its maximum.
        cmap: a matplotlib colormap name.
    """
    from matplotlib import colormaps
    from PIL import Image

    values = np.abs(np.asarray(cells, dtype=np.float32))
    peak = float(values.max()) if values.size else 0.0
    values = values / peak if peak > 0 else values
    h, w = crop.shape[:2]
    # Bilinear upsampling of the cell centers, as the cells are averages over regions, not hard tiles.
    up = np.asarray(Image.fromarray(values).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    colors = colormaps[cmap](np.clip(up, 0.0, 1.0))[..., :3]
    weight = (alpha * np.clip(up, 0.0, 1.0))[..., None]
    blended = crop.astype(np.float32) / 255.0 * (1 - weight) + colors * weight
    return Image.fromarray(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))
