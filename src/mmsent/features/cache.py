"""Content-keyed on-disk feature cache (keys are built from :mod:`mmsent.fingerprint` digests).

Layout: ``root/{modality}/{key[:2]}/{key}.safetensors`` (pooled float32, tokens float16, mask bool) and a JSON
sidecar ``{key}.json`` next to it (guids, encoder fingerprint, creation time, shapes, per-item content ids).
The sidecar is written last, so an entry without one is incomplete and ignored; it holds the tensor file's sha256,
and an entry whose sidecar lacks it is treated as damaged (recomputed). The tensor file's own metadata holds a digest
of the sidecar's row mapping (guids and content ids), so an edited mapping cannot move features onto other rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmsent.features.featureset import ModalityFeatures
from mmsent.fingerprint import file_digest
from mmsent.io import atomic_write

logger = logging.getLogger("mmsent.features")

CACHE_FORMAT = 2  # 2: the tensor file vouches for the sidecar's rows
FP16_MAX = 65504.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CacheEntryError(ValueError):
    """An entry on disk is unreadable or inconsistent with its sidecar."""


def rows_digest(guids: Sequence[str], item_ids: Sequence[str] | None) -> str:
    """The sha256 of an entry's row mapping: which guid and content id each row of the tensors belongs to."""
    return hashlib.sha256(json.dumps([list(guids), item_ids], ensure_ascii=False).encode("utf-8")).hexdigest()


def _check_rows(tensor_path: Path, meta: Mapping[str, Any], key: str) -> None:
    """Raises :class:`CacheEntryError` unless the tensor file was written for this key and the sidecar's rows."""
    if meta.get("format") != CACHE_FORMAT:
        raise CacheEntryError(f"format {meta.get('format')!r}, this version reads {CACHE_FORMAT}")
    with safe_open(str(tensor_path), "pt") as f:
        stamp = f.metadata() or {}
    if stamp.get("key") != key:
        raise CacheEntryError(f"the tensor file was written for key {stamp.get('key')!r}")
    if stamp.get("rows") != rows_digest(meta["guids"], meta.get("item_ids")):
        raise CacheEntryError("the sidecar's guids or content ids are not the rows the tensors were written for")


