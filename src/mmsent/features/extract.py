"""Feature extraction through the cache: one cached entry per modality, rows reusable by content.

Keys (sha256, see :func:`modality_key`):
  * config key = encoder fingerprint + modality preprocessing options;
  * entry key = config key + data fingerprint, where the data fingerprint is the ordered (guid, sha1 of image bytes)
    list for images and the ordered (guid, cleaned text) list plus the cleaner fingerprint for texts.
Images and texts are keyed apart, so changing the text encoder or the cleaning never re-extracts images. On a miss,
rows of earlier entries with the same config key are reused by content (image bytes / cleaned text), so only new
or changed items are encoded: a run on a subset, or on a dataset with a few edited rows, costs only those rows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from mmsent.data.records import Example
from mmsent.device import torch_threads
from mmsent.encoders.base import Encoder, ImageEncoder, TextEncoder
from mmsent.encoders.combined import CombinedTextEncoder
from mmsent.encoders.openvino_runtime import runtime_id
from mmsent.features.cache import CACHE_FORMAT, FP16_MAX, FeatureCache
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.fingerprint import file_digest, json_digest, text_digest

logger = logging.getLogger("mmsent.features")

PARTIAL_CHUNK = 512  # items encoded between two partial cache entries (what a killed extraction keeps)


def image_item_ids(paths: Sequence, workers: int = 4) -> list[str]:
    """sha1 of each image file's bytes (memoised per path/size/mtime; hashed in threads, it is I/O bound)."""

    def one(path) -> str:
        try:
            return file_digest(path, "sha1")
        except OSError as exc:
            raise FileNotFoundError(f"cannot read image {path}: {exc}") from exc

    if len(paths) < 64:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(workers, thread_name_prefix="mmsent-hash") as pool:
        return list(pool.map(one, paths))


