"""Exploration harness behind the fine-tuning variants table in benchmarks/RESULTS.md (2026-11-30).

Not a polished tool: scripts used to compare fine-tuning variants on lab5 quickly. The frozen trunk's outputs for
every train+val row of the run's split are cached once (in $MMSENT_EXPLORE, default /tmp/mmsent-explore), a variant
fine-tunes the top on the training rows only (optionally K-fold cross-fitted), and the downstream models are
compared on the validation rows exactly as ``mmsent run`` does (3 seeds). Examples::

    python benchmarks/finetune_explore/exp_image.py last_n=2 folds=5 tag=base
    python benchmarks/finetune_explore/exp_text.py last_n=6 epochs=4 folds=5 tag=l6e4
    python benchmarks/finetune_explore/views.py 2 2 3400      # 2 augmented trunk views of the 3400 training rows
    python benchmarks/finetune_explore/exp_image.py last_n=2 views=2 epochs=4 folds=5 tag=views
    python benchmarks/finetune_explore/combo.py base-oof base-naive   # image / text features saved by the above
"""
import copy, json, logging, sys, time
from pathlib import Path
import torch, numpy as np
from mmsent.config import load_config
from mmsent import pipeline
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.finetune.stage import make_adapter
from mmsent.finetune.trainer import finetune
from mmsent.features.featureset import FeatureSet, ModalityFeatures
from mmsent.data.text import TextCleaner
from mmsent.labels import label_to_index

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
import os

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MMSENT_EXPLORE", "/tmp/mmsent-explore"))
OUT.mkdir(parents=True, exist_ok=True)
DATA = os.environ.get("MMSENT_LAB5", str(REPO.parent / "shared" / "datasets" / "lab5"))
CACHE = os.environ.get("MMSENT_CACHE", "/tmp/mmsent-explore/cache")
torch.set_num_threads(2)

def setup(overrides=()):
    cfg = load_config(None, [f"data.root={DATA}", f"cache_dir={CACHE}", *overrides])
    ds = pipeline.load_dataset(cfg)
    split = pipeline.prepare_split(cfg, ds)
    feats = pipeline.extract(cfg, ds, progress=False)
    by = {e.guid: e for e in ds.train}
    guids = split.train + split.val
    ex = [by[g] for g in guids]
    labels = {e.guid: e.label for e in ds.train}
    return cfg, ds, split, feats.select(guids), ex, labels

def trunk_cache(cfg, ex, modality, last_n):
    path = OUT / f"trunk-{modality}-{last_n}.pt"
    img, txt = create_encoders_from_config(cfg.encoders, cache_dir=Path(cfg.cache_dir) / "models")
    enc = img if modality == "image" else txt
    ecfg = copy.deepcopy(getattr(cfg.finetune, modality)); ecfg.mode = "last_n"; ecfg.last_n = last_n
    adapter = make_adapter(enc, ecfg)
    if path.exists():
        rows = torch.load(path, weights_only=False)
    else:
        t = time.time()
        if modality == "image":
            items = [e.image_path for e in ex]
        else:
            cl = TextCleaner(cfg.cleaning); items = [cl.clean(e.text) for e in ex]
        rows = adapter.prepare(items, batch_size=32)
        torch.save(rows, path); print(f"trunk {modality} {last_n}: {time.time()-t:.0f}s", flush=True)
    return adapter, rows

def variant_configs(cfg, modality, last_n, args):
    """(encoder settings, shared settings) of a variant: the config's, in last_n mode, with ``args`` overriding any
    encoder field (but last_n / mode) and ``patience`` / ``holdout_fraction``."""
    ecfg = copy.deepcopy(getattr(cfg.finetune, modality)); ecfg.mode = "last_n"; ecfg.last_n = last_n
    for k, v in args.items():
        if hasattr(ecfg, k) and k not in ("last_n", "mode"):
            setattr(ecfg, k, type(getattr(ecfg, k))(v))
    fcfg = copy.deepcopy(cfg.finetune)
    for k in ("patience", "holdout_fraction"):
        if k in args:
            setattr(fcfg, k, type(getattr(fcfg, k))(args[k]))
    return ecfg, fcfg

def top_features(adapter, rows, modality=None):
    """Features of prepared rows as extraction makes them (the adapter's own top pass)."""
    return adapter.features(rows)

def tune(adapter, rows, idx, y, ecfg, fcfg, seed=0):
    fcfg = copy.deepcopy(fcfg); fcfg.seed = seed
    adapter.prepare = lambda items, **kw: [rows[i] for i in items]
    res = finetune(adapter, list(idx), [y[i] for i in idx], [str(i) for i in idx], ecfg, fcfg, None)
    return res

def score(cfg, feats, split, labels, models, seeds=(0, 1, 2)):
    c = copy.deepcopy(cfg); c.compare.models = list(models); c.compare.seeds = list(seeds)
    comp = pipeline.compare(c, feats, split, labels, progress=False)
    return {r["model"]: round(r["macro_f1_mean"], 4) for r in comp.summary()}


def text_top_features(adapter, rows):
    return adapter.features(rows)
