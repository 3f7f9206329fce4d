"""End-to-end training: a fusion model trained together with the top of both encoders (``finetune.joint``).

Both encoders keep their trunk/top split (:class:`~mmsent.finetune.base.TuningAdapter`): the trunks run once per
item, and every step runs both tops, the fusion model, and a linear head per encoder. The per-encoder heads add their
own losses (``aux_weight``): without them the text branch, which learns the task faster, takes the fused loss's
whole gradient and the image top barely moves. The loop itself is :func:`~mmsent.finetune.trainer.finetune` (early
stopping on held-out training rows, resumable checkpoints, mixed precision on CUDA).

Layout of a joint folder (``{finetune.output_dir}/joint-{key}``)::

    image/, text/     fine-tuned encoder folders (see :mod:`mmsent.finetune.finetuned`); their head is the
                      encoder's auxiliary head
    fusion/           the jointly trained fusion model (see :func:`mmsent.fusion.registry.save_model`)
    joint.json        written last: settings, history, holdout metrics
    checkpoints/      resumable training state while it runs (removed once it has finished)
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmsent.config import RunConfig
from mmsent.encoders.base import Encoder
from mmsent.features.cache import json_digest
from mmsent.features.extract import round_like_cache
from mmsent.features.featureset import ModalityFeatures
from mmsent.finetune.base import TuningAdapter
from mmsent.finetune.checkpoint import write_json
from mmsent.finetune.finetuned import CHECKPOINTS_DIR, apply_finetuned, is_finetuned, save_finetuned, shared_settings
from mmsent.finetune.trainer import StepCallback, finetune, make_head
from mmsent.fusion.base import FusionInputs, FusionModel
from mmsent.fusion.registry import create_fusion_model, load_model, save_model
from mmsent.training.seed import set_seed

logger = logging.getLogger("mmsent.finetune")

RECORD_FILE = "joint.json"
FUSION_DIR = "fusion"
_KEY_VERSION = 1


class JointAdapter(TuningAdapter):
    """Both encoders' tops as one trainable unit: prepared rows are ``(image_row, text_row)`` pairs and
    :meth:`forward` gives the :class:`FusionInputs` a fusion model reads.

    Args:
        image: the image encoder's adapter.
        text: the text encoder's adapter.
        image_cfg: the image encoder's settings (its learning rates).
        text_cfg: the text encoder's settings (its learning rates and layer decay).
        with_tokens: also hand the tops' token outputs to the fusion model (token fusion models).
    """

    mode = "joint"
    last_n = 0

    def __init__(self, image: TuningAdapter, text: TuningAdapter, image_cfg: Any, text_cfg: Any,
                 with_tokens: bool = False) -> None:
        self.image, self.text = image, text
        self.image_cfg, self.text_cfg = image_cfg, text_cfg
        self.with_tokens = with_tokens
        self.encoder = image.encoder  # the device; the two encoders must share one
        self.network = torch.nn.ModuleDict({"image": image.network, "text": text.network})
        if image.device != text.device:
            raise ValueError(f"end-to-end training needs both encoders on one device, got image on {image.device} "
                             f"and text on {text.device}; set encoders.device")

    @property
    def dim(self) -> int:
        return self.image.dim + self.text.dim

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        out: dict[str, torch.nn.Module] = {}
        for name, adapter in (("image", self.image), ("text", self.text)):
            for prefix, module in adapter.trainable_modules().items():
                out[f"{name}.{prefix}" if prefix else name] = module
        return out

    def lr_groups(self, ecfg: Any) -> list[tuple[list[torch.nn.Parameter], float]]:
        # Each encoder keeps its own learning rates: the image top is a CNN, the text top a transformer.
        return self.image.lr_groups(self.image_cfg) + self.text.lr_groups(self.text_cfg)

    def freeze(self) -> None:
        self.image.freeze()
        self.text.freeze()

    def train(self) -> None:
        self.image.train()  # keeps BatchNorm statistics frozen
        self.text.train()

    def eval(self) -> None:
        self.image.eval()
        self.text.eval()

    def prepare(self, items: Sequence, batch_size: int = 32, progress: bool = False) -> list[Any]:
        """``items``: ``(image_item, text_item)`` pairs -> ``(image_row, text_row)`` pairs."""
        image_rows = self.image.prepare([i for i, _ in items], batch_size=batch_size, progress=progress)
        text_rows = self.text.prepare([t for _, t in items], batch_size=batch_size, progress=progress)
        return list(zip(image_rows, text_rows))

    def lengths(self, rows: Sequence[Any]) -> list[int] | None:
        return self.text.lengths([t for _, t in rows])

    def forward(self, rows: Sequence[Any]) -> FusionInputs:  # type: ignore[override]
        image_rows, text_rows = [r[0] for r in rows], [r[1] for r in rows]
        if self.with_tokens:
            return FusionInputs(*self.image.forward_tokens(image_rows), *self.text.forward_tokens(text_rows))
        image_pooled, text_pooled = self.image.forward(image_rows), self.text.forward(text_rows)
        b = image_pooled.shape[0]
        no_mask = torch.zeros(b, 0, dtype=torch.bool, device=image_pooled.device)
        # Pooled-only models get empty token sequences, as training on cached features gives them.
        return FusionInputs(image_pooled, image_pooled.new_zeros(b, 0, self.image.dim), no_mask,
                            text_pooled, text_pooled.new_zeros(b, 0, self.text.dim), no_mask)

    def features(self, rows: Sequence[Any], batch_size: int = 64) -> ModalityFeatures:
        raise TypeError("a JointAdapter has two modalities: take features from its .image or .text adapter")

    def describe(self) -> dict[str, Any]:
        return {"mode": "joint", "image": self.image.describe(), "text": self.text.describe()}


class JointHead(torch.nn.Module):
    """The fusion model plus one linear head per encoder.

    In training mode (with ``aux_weight > 0``) it returns ``(fused, image, text)`` logits, which
    :func:`~mmsent.finetune.trainer.finetune` turns into the fused loss plus ``aux_weight`` times each encoder's loss;
    in eval mode the fused logits alone.
    """

    def __init__(self, fusion: FusionModel, image_dim: int, text_dim: int, aux_weight: float, dropout: float) -> None:
        super().__init__()
        self.fusion = fusion
        self.image_head = make_head(image_dim, dropout)
        self.text_head = make_head(text_dim, dropout)
        self.aux_weight = float(aux_weight)

    def forward(self, inputs: FusionInputs) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused = self.fusion(inputs)
        if not self.training or self.aux_weight <= 0:
            return fused
        return fused, self.image_head(inputs.image_pooled), self.text_head(inputs.text_pooled)


def joint_model_name(fusion: str) -> str:
    """The comparison's name for a fusion model trained end to end: ``joint_{fusion}``."""
    return f"joint_{fusion.strip().lower().replace('-', '_')}"


