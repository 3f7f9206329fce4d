"""Fine-tuned encoders on disk: the changed weights in safetensors, a JSON description, and loading them back.

Layout of a fine-tuned encoder folder::

    encoder.safetensors   the tuned tensors only (trainable layers/blocks, with their buffers), keyed as in the
                          encoder network's state_dict; everything else comes from the base encoder's weights
    head.safetensors      the classification head used while fine-tuning (dropout + linear on the pooled vector)
    finetuned.json        written last: modality, base encoder and its fingerprint, the tuned fingerprint, mode,
                          settings, per-epoch history and holdout metrics
    checkpoints/          resumable training state while fine-tuning runs (removed once it has finished)

The tuned fingerprint hashes the whole network's weights, so features extracted with a fine-tuned encoder get their
own feature-cache key, and a rebuilt encoder (:func:`apply_finetuned` on a fresh base) hits the same cache entries.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from mmsent.encoders.base import Encoder
from mmsent.finetune.base import TuningAdapter, load_partial_state
from mmsent.finetune.trainer import FinetuneResult
from mmsent.io import load_tensors, save_tensors, write_json
from mmsent.run_files import FINETUNED_FILES

ENCODER_WEIGHTS, HEAD_WEIGHTS, META_FILE = FINETUNED_FILES
CHECKPOINTS_DIR = "checkpoints"
FORMAT = "mmsent-finetuned-encoder"


def is_finetuned(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished fine-tuned encoder (its description is written last)."""
    return (Path(folder) / META_FILE).is_file() and (Path(folder) / ENCODER_WEIGHTS).is_file()


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} holds no finished fine-tuned encoder (run `mmsent "
                                "finetune` with the same config, which also resumes an interrupted fine-tuning)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fine-tuned mmsent encoder description")
    return meta


def save_finetuned(folder: str | Path, adapter: TuningAdapter, result: FinetuneResult, *, base_fingerprint: str,
                   settings: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Writes a fine-tuned encoder folder (then removes its ``checkpoints/``) and gives the encoder its new fingerprint.

    ``base_fingerprint`` is the encoder's before fine-tuning (checked when loading back), ``settings`` the config
    sections to record and ``extra`` more JSON-able facts (row counts, key, ...).
    """
    folder = Path(folder)
    save_tensors(folder / ENCODER_WEIGHTS, adapter.tuned_state(), {"format": FORMAT})
    save_tensors(folder / HEAD_WEIGHTS, result.head.state_dict(), {"format": FORMAT})
    adapter.encoder.mark_weights_changed()
    meta = {
        "format": FORMAT,
        "version": 1,
        "modality": adapter.encoder.modality,
        "encoder": adapter.encoder.name,
        "base_fingerprint": base_fingerprint,
        "fingerprint": adapter.encoder.fingerprint(),
        "settings": settings,
        "result": {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "head"},
        **(extra or {}),
    }
    write_json(folder / META_FILE, meta)
    shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)
    return folder


def apply_finetuned(encoder: Encoder, folder: str | Path) -> Encoder:
    """Loads a fine-tuned folder's weights into a freshly built base encoder (in place) and returns it.

    Raises ValueError if the encoder is not the folder's base (weights, preprocessing or modality), or if the result
    does not reproduce the recorded fingerprint.
    """
    meta = read_meta(folder)
    if meta["modality"] != encoder.modality:
        raise ValueError(f"{folder} holds a fine-tuned {meta['modality']} encoder, not a {encoder.modality} one")
    if encoder.fingerprint() != meta["base_fingerprint"]:
        raise ValueError(f"{folder} was fine-tuned from another base encoder or preprocessing:\n"
                         f"  recorded {meta['base_fingerprint']}\n  given    {encoder.fingerprint()}")
    tensors, _ = load_tensors(Path(folder) / ENCODER_WEIGHTS)
    load_partial_state(encoder.network, {k: v.to(encoder.device) for k, v in tensors.items()}, encoder.name)
    encoder.network.eval()
    encoder.mark_weights_changed()
    if encoder.fingerprint() != meta["fingerprint"]:
        raise ValueError(f"{folder}: the loaded weights do not reproduce the recorded fingerprint (damaged files?)")
    return encoder
