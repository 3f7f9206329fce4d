"""Zero-shot baseline of a CLIP / SigLIP model: no training, each label is a text prompt.

A post's image and its text are each compared with one prompt per class in the model's joint embedding space;
softmax over the scaled similarities gives class probabilities per modality, and their mean the image+text ones.
The pipeline scores them on the held-out rows beside the trained models (``compare.zero_shot``), the bar a trained
fusion model has to clear. The prompts are made from the run's class names (:func:`label_prompts`); a template or
one prompt per class overrides them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch

from mmsent.data.images import load_image
from mmsent.data.records import Example
from mmsent.data.text import TextCleaner
from mmsent.device import resolve_device
from mmsent.encoders.hf_image import hf_preprocess
from mmsent.encoders.base import EncoderLoadError
from mmsent.labels import LABELS, LabelsLike, LabelSet, as_label_set
from mmsent.training.metrics import compute_metrics

log = logging.getLogger("mmsent.zeroshot")

PROMPT = "a {label} social media post"  # the sentiment classes' template: "a positive social media post"
GENERIC_PROMPT = "a social media post expressing {label}"  # any other classes' ("... expressing not sarcastic")
Prompts = Union[str, Mapping[str, str]]  # a template with {label}, or the prompt of each class


def label_prompts(labels: LabelsLike | None = None, prompt: Prompts | None = None) -> list[str]:
    """One text prompt per class of ``labels``, in their order.

    Args:
        labels: the classes (default: the three sentiment classes).
        prompt: a template whose ``{label}`` takes each class name with underscores as spaces (default:
            :data:`PROMPT` for sentiment classes, else :data:`GENERIC_PROMPT`), or a mapping giving each class its
            whole prompt.

    Raises:
        ValueError: for a template without ``{label}`` (every class would get the same prompt) or with other
            fields, or a mapping that misses a class or names another.
    """
    names = as_label_set(labels)
    if isinstance(prompt, Mapping):
        missing = [n for n in names if not isinstance(prompt.get(n), str) or not prompt[n].strip()]
        stray = sorted(set(prompt) - set(names))
        if missing or stray:
            raise ValueError(f"zero-shot prompts: give one prompt for each class of {list(names)} (missing "
                             f"{missing}, not a class {stray})")
        return [prompt[n] for n in names]
    if prompt is None:
        prompt = PROMPT if set(names) <= set(LABELS) else GENERIC_PROMPT
    if "{label}" not in prompt:
        raise ValueError(f"zero-shot prompt {prompt!r} has no {{label}}: every class would get the same prompt")
    try:
        return [prompt.format(label=n.replace("_", " ")) for n in names]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"zero-shot prompt {prompt!r}: only {{label}} may be filled in ({exc!r}); write a literal "
                         "brace as {{ or }}") from None


class ZeroShotClassifier:
    """Class probabilities from a two-tower image-text model's similarity to label prompts.

    Args:
        source: a CLIP or SigLIP model: hub id or local folder (``hf-clip:`` prefix allowed).
        labels: the classes, in the order of the probabilities (default: the three sentiment classes).
        prompt: the template each class name fills, or each class's prompt (see :func:`label_prompts`).
        device: ``auto``/``cpu``/``cuda``.
    """

    def __init__(self, source: str, *, labels: LabelsLike | None = None, prompt: Prompts | None = None,
                 device: str | torch.device = "auto") -> None:
        import transformers

        self.labels: LabelSet = as_label_set(labels)
        self.prompts = label_prompts(self.labels, prompt)  # before loading: a bad prompt fails fast

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
        """Per row, ``(N, classes)`` probabilities in the order of :attr:`labels` from the image, the text and both
        (keys ``image``, ``text``, ``image+text``)."""
        if len(image_paths) != len(texts):
            raise ValueError(f"{len(image_paths)} images but {len(texts)} texts")
        image, text = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                image.append(self._probs(self._embed_images(image_paths[start : start + batch_size], max_pixels)))
                text.append(self._probs(self._embed_texts(texts[start : start + batch_size])))
        empty = np.zeros((0, len(self.labels)), dtype=np.float32)
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


def zero_shot_scores(source: str, examples: Sequence[Example], cleaner: TextCleaner, *,
                     labels: LabelsLike | None = None, prompt: Prompts | None = None,
                     positive_label: str | None = None, device: str = "auto",
                     max_pixels: int | None = None) -> list[dict]:
    """Scores of the zero-shot classifier on labelled ``examples``: one row per modality (image, text, image+text)
    with ``name``, the prompts, accuracy, macro-F1, weighted-F1, per-class scores and the confusion matrix over
    ``labels`` (the run's classes; default the three sentiment classes), and ``positive_f1`` with
    ``positive_label``."""
    clf = ZeroShotClassifier(source, labels=labels, prompt=prompt, device=device)
    log.info("zero-shot baseline of %s on %d held-out rows", clf.source, len(examples))
    probs = clf.predict_proba([ex.image_path for ex in examples], [cleaner.clean(ex.text) for ex in examples],
                              max_pixels=max_pixels)
    gold = [ex.label for ex in examples]
    return [{"name": f"zero-shot {what}", "model": clf.source, "prompt": clf.prompts,
             **compute_metrics(gold, p.argmax(axis=1), clf.labels, positive_label)} for what, p in probs.items()]