def build_joint_fusion(cfg: RunConfig, image_dim: int, text_dim: int) -> FusionModel:
    """The fusion model ``finetune.joint.fusion`` names, built as the comparison builds it (``training`` settings and
    the model's ``compare.model_overrides``)."""
    from mmsent.training.compare import _split_overrides

    name = cfg.finetune.joint.fusion
    train_cfg, ctor = _split_overrides(cfg.training, dict(cfg.compare.model_overrides.get(name, {})))
    return create_fusion_model(name, image_dim, text_dim, train_cfg, **ctor)


@dataclass
class JointResult:
    """A finished end-to-end training: both encoders hold its weights.

    Attributes:
        folder: the joint folder.
        fusion: the jointly trained fusion model (eval mode).
        name: its name in the comparison, ``joint_{fusion}``.
        record: ``joint.json``.
        train_features: modality -> ``(guids, features)`` of the training rows, computed from the cached trunk
            outputs with the tuned tops (what extraction would give, without a second pass over the images); empty
            when a finished training was reused.
    """

    folder: Path
    fusion: FusionModel
    name: str
    record: dict[str, Any]
    train_features: dict[str, tuple[list[str], ModalityFeatures]] = field(default_factory=dict)


def joint_key(image: Encoder, text: Encoder, cfg: RunConfig, fusion: FusionModel, rows: Sequence[Sequence[Any]],
              data_note: str) -> str:
    """Content key of an end-to-end training: both base encoders, the settings that shape it (not the comparison's
    training settings: only the fusion model's constructor arguments), the training rows."""
    ft = dataclasses.asdict(cfg.finetune)
    shared = shared_settings(cfg, joint=True)
    encoders = {m: {k: v for k, v in ft[m].items() if k != "crossfit_folds"} for m in ("image", "text")}
    return json_digest({"version": _KEY_VERSION, "image": image.fingerprint(), "text": text.fingerprint(),
                        "settings": encoders, "shared": shared,
                        "fusion": {"name": fusion.fusion_name, "hparams": fusion.hparams}, "data_note": data_note,
                        "rows": [[str(x) for x in row] for row in rows]})


def is_joint_done(folder: str | Path) -> bool:
    folder = Path(folder)
    return ((folder / RECORD_FILE).is_file() and is_finetuned(folder / "image") and is_finetuned(folder / "text")
            and (folder / FUSION_DIR).is_dir())


