"""Request and response bodies of the HTTP API (they also make up its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsent.data.text import is_invisible

# A string format of our own: base64 of an image file PIL can decode. JSON Schema cannot check image content, so
# the format names it for clients and fuzzers (tests/serve/test_fuzz.py generates real images for it).
IMAGE_BASE64 = "image-base64"


def visible_pattern() -> str:
    """A regular expression matching one visible character by :func:`mmsent.data.text.is_invisible`, the server's
    text rule, written with \\u escapes only, so Python's and JavaScript's regular expressions read it alike.

    Only the Basic Multilingual Plane is listed: an emoji beyond it must still count as visible in JavaScript (where
    it is two surrogates), so a text made only of the rare invisible characters beyond it passes the schema and is
    refused by the server (422).
    """
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF or not is_invisible(chr(code)):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[^" + "".join(f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in ranges) + "]"


# A text must hold a visible character and no NUL (the rule of mmsent.data.text), so clients and server agree.
TEXT_PATTERN = f"^[^\\u0000]*{visible_pattern()}[^\\u0000]*$"


class PredictItem(BaseModel):
    """One image + tweet, the image as base64 (a ``data:image/...;base64,`` prefix is accepted)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is refused, not silently ignored

    # Documented, checked by the server with its own messages: at least one non-space character (pattern), and at
    # most the server's limit (maxLength, added by the app from its settings).
    text: str = Field(..., description="The raw tweet; cleaned with the run's cleaning rules before encoding.",
                      json_schema_extra={"pattern": TEXT_PATTERN})
    image_base64: str = Field(..., description="The encoded image file (JPEG, PNG, ...), base64.",
                              json_schema_extra={"format": IMAGE_BASE64, "contentEncoding": "base64"})


class PredictJSON(PredictItem):
    """``POST /predict`` as ``application/json``."""

    # strict: a JSON true/false, not 1 or "yes" (what the schema says)
    explain: bool = Field(True, strict=True,
                          description="Gradient x input maps and token scores (ablation is always included).")
    overlay: bool = Field(False, strict=True,
                          description="Add evidence.image_overlay_png, the heat-map drawn over the crop.")


class BatchRequest(BaseModel):
    """``POST /predict/batch``: many rows at once; rows are all checked before any is predicted."""

    model_config = ConfigDict(extra="forbid")

    items: list[PredictItem] = Field(..., json_schema_extra={"minItems": 1})  # maxItems: the server's limit
    explain: bool = Field(False, strict=True)
    overlay: bool = Field(False, strict=True)


class TokenScore(BaseModel):
    token: str = Field(..., description="A word of the cleaned text (the tokenizer's pieces of it merged).")
    score: float = Field(..., description="Gradient x input for the predicted class, summed over the word's pieces "
                                          "and scaled to [-1, 1].")


class GateSummary(BaseModel):
    gate_from: Literal["image", "text"] | None
    summary: str = Field(..., description="The gate in words, e.g. 'The image decides how much of the text reaches "
                                          "the classifier; ...'.")
    mean: float = Field(..., description="Mean gate value in [0, 1]: how much of the other modality passes.")
    open_fraction: float = Field(..., description="Share of gate units above 0.5.")
    per_seed_mean: list[float]


class Evidence(BaseModel):
    """Which modality drove the prediction, and where in the image and text."""

    modality_ablation: dict[str, float] = Field(
        ..., description="Per modality, the drop in the predicted class's probability when that modality's features "
        "are replaced by the baseline (positive: the modality supported the prediction).")
    dominant_modality: Literal["image", "text", "both", "neither"] = Field(
        ..., description="The modality whose removal costs the prediction most (see modality_ablation).")
    baseline: Literal["zeros", "training_mean"]
    gate: GateSummary | None = Field(None, description="Gated fusion only.")
    image_attention: list[list[float]] | None = Field(
        None, description="Dual-stream only: text->image attention, grid x grid over the center crop (row 0 on top).")
    image_saliency: list[list[float]] | None = Field(
        None, description="Gradient x input per image grid cell (signed), when explain is on.")
    image_map: Literal["attention", "saliency"] | None = Field(None, description="Which map the overlay shows.")
    tokens: list[TokenScore] | None = None
    image_overlay_png: str | None = Field(None, description="data:image/png;base64 heat-map over the crop.")


class ModelInfo(BaseModel):
    name: str = Field(description="What predicts: 'ensemble' (several designs' mean) or a design's name.")
    description: str = Field(description="The same in words, e.g. 'mean of 6 designs × 3 seeds'.")
    seeds: list[int]
    models: int = Field(description="How many trained models are averaged (designs x folds x seeds).")
    run_dir: str
    image_encoder: str
    text_encoder: str
    labels: list[str] | None
    modalities: list[str]


class Prediction(BaseModel):
    # The served run's classes: /openapi.json lists them (an enum, and one probability each), made from the run.
    label: str = Field(description="The predicted class, one of the run's labels.")
    probabilities: dict[str, float] = Field(description="One probability per class of the run.")
    cleaned_text: str
    evidence: Evidence
    timing_ms: dict[str, float]


class PredictResponse(Prediction):
    model: ModelInfo


class BatchResponse(BaseModel):
    results: list[Prediction]
    model: ModelInfo


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelInfo
    limits: dict[str, int | float] = Field(description="The server's limits (ServeSettings); timeouts in seconds.")
