"""The pipeline stage: fine-tune both encoders on the split's training rows and return the encoders to extract with.

Fine-tuned encoders live under ``finetune.output_dir`` (default ``{cache_dir}/finetune``) in a folder named by a
content key: base encoder fingerprint, this encoder's fine-tuning settings, the shared settings, and the ordered
training rows (guid, content digest, label). The same data and settings therefore reuse a finished fine-tuning
(and, through the tuned fingerprint, its cached features), and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmsent.config import EncoderFinetuneConfig, RunConfig
from mmsent.data.records import LabDataset
from mmsent.data.splits import Split
from mmsent.data.text import TextCleaner
from mmsent.device import torch_threads, training_autocast_dtype
from mmsent.encoders.base import Encoder
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.features.extract import FeatureSource, image_item_ids
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.crossfit import RECORD_FILE as CROSSFIT_RECORD
from mmsent.finetune.crossfit import crossfit, crossfit_dir, is_crossfitted, load_crossfit
from mmsent.finetune.finetuned import CHECKPOINTS_DIR, apply_finetuned, is_finetuned, read_meta, save_finetuned
from mmsent.finetune.trainer import finetune
from mmsent.fingerprint import json_digest, text_digest
from mmsent.io import write_json
from mmsent.labels import LabelsLike, LabelSet
from mmsent.run_files import FINETUNE_RECORD
from mmsent.training import distributed
from mmsent.training.loop import StepCallback

logger = logging.getLogger("mmsent.finetune")

RUN_RECORD = FINETUNE_RECORD  # the run folder names it
# 2: the shared training loop (warm-up from the first step); folders of version 1 are fine-tuned again
_KEY_VERSION = 2


def make_adapter(encoder: Encoder, ecfg: EncoderFinetuneConfig, max_pixels: int | None = None) -> TuningAdapter:
    """The trunk/top view of ``encoder`` for its modality and ``ecfg.mode``/``last_n``."""
    if encoder.modality == "image":
        from mmsent.finetune.image import ImageAdapter

        return ImageAdapter(encoder, ecfg.mode, ecfg.last_n, max_pixels=max_pixels)  # type: ignore[arg-type]
    from mmsent.finetune.text import TextAdapter

    return TextAdapter(encoder, ecfg.mode, ecfg.last_n)  # type: ignore[arg-type]


def shared_settings(cfg: RunConfig) -> dict[str, Any]:
    """The ``finetune`` settings outside the per-encoder sections that shape a fine-tuning (in its key and record)."""
    skip = {"enabled", "output_dir", "checkpoint_every", "text", "image"}
    return {k: v for k, v in dataclasses.asdict(cfg.finetune).items() if k not in skip}


def crossfit_folder(folder: Path, ecfg: EncoderFinetuneConfig,
                    folds: Sequence[Sequence[int]] | None = None) -> Path | None:
    """The cross-fitting subfolder of the fine-tuned ``folder``: over the given ``folds`` (a k-fold run's), over
    ``ecfg.crossfit_folds`` drawn folds, or None when neither asks for cross-fitting."""
    if folds is not None:
        return crossfit_dir(folder, len(folds), folds)
    return crossfit_dir(folder, int(ecfg.crossfit_folds)) if (ecfg.crossfit_folds or 0) > 1 else None


def finetune_encoder(encoder: Encoder, items: Sequence, item_ids: Sequence[str], labels: Sequence[int],
                     guids: Sequence[str], cfg: RunConfig, *, progress: bool = True,
                     callbacks: Sequence[StepCallback] = (), data_note: str = "",
                     label_set: LabelsLike | None = None, folds: Sequence[Sequence[int]] | None = None) -> Path:
    """Fine-tunes a freshly built base encoder in place (or loads a finished fine-tuning of the same key).

    ``items`` are the training rows' cleaned texts or image paths; their content digests ``item_ids`` and
    ``data_note`` (what else decides their content: the cleaner's fingerprint) are part of the folder's key, as are
    ``labels``, class indices of ``label_set`` (default: the three sentiment classes). ``folds`` (row indices each
    fold leaves out) cross-fits over those folds instead of ``crossfit_folds`` drawn ones. Returns the fine-tuned
    folder.
    """
    modality = encoder.modality
    ecfg = cfg.finetune.image if modality == "image" else cfg.finetune.text
    shared = shared_settings(cfg)
    # crossfit_folds is left out of the key: the cross-fitting has its own subfolder, the full fine-tuning is the same
    key_settings = {k: v for k, v in dataclasses.asdict(ecfg).items() if k != "crossfit_folds"}
    base_fp = encoder.fingerprint()
    # the precision the steps run in (bf16 autocast or float32) depends on the machine too: part of the key, so a
    # fine-tuning in one is never reused, or resumed from its checkpoints, for the other
    precision = training_autocast_dtype(encoder.device) if cfg.finetune.amp else None
    key = json_digest({"version": _KEY_VERSION, "encoder": base_fp, "settings": key_settings,
                       "shared": shared, "data_note": data_note, "precision": str(precision or "float32"),
                       "rows": [[str(g), str(i), int(y)] for g, i, y in zip(guids, item_ids, labels)]})
    folder = Path(cfg.finetune.output_dir or Path(cfg.cache_dir) / "finetune").expanduser() / f"{modality}-{key[:20]}"
    cf_dir = crossfit_folder(folder, ecfg, folds)
    full_done = is_finetuned(folder)
    crossfit_done = cf_dir is None or is_crossfitted(cf_dir)
    if full_done and crossfit_done:
        logger.info("%s: reusing the fine-tuned encoder in %s", modality, folder)
        apply_finetuned(encoder, folder)
        return folder
    adapter = make_adapter(encoder, ecfg, cfg.data.max_image_pixels)
    size = adapter.describe()
    logger.info("fine-tuning the %s encoder %s (%s, %d of %d parameters trainable) on %d rows%s -> %s", modality,
                encoder.name, ecfg.mode if ecfg.mode == "full" else f"last {adapter.last_n}",
                size["trainable_params"], size["total_params"], len(items),
                "" if cf_dir is None else f", then {len(folds) if folds else ecfg.crossfit_folds} cross-fitting folds",
                folder)
    desc = f"{modality} fine-tune"
    # One trunk pass, shared by the cross-fitting folds and the full fine-tuning.
    rows = adapter.prepare(list(items), batch_size=cfg.encoders.batch_size, progress=progress)
    if not crossfit_done:
        crossfit(adapter, items, rows, labels, guids, ecfg, cfg.finetune, cf_dir, run_key=key, progress=progress,
                 callbacks=callbacks, desc=desc, label_set=label_set, held_out=folds)
    if full_done:
        apply_finetuned(encoder, folder)
        return folder
    result = finetune(adapter, items, labels, guids, ecfg, cfg.finetune, folder / CHECKPOINTS_DIR, run_key=key,
                      progress=progress, callbacks=callbacks, rows=rows, desc=desc, label_set=label_set)
    held = (result.holdout_metrics or {}).get("macro_f1")
    logger.info("%s: best epoch %d of %d%s, %.0f s", desc, result.best_epoch, len(result.history),
                "" if held is None else f", holdout macro-F1 {held:.3f}", result.seconds)
    settings = {"encoder": dataclasses.asdict(ecfg), "shared": shared}
    distributed.on_main(save_finetuned, folder, adapter, result, base_fingerprint=base_fp, settings=settings,
                        extra={"key": key, "rows": len(guids), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if not distributed.is_main():  # trained to the same weights as the main process's: now they are the encoder's
        encoder.mark_weights_changed()
    return folder


def finetune_encoders(cfg: RunConfig, dataset: LabDataset, splits: Sequence[Split],
                      run_dir: str | Path | None = None, *, progress: bool = True,
                      callbacks: Sequence[StepCallback] = (), label_set: LabelSet | None = None) -> FeatureSource:
    """Fine-tunes the configured encoders on the training rows (and cross-fits them) of the run's ``splits``.

    One split: only its ``train`` rows are prepared, trained on or used for early stopping (which holds out
    ``finetune.holdout_fraction`` of the training rows), cross-fitted over ``crossfit_folds`` folds; its validation
    rows never take part. Several (the folds of ``data.kfold``): the encoders fine-tune on every labelled row, and
    every fine-tuned modality is cross-fitted over exactly those folds, so each labelled row's features come from the
    encoder that left its fold out, the one fold whose scores they make. Encoders whose mode is ``frozen`` come back
    as built. With ``run_dir``, ``finetune.json`` there records which fine-tuned folders the run used. Returns the
    encoders to extract with and the cross-fitted modalities' out-of-fold features of the training rows (which
    extraction takes instead of encoding those rows). ``label_set`` is the task's classes, the run's (default:
    ``dataset.label_set(cfg.data.labels)``, as the pipeline reads them).
    """
    classes = label_set if label_set is not None else dataset.label_set(cfg.data.labels)
    image, text = create_encoders_from_config(cfg.encoders, cache_dir=Path(cfg.cache_dir).expanduser() / "models")
    train, folds = _training_rows(dataset, splits)
    labels = [classes.index(str(ex.label)) for ex in train]
    guids = [ex.guid for ex in train]
    record: dict[str, Any] = {}
    out_of_fold: dict[str, tuple[list[str], ModalityFeatures]] = {}
    with torch_threads(cfg.encoders.num_threads):
        for encoder, ecfg in ((image, cfg.finetune.image), (text, cfg.finetune.text)):
            modality = encoder.modality
            if ecfg.mode == "frozen":
                record[modality] = {"mode": "frozen", "fingerprint": encoder.fingerprint()}
                continue
            t0 = time.perf_counter()
            if modality == "image":
                items: list = [ex.image_path for ex in train]
                ids, note = image_item_ids(items), ""
            else:
                cleaner = TextCleaner(cfg.cleaning)
                items = [cleaner.clean(ex.text) for ex in train]
                ids, note = [text_digest(t) for t in items], cleaner.fingerprint()
            # a combined text encoder trains its first part; its other parts stay frozen signals
            folder = finetune_encoder(encoder.tunable, items, ids, labels, guids, cfg, progress=progress,
                                      callbacks=callbacks, data_note=note, label_set=classes, folds=folds)
            meta = read_meta(folder)
            record[modality] = {"mode": ecfg.mode, "encoder": meta["encoder"], "dir": str(folder.resolve()),
                                "fingerprint": meta["fingerprint"],
                                "base_fingerprint": meta["base_fingerprint"], "seconds": time.perf_counter() - t0,
                                "result": meta["result"]}
            cf_dir = crossfit_folder(folder, ecfg, folds)
            if cf_dir is not None:
                oof_guids, oof = load_crossfit(cf_dir)
                if sorted(oof_guids) != sorted(guids):
                    raise RuntimeError(f"{cf_dir}: out-of-fold features cover other rows than the training rows")
                out_of_fold[modality] = (oof_guids, oof)
                cross = json.loads((cf_dir / CROSSFIT_RECORD).read_text(encoding="utf-8"))
                for fold in cross.get("fold_results", []):
                    fold.pop("predictions", None)  # one class per training row: kept in crossfit.json only
                record[modality]["crossfit"] = {"dir": str(cf_dir.resolve()), **cross}
    if run_dir is not None:
        distributed.on_main(write_json, Path(run_dir) / RUN_RECORD, record)
    return FeatureSource(image, text, out_of_fold)


def _training_rows(dataset: LabDataset, splits: Sequence[Split]) -> tuple[list, list[list[int]] | None]:
    """The rows the encoders fine-tune on, and with several splits (k-fold) the row indices each fold holds out."""
    by_guid = {ex.guid: ex for ex in dataset.train}
    if len(splits) == 1:
        val = set(splits[0].val)
        train = [by_guid[g] for g in splits[0].train if g not in val]
        if len(train) != len(splits[0].train):
            raise ValueError("the split names a guid as both training and validation row")
        return train, None
    position = {ex.guid: i for i, ex in enumerate(dataset.train)}
    folds = [[position[g] for g in split.val] for split in splits]
    if sorted(i for held in folds for i in held) != list(range(len(dataset.train))):
        raise ValueError("the k-fold splits' validation rows do not partition the labelled rows")
    return list(dataset.train), folds

