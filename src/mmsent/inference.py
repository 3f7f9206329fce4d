"""A finished run's seed ensemble and encoders, loaded once, predicting raw (image, text) pairs with explanations."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmsent.config import RunConfig
from mmsent.data.text import MAX_TEXT_CHARS, TextCleaner, check_text
from mmsent.encoders.base import ImageEncoder, TextEncoder
from mmsent.explain import Baseline, explain, overlay_heatmap, word_scores
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.fusion.base import FusionInputs
from mmsent.run_folder import load_run_models
from mmsent.training.ensemble import decide

ImageInput = bytes | str | Path | Image.Image
_IMAGE_TYPES = (bytes, str, Path, Image.Image)
_EXPECTED = ("clf(image, text) for one post, or clf([image, ...], [text, ...]) for several; an image is a path, "
             "bytes or a PIL image, a text a str")


def _describe(value: object) -> str:
    """What was passed, for an error message: ``a list of 3``, ``an int``."""
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def posts(image: object, text: object) -> tuple[list[ImageInput], list[str], bool]:
    """The (image, text) pairs of a pipeline call and whether it was one post; a clear error for any other shape.

    Raises:
        TypeError: for a missing modality or a value of the wrong type.
        ValueError: for one image with several texts (or the reverse), or lists of unequal length.
    """
    if image is None or text is None:
        raise TypeError(f"both an image and a text are needed (got image={_describe(image)}, "
                        f"text={_describe(text)}): {_EXPECTED}")
    if isinstance(image, str) and not image.strip():
        raise ValueError(f"an empty string is not an image path: {_EXPECTED}")
    if isinstance(text, str):
        if not isinstance(image, _IMAGE_TYPES):
            raise (ValueError if isinstance(image, (list, tuple)) else TypeError)(
                f"one text but {_describe(image)} as the image: {_EXPECTED}")
        return [image], [text], True
    if not isinstance(text, (list, tuple)) or not isinstance(image, (list, tuple)):
        raise (ValueError if isinstance(text, (list, tuple)) else TypeError)(
            f"got {_describe(image)} as image and {_describe(text)} as text: {_EXPECTED}")
    if len(image) != len(text):
        raise ValueError(f"{len(image)} images but {len(text)} texts: {_EXPECTED}")
    for i, (im, tx) in enumerate(zip(image, text)):
        if not isinstance(im, _IMAGE_TYPES) or not isinstance(tx, str):
            raise TypeError(f"post {i}: got {_describe(im)} as image and {_describe(tx)} as text: {_EXPECTED}")
        if isinstance(im, str) and not im.strip():
            raise ValueError(f"post {i}: an empty string is not an image path: {_EXPECTED}")
    return list(image), list(text), False


class NonFiniteError(ValueError):
    """The models gave NaN or infinite probabilities: no answer is given rather than a wrong one."""


def png_data_uri(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of an image, for HTML and JSON."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class RunPredictor:
    """Predicts with the seed ensemble a run saved, encoding raw inputs with the run's own encoders and cleaning.

    Thread-safe: calls are serialised by a lock (on a few CPU cores, parallel forward passes only contend).

    Args:
        run_dir: a finished run directory (``config.yaml``, ``models/<name>_seed<k>/``, ideally ``metrics.json``).
        model_name: the design to load; default: the run's chosen model.
        device: where models and encoders run.
        encoders: ``(image_encoder, text_encoder)`` to use instead of building them from the run's config.
        max_image_pixels: decompression-bomb limit; default: the run's ``data.max_image_pixels``.
        baseline: what modality ablation replaces a modality with.
        verify: check the folder against its ``checksums.sha256`` (False: ``--no-verify``, with a warning).
        cfg: the run's config with a user's runtime settings (:func:`~mmsent.config.load_run_config`).
    """

    def __init__(self, run_dir: str | Path, *, model_name: str | None = None, device: str = "cpu",
                 encoders: tuple[ImageEncoder, TextEncoder] | None = None, max_image_pixels: int | None = None,
                 baseline: Baseline = "zeros", verify: bool = True, cfg: RunConfig | None = None) -> None:
        ensemble = load_run_models(run_dir, model_name=model_name, device=device, verify=verify, cfg=cfg)
        self.run, self.device = ensemble, device
        self.run_dir, self.cfg, self.model_name = ensemble.run_dir, ensemble.cfg, ensemble.name
        self.models, self.seeds = ensemble.models, ensemble.seeds
        self.labels = ensemble.labels  # the run's classes (id2label): names of the probabilities and labels
        self.image_encoder, self.text_encoder = encoders or ensemble.encoders(device)
        hp = self.models[0].hparams
        if (hp.get("image_dim"), hp.get("text_dim")) != (self.image_encoder.dim, self.text_encoder.dim):
            raise ValueError(f"{self.model_name} was trained on {hp.get('image_dim')}-d image and "
                             f"{hp.get('text_dim')}-d text features, but the encoders give {self.image_encoder.dim}-d "
                             f"and {self.text_encoder.dim}-d; were they changed since the run?")
        self.cleaner = TextCleaner(self.cfg.cleaning)
        self.max_image_pixels = max_image_pixels or self.cfg.data.max_image_pixels
        self.max_text_chars = MAX_TEXT_CHARS  # the longest text answered (a server sets its own limit here)
        self.baseline = baseline
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """What is loaded, for ``/health`` and the response's ``model`` block."""
        return {"name": self.model_name, "description": self.run.describe(), "seeds": self.seeds,
                "run_dir": str(self.run_dir),
                "models": len(self.models),
                "image_encoder": self.image_encoder.name, "text_encoder": self.text_encoder.name,
                "labels": list(self.labels),
                "modalities": sorted(set().union(*(m.modalities for m in self.models)))}

    def __call__(self, image: ImageInput | Sequence[ImageInput] | None = None,
                 text: str | Sequence[str] | None = None, *, explain: bool = False) -> dict[str, Any] | list[dict]:
        """Predicts one post (``clf("post.jpg", "what a day")``) or a list of them (two lists of equal length).

        Each answer is ``{"label": ..., "scores": {class: probability}}``; with ``explain=True`` it also holds
        ``evidence`` (modality ablation, token scores, the image heat-map drawn over the crop), ``cleaned_text``
        and ``timing_ms``.

        Raises:
            TypeError, ValueError: for inputs of another shape (the message says what was passed and expected).
            ImageLoadError: for an image that cannot be used.
        """
        if not isinstance(explain, bool):
            raise TypeError(f"explain must be True or False, not {_describe(explain)}")
        images, texts, single = posts(image, text)
        if explain:
            answers = [{"label": r["label"], "scores": r["probabilities"],
                        **{k: r[k] for k in ("evidence", "cleaned_text", "timing_ms")}}
                       for r in self.predict(images, texts, explain_inputs=True, overlay=True)]
        else:  # the corpus path: encoded in the run's batch size, whatever the number of posts
            self.check_texts(texts, single)
            probs, labels = self.classify([self.crop(im) for im in images], texts) if texts else ([], [])
            answers = [{"label": label, "scores": {name: round(float(v), 6) for name, v in zip(self.labels, p)}}
                       for label, p in zip(labels, probs)]
        return answers[0] if single else answers

    def check_texts(self, texts: Sequence[str], single: bool) -> None:
        """The server's and the streamed manifests' text rule, for the library too: ValueError naming the text
        (``text``, or ``text {i}`` in a list) for an empty, invisible-only or over-long one."""
        for i, text in enumerate(texts):
            check_text(text, "text" if single else f"text {i}", self.max_text_chars)

    def load(self, image: ImageInput, name: str = "<upload>") -> Image.Image:
        """Decodes an image from bytes, a path or a PIL image, with the run's pixel limit (raises ImageLoadError)."""
        return self.image_encoder.open(image, self.max_image_pixels, name=name)

    def crop(self, image: ImageInput, name: str = "<upload>") -> np.ndarray:
        """The image as the run's image encoder takes it (decoded with the pixel limit, resized and cropped)."""
        return self.image_encoder.crop(self.load(image, name))

    def classify(self, crops: Sequence[np.ndarray], texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Class probabilities (rows in order, columns in ``labels`` order) and labels for cropped images and raw
        texts, without explanations: encoded and fused in the run's batch size, whose activations bound the memory.

        Raises:
            ValueError: if the models give non-finite probabilities.
        """
        batch_size = self.cfg.encoders.batch_size
        with self._lock:
            parts = [self.image_encoder.encode_pixels(b) for b in torch.from_numpy(np.stack(crops)).split(batch_size)]
            pooled, tokens = torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
            image = ModalityFeatures(pooled, tokens, torch.ones(tokens.shape[:2], dtype=torch.bool))
            text = self.text_encoder.encode([self.cleaner(t) for t in texts], batch_size=batch_size)
            probs = self.run.proba(FeatureSet([str(i) for i in range(len(texts))], image, text), self.device)
        if not np.isfinite(probs).all():
            raise NonFiniteError("the run's models gave non-finite probabilities")
        return probs, [self.labels[i] for i in decide(probs)]

    def predict(self, images: Sequence[ImageInput], texts: Sequence[str], *, explain_inputs: bool = True,
                overlay: bool = False) -> list[dict[str, Any]]:
        """Label, probabilities (named by the run's classes), cleaned text, evidence and timings for each (image,
        text) pair.

        Args:
            images: encoded bytes, paths or PIL images.
            texts: raw tweet texts (cleaned with the run's cleaning rules).
            explain_inputs: compute gradient x input maps and token scores (ablation, gate and attention are cheap
                and always included).
            overlay: add ``evidence.image_overlay_png``, a data URI of the heat-map drawn over the crop.

        Raises:
            ImageLoadError: for an image that cannot be used.
        """
        if isinstance(texts, str) or isinstance(images, _IMAGE_TYPES):
            raise TypeError(f"predict takes lists (got {_describe(images)} and {_describe(texts)}); for one post call "
                            "the predictor itself: clf(image, text)")
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not texts:
            return []
        self.check_texts(texts, single=len(texts) == 1)
        decoded = [self.load(im) for im in images]
        with self._lock:
            t0 = time.perf_counter()
            crops = [self.image_encoder.crop(im) for im in decoded]
            pooled, tokens = self.image_encoder.encode_pixels(torch.from_numpy(np.stack(crops)))
            t1 = time.perf_counter()
            cleaned = [self.cleaner(t) for t in texts]
            text = self.text_encoder.encode(cleaned, batch_size=max(1, len(cleaned)))
            # Cut the padding columns no row uses: models mask them anyway, so this only saves work.
            width = int(text.mask.any(0).nonzero().max()) + 1 if bool(text.mask.any()) else 1
            words = [self.text_encoder.tokens(c) for c in cleaned]
            t2 = time.perf_counter()
            dev = next(self.models[0].parameters()).device  # encoders hand back CPU tensors; the models may be on a GPU
            inputs = FusionInputs(*(t.to(dev) for t in (
                pooled.float(), tokens.float(), torch.ones(tokens.shape[:2], dtype=torch.bool), text.pooled.float(),
                text.tokens[:, :width].float(), text.mask[:, :width].bool())))
            rows = explain(self.models, inputs, baseline=self.baseline, saliency=explain_inputs,
                           text_pooling=self.cfg.encoders.text_pooling, labels=self.labels)
            t3 = time.perf_counter()
        timing = {"image_encode": t1 - t0, "text_encode": t2 - t1, "fusion_and_explain": t3 - t2, "total": t3 - t0}
        results = []
        for i, row in enumerate(rows):
            cells = row["image_attention"] or row["image_saliency"]
            evidence = {k: v for k, v in row.items() if k not in ("label", "probabilities", "text_saliency")}
            evidence["tokens"] = self._token_scores(words[i], row["text_saliency"])
            evidence["image_map"] = "attention" if row["image_attention"] else ("saliency" if cells else None)
            if overlay:
                evidence["image_overlay_png"] = png_data_uri(overlay_heatmap(crops[i], cells)) if cells else None
            results.append({"label": row["label"], "probabilities": row["probabilities"], "cleaned_text": cleaned[i],
                            "evidence": evidence, "timing_ms": {k: round(v * 1e3, 2) for k, v in timing.items()}})
        return results

    def _token_scores(self, tokens: list[str], scores: list[float] | None) -> list[dict[str, Any]] | None:
        """Each word of the cleaned text (tokenizer pieces merged, their gradient x input summed), scaled to [-1, 1]
        by the largest magnitude; special tokens dropped."""
        if scores is None or not tokens:
            return None
        words = word_scores(tokens, scores, self.text_encoder.special_tokens)
        peak = max((abs(s) for _, s in words), default=0.0) or 1.0
        return [{"token": w, "score": round(s / peak, 4)} for w, s in words]