def finetune_joint(image: Encoder, text: Encoder, items: Sequence[tuple[Any, str]], item_ids: Sequence[str],
                   labels: Sequence[int], guids: Sequence[str], cfg: RunConfig, folder_root: Path, *,
                   progress: bool = True, callbacks: Sequence[StepCallback] = (), data_note: str = "") -> JointResult:
    """Trains both encoders' tops and the fusion model together on the training rows (or reuses a finished run).

    Args:
        image: a freshly built base image encoder (changed in place).
        text: the same for text.
        items: ``(image path, cleaned text)`` of the training rows.
        item_ids: content digest of each row's image and text (part of the folder's key).
        labels: class indices.
        guids: row ids.
        cfg: the run config (``finetune`` with its ``joint`` section, ``training`` for the fusion model).
        folder_root: where the ``joint-{key}`` folder goes.
        data_note: what else decides the items' content (the cleaner's fingerprint), part of the key.
    """
    from mmsent.finetune.stage import make_adapter

    jcfg = cfg.finetune.joint
    for modality in ("image", "text"):
        ecfg = getattr(cfg.finetune, modality)
        if ecfg.mode == "frozen":
            raise ValueError(f"finetune.joint trains the top of both encoders, but finetune.{modality}.mode=frozen; "
                             f"set finetune.{modality}.mode to last_n or full, or finetune.joint.enabled=false")
        if int(ecfg.crossfit_folds) != 0:
            raise ValueError(f"finetune.{modality}.crossfit_folds={ecfg.crossfit_folds} applies to separate "
                             "fine-tuning only; with finetune.joint.enabled=true set it to 0")
    base = {"image": image.fingerprint(), "text": text.fingerprint()}
    set_seed(cfg.finetune.seed)  # the fusion model's and the heads' initial weights
    fusion = build_joint_fusion(cfg, int(image.dim), int(text.dim))
    head = JointHead(fusion, int(image.dim), int(text.dim), jcfg.aux_weight, jcfg.dropout)
    key = joint_key(image, text, cfg, fusion, [[g, i, y] for g, i, y in zip(guids, item_ids, labels)], data_note)
    folder = folder_root / f"joint-{key[:20]}"
    name = joint_model_name(jcfg.fusion)
    if is_joint_done(folder):
        logger.info("reusing the end-to-end training in %s", folder)
        apply_finetuned(image, folder / "image")
        apply_finetuned(text, folder / "text")
        record = _read_record(folder)
        return JointResult(folder, load_model(folder / FUSION_DIR, device=image.device), name, record)

    image_adapter = make_adapter(image, cfg.finetune.image, cfg.data.max_image_pixels)
    text_adapter = make_adapter(text, cfg.finetune.text)
    adapter = JointAdapter(image_adapter, text_adapter, cfg.finetune.image, cfg.finetune.text,
                           with_tokens=getattr(fusion, "uses_tokens", True))
    sizes = adapter.describe()
    logger.info("training %s end to end with the top of both encoders (%d of %d encoder parameters trainable) on "
                "%d rows -> %s", jcfg.fusion, sizes["image"]["trainable_params"] + sizes["text"]["trainable_params"],
                sizes["image"]["total_params"] + sizes["text"]["total_params"], len(items), folder)
    rows = adapter.prepare(list(items), batch_size=cfg.encoders.batch_size, progress=progress)
    result = finetune(adapter, list(items), labels, guids, jcfg, cfg.finetune, folder / CHECKPOINTS_DIR,
                      run_key=key, progress=progress, callbacks=callbacks, desc="joint fine-tune", head=head,
                      rows=rows)
    # Rounded as extraction rounds them, so these rows look exactly like rows extracted now or read from the cache.
    train_features = {"image": (list(guids), round_like_cache(image_adapter.features([r[0] for r in rows]))),
                      "text": (list(guids), round_like_cache(text_adapter.features([r[1] for r in rows])))}
    shared = shared_settings(cfg, joint=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for modality, sub, sub_head in (("image", image_adapter, head.image_head), ("text", text_adapter, head.text_head)):
        sub_result = dataclasses.replace(result, head=sub_head, adapter=sub.describe())
        save_finetuned(folder / modality, sub, sub_result, base_fingerprint=base[modality],
                       settings={"encoder": dataclasses.asdict(getattr(cfg.finetune, modality)), "shared": shared},
                       extra={"key": key, "rows": len(guids), "created": created, "joint": str(folder)})
    fusion.eval()
    save_model(fusion, folder / FUSION_DIR, {"joint": True, "key": key, "holdout_metrics": result.holdout_metrics})
    record = {"name": name, "fusion": jcfg.fusion, "key": key, "rows": len(guids), "created": created,
              "settings": dataclasses.asdict(jcfg), "shared": shared,
              "result": {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "head"}}
    write_json(folder / RECORD_FILE, record)
    shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)
    return JointResult(folder, fusion, name, record, train_features)


def _read_record(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
