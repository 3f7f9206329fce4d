"""Sweep of fine-tuning regularisers for one encoder, selected without the validation rows (exploration).

For each variant the encoder's top is cross-fitted over the split's training rows (5 folds, the same folds
``mmsent`` uses), and the fine-tuning head's out-of-fold predictions give a macro-F1 over all 3400 training rows:
that is the selection criterion (ten times the rows of the 340-row early-stopping holdout, and no validation row).
The downstream unimodal score on the validation rows is computed too, for the record only. Examples::

    python benchmarks/finetune_explore/sweep.py image base ls=0.1 mix=0.4 mix=0.4,ls=0.1
    python benchmarks/finetune_explore/sweep.py text base ls=0.1
    python benchmarks/finetune_explore/sweep.py text:6 epochs=4,folds_only=1    # all 6 text layers

A variant is ``base`` or comma-separated ``key=value`` pairs: ``ls`` label smoothing, ``mix`` mixup alpha on the
trunk outputs (images) / pooled vectors (text), any field of the encoder's fine-tuning config (``epochs``,
``lr_last_n``, ``dropout``, ``weight_decay``, ...) or ``holdout_fraction`` / ``patience``, ``folds_only=1`` to skip
the downstream score, ``freeze_blocks=1`` (images) to train the head conv alone on the same trunk cache.
"""
import copy, json, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
import torch.nn.functional as TF
import mmsent.finetune.trainer as trainer_mod
from mmsent.finetune.crossfit import fold_rows
from mmsent.finetune.trainer import load_tuned_state
from mmsent.training.metrics import compute_metrics

modality, _, last_n_arg = sys.argv[1].partition(":")  # "text:6": another last_n than the config's
variants = sys.argv[2:] or ["base"]
cfg, ds, split, feats, ex, labels = setup()
ntr = len(split.train)
y = [label_to_index(e.label) for e in ex]
last_n = int(last_n_arg) if last_n_arg else getattr(cfg.finetune, modality).last_n
adapter, rows = trunk_cache(cfg, ex, modality, last_n)
base_state = {k: v.clone() for k, v in adapter.tuned_state().items()}
folds = fold_rows(y[:ntr], 5, cfg.finetune.seed)


class Regularised:
    """Stands in for torch.nn.functional inside the trainer: label smoothing, and the mixed loss after a mixup."""

    def __init__(self):
        self.ls = 0.0
        self.pending = None  # (perm, lam) of the last training forward

    def __getattr__(self, name):
        return getattr(TF, name)

    def cross_entropy(self, logits, target, weight=None):
        if self.pending is None:
            return TF.cross_entropy(logits, target, weight=weight, label_smoothing=self.ls)
        perm, lam = self.pending
        self.pending = None
        return (lam * TF.cross_entropy(logits, target, weight=weight, label_smoothing=self.ls)
                + (1 - lam) * TF.cross_entropy(logits, target[perm], weight=weight, label_smoothing=self.ls))


reg = Regularised()
trainer_mod.F = reg
plain_forward = adapter.forward


def training():
    mods = list(adapter.trainable_modules().values())
    return mods[-1].training


def make_forward(alpha):
    def forward(rows_):
        if alpha <= 0 or not training():
            return plain_forward(rows_)
        lam = float(np.random.beta(alpha, alpha))
        perm = torch.randperm(len(rows_))
        reg.pending = (perm, lam)
        if modality == "image":  # same-shape feature maps: mix the trunk outputs (manifold mixup)
            return plain_forward([lam * rows_[i] + (1 - lam) * rows_[int(perm[i])] for i in range(len(rows_))])
        pooled = plain_forward(rows_)  # variable-length token states: mix the pooled vectors instead
        return lam * pooled + (1 - lam) * pooled[perm]
    return forward


def run_variant(spec):
    args = {} if spec == "base" else dict(kv.split("=", 1) for kv in spec.split(","))
    ecfg, fcfg = variant_configs(cfg, modality, last_n, args)
    reg.ls = float(args.get("ls", 0)); adapter.forward = make_forward(float(args.get("mix", 0)))
    adapter.freeze()
    if int(args.get("freeze_blocks", 0)):  # images: only the head conv (+ its BatchNorm) trains, as last_n=0 would
        for name, module in adapter.trainable_modules().items():
            if name.startswith("_blocks."):
                module.requires_grad_(False)
    t = time.time()
    oof_logits = torch.zeros(ntr, 3)
    P = None
    for held in folds:
        keep = sorted(set(range(ntr)) - set(held))
        load_tuned_state(adapter.network, base_state)
        res = tune(adapter, rows, keep, y, ecfg, fcfg)
        m = adapter.features([rows[i] for i in held])
        res.head.eval()
        with torch.no_grad():
            oof_logits[held] = res.head(m.pooled)
        if P is None:
            P, T = torch.zeros(ntr, m.pooled.shape[1]), torch.zeros(ntr, *m.tokens.shape[1:])
            K = torch.zeros(ntr, *m.mask.shape[1:], dtype=m.mask.dtype)
        P[held] = m.pooled; T[held] = m.tokens; K[held] = m.mask
    oof_f1 = compute_metrics(np.array(y[:ntr]), oof_logits.argmax(1).numpy())["macro_f1"]
    out = {"variant": spec, "last_n": last_n, "oof_head_macro_f1": round(oof_f1, 4),
           "cv_seconds": round(time.time() - t)}
    print(spec, "OOF head macro-F1 over training rows", out["oof_head_macro_f1"], flush=True)
    if not int(args.get("folds_only", 0)):
        load_tuned_state(adapter.network, base_state)
        tune(adapter, rows, list(range(ntr)), y, ecfg, fcfg)
        mv = adapter.features(rows[ntr:])
        M = ModalityFeatures(torch.cat([P, mv.pooled]), torch.cat([T, mv.tokens]), torch.cat([K, mv.mask]))
        if modality == "text":  # the preset keeps the text encoder's own features; score both
            mo = adapter.features(rows[:ntr])
            own = ModalityFeatures(torch.cat([mo.pooled, mv.pooled]), torch.cat([mo.tokens, mv.tokens]),
                                   torch.cat([mo.mask, mv.mask]))
            fs_own = FeatureSet(feats.guids, feats.image, own)
            out["downstream_own"] = score(cfg, fs_own, split, labels, ["text_only"])
        fs = (FeatureSet(feats.guids, M, feats.text) if modality == "image"
              else FeatureSet(feats.guids, feats.image, M))
        out["downstream_oof"] = score(cfg, fs, split, labels, [f"{modality}_only"])
        print(spec, out, flush=True)
        safe = spec.replace("=", "").replace(",", "_")
        torch.save(M, f"{OUT}/feat-{modality}-sweep-{safe}-oof.pt")
    with open(f"{OUT}/sweep-{modality}.jsonl", "a") as fh:
        fh.write(json.dumps(out) + "\n")


for spec in variants:
    run_variant(spec)