class FeatureCache:
    """Content-keyed store of :class:`ModalityFeatures`, one entry per (modality, key).

    Args:
        root: cache folder (``~`` is expanded); created on first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def _paths(self, modality: str, key: str) -> tuple[Path, Path]:
        if not key or any(c in key for c in "/\\.") or not modality.isidentifier():
            raise ValueError(f"bad cache modality/key: {modality!r}/{key!r}")
        folder = self.root / modality / key[:2]
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def path_for(self, modality: str, key: str) -> Path:
        """Where the tensors of an entry live."""
        return self._paths(modality, key)[0]

    def get(self, modality: str, key: str) -> tuple[list[str], ModalityFeatures] | None:
        """Returns ``(guids, features)`` for an entry, or None when it is missing or damaged.

        A damaged entry (unreadable file, shapes that disagree with the sidecar) is logged and removed, so the caller
        recomputes it instead of crashing.
        """
        tensor_path, meta_path = self._paths(modality, key)
        if not meta_path.exists() or not tensor_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            expected = meta.get("sha256")
            # Without its checksum nothing vouches for the tensors: deleting the field must not switch the check off
            # (entries of versions before checksums are recomputed once).
            if not isinstance(expected, str) or not _SHA256.fullmatch(expected):
                raise CacheEntryError("the sidecar holds no sha256 of the tensor file")
            if file_digest(tensor_path, memo=False) != expected:
                raise CacheEntryError("tensor file changed since it was written (checksum mismatch)")
            _check_rows(tensor_path, meta, key)
            tensors = load_file(str(tensor_path))
            feats = self._validate(meta, tensors)
        except Exception as exc:  # noqa: BLE001 - any failure to read means "recompute", never "crash"
            logger.warning("feature cache entry %s/%s is damaged (%s); removing it and recomputing", modality, key, exc)
            self.remove(modality, key)
            return None
        return list(meta["guids"]), feats

    @staticmethod
    def _validate(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> ModalityFeatures:
        missing = {"pooled", "tokens", "mask"} - set(tensors)
        if missing:
            raise CacheEntryError(f"missing tensors {sorted(missing)}")
        pooled, tokens, mask = tensors["pooled"], tensors["tokens"], tensors["mask"]
        n = len(meta["guids"])
        shapes = meta.get("shapes", {})
        for name, t in (("pooled", pooled), ("tokens", tokens), ("mask", mask)):
            if list(t.shape) != list(shapes.get(name, [])):
                raise CacheEntryError(f"{name} has shape {list(t.shape)}, sidecar says {shapes.get(name)}")
        if pooled.ndim != 2 or tokens.ndim != 3 or mask.ndim != 2:
            raise CacheEntryError("wrong tensor ranks")
        if pooled.shape[0] != n or tokens.shape[0] != n or mask.shape[0] != n:
            raise CacheEntryError(f"row counts {pooled.shape[0]}/{tokens.shape[0]}/{mask.shape[0]} != {n} guids")
        if tokens.shape[2] != pooled.shape[1] or tokens.shape[1] != mask.shape[1]:
            raise CacheEntryError("tokens do not match pooled/mask")
        if not (torch.isfinite(pooled).all() and torch.isfinite(tokens).all()):
            raise CacheEntryError("holds NaN or infinite values")
        return ModalityFeatures(pooled.float(), tokens.float(), mask.bool())

    def put(
        self,
        modality: str,
        key: str,
        guids: Sequence[str],
        features: ModalityFeatures,
        *,
        fingerprint: str,
        config_key: str | None = None,
        item_ids: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Stores an entry atomically (tensors first, sidecar last) and returns the tensor file's path.

        Args:
            guids: one per row of ``features``.
            fingerprint: the encoder's fingerprint, kept for humans and ``entries()``.
            config_key: groups entries made with the same encoder and preprocessing; rows of such entries can be
                reused by content (``item_ids``) for other example lists.
            item_ids: one content id per row (image bytes / cleaned text digest).
            extra: more JSON-able metadata for the sidecar.
        """
        n = len(guids)
        if len(features) != n or (item_ids is not None and len(item_ids) != n):
            raise ValueError(f"put: {len(features)} feature rows, {n} guids, {len(item_ids or [])} item ids")
        tensors = {
            "pooled": features.pooled.detach().to("cpu", torch.float32).contiguous(),
            # fp16 halves the disk footprint; clamp so an outlier activation becomes a large number, not inf
            "tokens": features.tokens.detach().to("cpu").float().clamp(-FP16_MAX, FP16_MAX).half().contiguous(),
            "mask": features.mask.detach().to("cpu", torch.bool).contiguous(),
        }
        meta = {
            "format": CACHE_FORMAT,
            "modality": modality,
            "key": key,
            "fingerprint": fingerprint,
            "config_key": config_key,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
            "guids": [str(g) for g in guids],
            "item_ids": list(item_ids) if item_ids is not None else None,
            **(dict(extra) if extra else {}),
        }
        tensor_path, meta_path = self._paths(modality, key)
        # A stale sidecar must not vouch for the new tensor file while it is being replaced.
        with contextlib.suppress(OSError):
            meta_path.unlink()
        stamp = {"key": key, "rows": rows_digest(meta["guids"], meta["item_ids"])}
        atomic_write(tensor_path, lambda tmp: save_file(tensors, tmp, metadata=stamp))
        meta["sha256"] = file_digest(tensor_path, memo=False)
        atomic_write(
            meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        )
        return tensor_path

    def remove(self, modality: str, key: str) -> None:
        """Deletes an entry (both files); missing files are fine."""
        for p in self._paths(modality, key)[::-1]:
            with contextlib.suppress(OSError):
                p.unlink()

    def clear(self, modality: str | None = None) -> int:
        """Removes every entry (of one modality, or all); returns how many were removed."""
        metas = self.entries(modality)
        for meta in metas:
            self.remove(meta["modality"], meta["key"])
        return len(metas)

    def entries(self, modality: str | None = None) -> list[dict[str, Any]]:
        """Sidecar metadata of every complete entry (newest first), optionally for one modality."""
        if not self.root.exists():
            return []
        pattern = f"{modality}/*/*.json" if modality else "*/*/*.json"
        out = []
        for meta_path in self.root.glob(pattern):
            if not meta_path.with_suffix(".safetensors").exists():
                continue
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT:
                out.append(meta)
        out.sort(key=lambda m: m.get("created", ""), reverse=True)
        return out