def _sha256_lines(lines: Sequence[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def image_data_fingerprint(guids: Sequence[str], item_ids: Sequence[str]) -> str:
    """The ordered (guid, sha1 of image bytes) list, hashed."""
    return _sha256_lines([f"{g}\t{i}" for g, i in zip(guids, item_ids)])


def text_data_fingerprint(guids: Sequence[str], cleaned: Sequence[str], cleaner_fingerprint: str) -> str:
    """The ordered (guid, cleaned text) list and the cleaner's fingerprint, hashed."""
    return _sha256_lines([cleaner_fingerprint] + [f"{g}\t{t!r}" for g, t in zip(guids, cleaned)])


def modality_key(modality: str, encoder_fingerprint: str, preprocessing: dict[str, Any], data_fp: str
                 ) -> tuple[str, str]:
    """Returns ``(config_key, entry_key)`` for one modality."""
    config_key = json_digest({"format": CACHE_FORMAT, "modality": modality, "encoder": encoder_fingerprint,
                              "preprocessing": preprocessing})
    return config_key, json_digest({"config": config_key, "data": data_fp})


def round_like_cache(f: ModalityFeatures) -> ModalityFeatures:
    """Rounds tokens through float16 as the cache stores them, so a cold run and a cached run return equal values."""
    tokens = f.tokens.float().clamp(-FP16_MAX, FP16_MAX).half().float()
    return ModalityFeatures(f.pooled.float(), tokens, f.mask.bool())


def _reuse_rows(cache: FeatureCache, modality: str, config_key: str, wanted: Sequence[str]
                ) -> dict[str, tuple[ModalityFeatures, int]]:
    """Finds cached rows (newest entries first) for the wanted content ids among entries with the same config."""
    wanted_set = set(wanted)
    found: dict[str, tuple[ModalityFeatures, int]] = {}
    for meta in cache.entries(modality):
        if meta.get("config_key") != config_key or not meta.get("item_ids"):
            continue
        rows = {iid: r for r, iid in enumerate(meta["item_ids"]) if iid in wanted_set and iid not in found}
        if not rows:
            continue
        got = cache.get(modality, meta["key"])
        if got is None:
            continue
        feats = got[1]
        for iid, r in rows.items():
            found[iid] = (feats, r)
        if len(found) == len(wanted_set):
            break
    return found


def extract_modality(modality: str, guids: Sequence[str], items: Sequence, item_ids: Sequence[str], data_fp: str,
                     encoder: Encoder, cache: FeatureCache | None, *, batch_size: int = 32, progress: bool = True,
                     preprocessing: dict[str, Any] | None = None, encode_kwargs: dict[str, Any] | None = None,
                     stats: dict[str, Any] | None = None) -> ModalityFeatures:
    """Features of one modality: an exact cache hit, else cached rows reused by content plus freshly encoded ones.

    Args:
        items: what the encoder takes (paths / cleaned texts), one per guid.
        item_ids: content id per item (equal ids are encoded once).
        data_fp: fingerprint of the whole ordered data (part of the entry key).
        preprocessing: options outside the encoder that change the features (part of both keys).
        stats: when given, receives ``{"cache": hit|miss|hit by rows|off, "encoded", "reused", "seconds",
            "encode_seconds", "items_per_second"}`` for this modality.
    """
    t0 = time.perf_counter()
    guids = [str(g) for g in guids]
    preprocessing = dict(preprocessing or {})
    fp = encoder.fingerprint()
    config_key, key = modality_key(modality, fp, preprocessing, data_fp)
    if cache is not None:
        hit = cache.get(modality, key)
        if hit is not None and hit[0] == guids:
            logger.info("%s features: cache hit (%d rows, %s, key %s) in %.2fs", modality, len(guids), encoder.name,
                        key[:12], time.perf_counter() - t0)
            if stats is not None:
                stats.update(cache="hit", encoded=0, reused=len(guids), seconds=time.perf_counter() - t0)
            return hit[1]

    # one row per distinct content, in first-seen order
    unique: dict[str, int] = {}
    for i, iid in enumerate(item_ids):
        unique.setdefault(iid, i)
    reused = _reuse_rows(cache, modality, config_key, list(unique)) if cache is not None else {}
    todo = [iid for iid in unique if iid not in reused]
    t_enc = time.perf_counter()
    computed = _encode_missing(modality, todo, [items[unique[iid]] for iid in todo],
                               [guids[unique[iid]] for iid in todo], encoder, cache, config_key, batch_size, progress,
                               encode_kwargs or {})
    t_enc = time.perf_counter() - t_enc
    feats = _assemble(item_ids, bool(guids), computed, todo, reused, encoder.dim)
    # Store only when something was encoded: an entry fully assembled from others is cheap to assemble again.
    if cache is not None and todo:
        cache.put(modality, key, guids, feats, fingerprint=fp, config_key=config_key, item_ids=list(item_ids),
                  extra={"encoder": encoder.name, "preprocessing": preprocessing})
        _drop_partials(cache, modality, config_key, set(item_ids))
    dt = time.perf_counter() - t0
    rate = f", {len(todo) / t_enc:.1f}/s" if todo and t_enc > 0 else ""
    if stats is not None:
        stats.update(cache="off" if cache is None else ("miss" if todo else "hit by rows"), encoded=len(todo),
                     reused=len(unique) - len(todo), seconds=dt, encode_seconds=t_enc,
                     items_per_second=len(todo) / t_enc if todo and t_enc > 0 else None)
    logger.info("%s features: cache %s (%d rows, %s): encoded %d, reused %d cached rows, in %.1fs%s", modality,
                "off" if cache is None else ("miss" if todo else "hit by rows"), len(guids), encoder.name, len(todo),
                len(unique) - len(todo), dt, rate)
    return feats



def _encode_missing(modality: str, ids: list[str], items: list, guids: list[str], encoder: Encoder,
                    cache: FeatureCache | None, config_key: str, batch_size: int, progress: bool,
                    encode_kwargs: dict[str, Any]) -> ModalityFeatures | None:
    """Encodes the items of content ids ``ids`` (``guids``: a row of each, for messages); None when there are none.

    Encoded in chunks, each stored as a partial entry: a killed extraction keeps its finished chunks, and the rerun
    reuses them by content like any other cached rows. The partial entries go once the whole entry is stored.
    """
    fp = encoder.fingerprint()
    parts: list[ModalityFeatures] = []
    for start in range(0, len(ids), PARTIAL_CHUNK):
        chunk = slice(start, start + PARTIAL_CHUNK)
        part = encoder.encode(items[chunk], batch_size=batch_size, progress=progress, **encode_kwargs)
        if len(part) != len(ids[chunk]):
            raise RuntimeError(f"{encoder.name} returned {len(part)} rows for {len(ids[chunk])} inputs")
        bad = ~(torch.isfinite(part.pooled).all(1) & torch.isfinite(part.tokens).flatten(1).all(1))
        if bad.any():
            rows = [guids[chunk][int(i)] for i in bad.nonzero().flatten()[:5]]
            raise ValueError(f"{encoder.name} gave NaN/infinite {modality} features for {int(bad.sum())} row(s), e.g. "
                             f"guids {rows}: its weights may be damaged; reinstall them or pick another encoder")
        part = round_like_cache(part)
        parts.append(part)
        if cache is not None and len(ids) > PARTIAL_CHUNK:
            part_key = json_digest({"config": config_key, "partial": ids[chunk]})
            cache.put(modality, part_key, guids[chunk], part, fingerprint=fp, config_key=config_key,
                      item_ids=list(ids[chunk]), extra={"encoder": encoder.name, "partial": True})
    if not parts:
        return None
    return ModalityFeatures.concat(parts) if len(parts) > 1 else parts[0]


def _assemble(item_ids: Sequence[str], any_rows: bool, computed: ModalityFeatures | None, todo: list[str],
              reused: dict[str, tuple[ModalityFeatures, int]], dim: int) -> ModalityFeatures:
    """One row per item, in order, from the freshly encoded rows (``todo``'s) or the reused cached ones."""
    row_of = {iid: r for r, iid in enumerate(todo)}
    pooled, tokens, mask = [], [], []
    for iid in item_ids:
        src, r = (computed, row_of[iid]) if iid in row_of else reused[iid]
        pooled.append(src.pooled[r])
        tokens.append(src.tokens[r])
        mask.append(src.mask[r])
    if any_rows:
        return ModalityFeatures(torch.stack(pooled), torch.stack(tokens), torch.stack(mask))
    if computed is not None:
        return computed
    return ModalityFeatures(torch.zeros(0, dim), torch.zeros(0, 0, dim), torch.zeros(0, 0).bool())


def _drop_partials(cache: FeatureCache, modality: str, config_key: str, held: set[str]) -> None:
    """Removes the partial entries whose rows a whole entry now holds: this run's, and those a killed one left."""
    for meta in cache.entries(modality):
        if meta.get("partial") and meta.get("config_key") == config_key and set(meta.get("item_ids") or ()) <= held:
            cache.remove(modality, meta["key"])


@dataclass
class FeatureSource:
    """Where a run's features come from: its two encoders, plus rows whose features were made elsewhere.

    Attributes:
        image: the image encoder.
        text: the text encoder.
        precomputed: modality -> ``(guids, features)`` taken for those rows instead of encoding them (the
            out-of-fold features of cross-fitted fine-tuning).
    """

    image: ImageEncoder
    text: TextEncoder
    precomputed: dict[str, tuple[list[str], ModalityFeatures]] = field(default_factory=dict)


def _merge_precomputed(examples: Sequence[Example], precomputed: tuple[list[str], ModalityFeatures] | None,
                       extract: Callable[[Sequence[Example]], ModalityFeatures],
                       stats: dict[str, Any] | None) -> ModalityFeatures:
    """Features of ``examples`` in order: precomputed rows where given, ``extract`` for the others."""
    if not precomputed:
        return extract(examples)
    guids, given = precomputed
    given_pos = {str(g): i for i, g in enumerate(guids)}
    todo = [ex for ex in examples if ex.guid not in given_pos]
    own = extract(todo)
    if stats is not None:
        stats["precomputed"] = len(examples) - len(todo)
    if len(own) and own.tokens.shape[1:] != given.tokens.shape[1:]:
        raise ValueError(f"precomputed tokens are {tuple(given.tokens.shape[1:])}, extracted ones "
                         f"{tuple(own.tokens.shape[1:])}: were they made with other encoder settings?")
    own_pos = {ex.guid: len(given) + i for i, ex in enumerate(todo)}
    both = ModalityFeatures.concat([given, own]) if len(own) else given
    return both.index(torch.tensor([given_pos.get(ex.guid, own_pos.get(ex.guid, -1)) for ex in examples],
                                   dtype=torch.long))


def extract_features(examples: Sequence[Example], source: FeatureSource, cleaner: Any, cache: FeatureCache | None, *,
                     batch_size: int = 32, progress: bool = True, max_image_pixels: int | None = None,
                     num_threads: int | str = "auto", stats: dict[str, dict[str, Any]] | None = None) -> FeatureSet:
    """Image and text features for ``examples`` (in their order), from the cache where possible.

    Pass every example of a run (train and test together): each modality is one cache entry, and rows of other
    entries made with the same encoder are reused by content, so nothing is encoded twice.

    Args:
        examples: the examples; ``image_path`` and the uncleaned ``text`` are read.
        source: the encoders, and any precomputed rows.
        cleaner: has ``clean(text)`` and ``fingerprint()`` (a :class:`~mmsent.data.text.TextCleaner`); None keeps the
            raw text.
        cache: a :class:`FeatureCache`, or None to always encode.
        batch_size: items per forward pass.
        progress: progress bars with throughput.
        max_image_pixels: images larger than this are refused (decompression-bomb guard).
        num_threads: torch CPU threads while encoding ("auto" = every core), restored afterwards.
        stats: when given, receives per-modality cache/throughput figures under ``"image"`` and ``"text"``.
    """
    stats = {} if stats is None else stats
    image_stats = stats.setdefault("image", {"encoder": source.image.name})
    text_stats = stats.setdefault("text", {"encoder": source.text.name})
    with torch_threads(num_threads):
        image = _merge_precomputed(examples, source.precomputed.get("image"), lambda rows: extract_image_features(
            rows, source.image, cache, batch_size=batch_size, progress=progress, max_image_pixels=max_image_pixels,
            stats=image_stats), image_stats)
        text = extract_text_features(examples, source.text, cleaner, cache, batch_size=batch_size, progress=progress,
                                     stats=text_stats, precomputed=source.precomputed.get("text"))
    return FeatureSet([ex.guid for ex in examples], image, text)


def extract_image_features(examples: Sequence[Example], encoder: ImageEncoder, cache: FeatureCache | None, *,
                           batch_size: int = 32, progress: bool = True, max_image_pixels: int | None = None,
                           stats: dict[str, Any] | None = None) -> ModalityFeatures:
    """The image half of :func:`extract_features` (same cache entries), for callers that need one modality."""
    guids = [ex.guid for ex in examples]
    paths = [ex.image_path for ex in examples]
    image_ids = image_item_ids(paths)
    encode_kw = {"max_pixels": max_image_pixels}
    # max_image_pixels is not part of the key: the limit only refuses images, it never changes the features of one
    # it accepts; resizing/cropping/grid are in the encoder fingerprint.
    # The runtime changes the features by float rounding (bf16 more): another backend, another entry.
    runtime = {} if encoder.backend == "torch" else {"backend": runtime_id(encoder.backend, encoder.num_blocks)}
    return extract_modality("image", guids, paths, image_ids, image_data_fingerprint(guids, image_ids), encoder, cache,
                            batch_size=batch_size, progress=progress, preprocessing=runtime, encode_kwargs=encode_kw,
                            stats=stats)


def extract_text_features(examples: Sequence[Example], encoder: TextEncoder, cleaner: Any, cache: FeatureCache | None,
                          *, batch_size: int = 32, progress: bool = True, stats: dict[str, Any] | None = None,
                          precomputed: tuple[list[str], ModalityFeatures] | None = None) -> ModalityFeatures:
    """The text half of :func:`extract_features` (same cache entries), for callers that need one modality.

    A combined encoder's parts are cached apart, so adding a signal never re-encodes the others. ``precomputed``
    rows stand in for the encoder's ``tunable`` part (a combined encoder's first part): what cross-fitting made."""
    if isinstance(encoder, CombinedTextEncoder):
        parts, part_stats = [], stats.setdefault("parts", {}) if stats is not None else {}
        names = [p.name for p in encoder.parts]
        for i, part in enumerate(encoder.parts):
            key = part.name if names.count(part.name) == 1 else f"{part.name} (part {i + 1})"  # the same model twice
            part_stats[key] = {}
            parts.append(extract_text_features(examples, part, cleaner, cache, batch_size=batch_size,
                                               progress=progress, stats=part_stats[key],
                                               precomputed=precomputed if i == 0 else None))
        return encoder.combine(parts)
    return _merge_precomputed(examples, precomputed, lambda rows: _extract_one_text_encoder(
        rows, encoder, cleaner, cache, batch_size=batch_size, progress=progress, stats=stats), stats)


def _extract_one_text_encoder(examples: Sequence[Example], encoder: TextEncoder, cleaner: Any,
                              cache: FeatureCache | None, *, batch_size: int, progress: bool,
                              stats: dict[str, Any] | None) -> ModalityFeatures:
    """One (not combined) text encoder's features of ``examples``, through the cache. Each part of a combined encoder
    cleans the texts again: 0.16 s for the lab data's 4,511, against seconds to minutes of encoding."""
    guids = [ex.guid for ex in examples]
    if cleaner is None:
        cleaned, cleaner_fp = [ex.text for ex in examples], "raw"
    else:
        cleaned, cleaner_fp = [cleaner.clean(ex.text) for ex in examples], cleaner.fingerprint()
    item_ids, data_fp = [text_digest(t) for t in cleaned], text_data_fingerprint(guids, cleaned, cleaner_fp)
    return extract_modality("text", guids, cleaned, item_ids, data_fp, encoder, cache, batch_size=batch_size,
                            progress=progress, stats=stats)
