"""Zero-shot baseline of a CLIP / SigLIP model: no training, each label is a text prompt.

A post's image and its text are each compared with the three label prompts in the model's joint embedding space;
softmax over the scaled similarities gives class probabilities per modality, and their mean the image+text ones.
The pipeline scores them on the held-out rows beside the trained models (``compare.zero_shot``), the bar a trained
fusion model has to clear.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmsent.data.images import load_image
from mmsent.data.records import Example
from mmsent.data.text import TextCleaner
from mmsent.device import resolve_device
from mmsent.encoders.hf_image import hf_preprocess
from mmsent.encoders.hf_text import EncoderLoadError
from mmsent.labels import LABELS
from mmsent.training.metrics import compute_metrics

log = logging.getLogger("mmsent.zeroshot")

PROMPT = "a {label} social media post"  # {label} is positive, neutral or negative


class ZeroShotClassifier:
    """Class probabilities from a two-tower image-text model's similarity to label prompts.

    Args:
        source: a CLIP or SigLIP model: hub id or local folder (``hf-clip:`` prefix allowed).
        prompt: the template each label fills.
        device: ``auto``/``cpu``/``cuda``.
    """

    def __init__(self, source: str, *, prompt: str = PROMPT, device: str | torch.device = "auto") -> None:
        import transformers

        self.source = source.removeprefix("hf-clip:")
        try:
            self.model = transformers.AutoModel.from_pretrained(self.source, dtype=torch.float32)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.source)
            self.preprocess = hf_preprocess(self.source)
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(f"zero-shot model {self.source!r} could not be loaded: not a local folder with a "
                                   f"CLIP / SigLIP model, and not reachable on the hub ({exc})") from exc
        if not hasattr(self.model, "get_image_features"):
            raise ValueError(f"zero-shot needs a two-tower image-text model (CLIP, SigLIP); {self.source!r} is a "
                             f"{type(self.model).__name__}")
        self.model.eval().to(resolve_device(device))
        self.device = next(self.model.parameters()).device
        self.prompts = [prompt.format(label=label) for label in LABELS]
        with torch.inference_mode():
            self.label_embeds = self._embed_texts(self.prompts)

    def _embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        # SigLIP reads its text vector at the last position and was trained on texts padded to 64 tokens
        padding = "max_length" if self.model.config.model_type == "siglip" else True
        inputs = self.tokenizer(list(texts), padding=padding, truncation=True, return_tensors="pt",
                                max_length=min(int(getattr(self.tokenizer, "model_max_length", 64)), 64))
        return _unit(self.model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()}))

    def _embed_images(self, paths: Sequence[str | Path], max_pixels: int | None) -> torch.Tensor:
        crops = [self.preprocess.crop(load_image(p, max_pixels=max_pixels, min_side=self.preprocess.resize_size))
                 for p in paths]
        pixels = self.preprocess.normalize(torch.from_numpy(np.stack(crops)).to(self.device))
        return _unit(self.model.get_image_features(pixel_values=pixels))

    def _probs(self, embeds: torch.Tensor) -> np.ndarray:
        scale = self.model.logit_scale.exp() if hasattr(self.model, "logit_scale") else 100.0
        probs = torch.softmax(scale * embeds @ self.label_embeds.T, dim=-1).float().cpu().numpy()
        if not np.isfinite(probs).all():
            raise ValueError(f"zero-shot model {self.source!r} gave non-finite probabilities (broken weights?)")
        return probs

    def predict_proba(self, image_paths: Sequence[str | Path], texts: Sequence[str], batch_size: int = 32,
                      max_pixels: int | None = None) -> dict[str, np.ndarray]:
        """Per row, ``(N, 3)`` probabilities in :data:`~mmsent.labels.LABELS` order from the image, the text and both
        (keys ``image``, ``text``, ``image+text``)."""
        if len(image_paths) != len(texts):
            raise ValueError(f"{len(image_paths)} images but {len(texts)} texts")
        image, text = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                image.append(self._probs(self._embed_images(image_paths[start : start + batch_size], max_pixels)))
                text.append(self._probs(self._embed_texts(texts[start : start + batch_size])))
        empty = np.zeros((0, len(LABELS)), dtype=np.float32)
        image_p = np.concatenate(image) if image else empty
        text_p = np.concatenate(text) if text else empty
        return {"image": image_p, "text": text_p, "image+text": (image_p + text_p) / 2}


def _unit(x: torch.Tensor) -> torch.Tensor:
    # transformers 5 returns an output object from get_*_features where older versions return the tensor
    x = x if isinstance(x, torch.Tensor) else x.pooler_output
    return torch.nn.functional.normalize(x.float(), dim=-1)


def zero_shot_model(setting: str, image_encoder: str, text_encoder: str) -> str | None:
    """The model ``compare.zero_shot`` names: itself, or under ``auto`` the first ``hf-clip:`` encoder's; else None."""
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    candidates = [image_encoder, *(part.strip() for part in text_encoder.split("+"))]
    return next((name for name in candidates if name.startswith("hf-clip:")), None)


def zero_shot_scores(source: str, examples: Sequence[Example], cleaner: TextCleaner, *, device: str = "auto",
                     max_pixels: int | None = None) -> list[dict]:
    """Scores of the zero-shot classifier on labelled ``examples``: one row per modality (image, text, image+text)
    with ``name``, accuracy, macro-F1, weighted-F1, per-class scores and the confusion matrix."""
    clf = ZeroShotClassifier(source, device=device)
    log.info("zero-shot baseline of %s on %d held-out rows", clf.source, len(examples))
    probs = clf.predict_proba([ex.image_path for ex in examples], [cleaner.clean(ex.text) for ex in examples],
                              max_pixels=max_pixels)
    gold = [ex.label for ex in examples]
    return [{"name": f"zero-shot {what}", "model": clf.source, "prompt": clf.prompts,
             **compute_metrics(gold, p.argmax(axis=1))} for what, p in probs.items()]
