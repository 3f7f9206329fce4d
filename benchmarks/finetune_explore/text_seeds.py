"""Text fine-tuning seed spread with and without early stopping (exploration, see benchmarks/RESULTS.md).

For each ``finetune.seed`` the text top is fine-tuned on all training rows as the preset does (own features, no
cross-fitting), once with early stopping on a 10% holdout (the preset) and once for a fixed 3 epochs on every row,
and text_only is scored on the validation rows (mean of 3 fusion seeds). Example::

    python benchmarks/finetune_explore/text_seeds.py 0,1,2
    python benchmarks/finetune_explore/text_seeds.py 0,1,2 bag   # preset only; also the seeds' features averaged
"""
import copy, json, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
from mmsent.finetune.trainer import load_tuned_state

seeds = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2").split(",")]
cfg, ds, split, feats, ex, labels = setup()
ntr = len(split.train)
y = [label_to_index(e.label) for e in ex]
adapter, rows = trunk_cache(cfg, ex, "text", cfg.finetune.text.last_n)
base_state = {k: v.clone() for k, v in adapter.tuned_state().items()}
ecfg = cfg.finetune.text
bag = len(sys.argv) > 2 and sys.argv[2] == "bag"
summed = None
for holdout in ((0.1,) if bag else (0.1, 0.0)):
    for seed in seeds:
        fcfg = copy.deepcopy(cfg.finetune); fcfg.holdout_fraction = holdout
        load_tuned_state(adapter.network, base_state)
        res = tune(adapter, rows, list(range(ntr)), y, ecfg, fcfg, seed=seed)
        own = adapter.features(rows)
        summed = own if summed is None else ModalityFeatures(summed.pooled + own.pooled, summed.tokens + own.tokens,
                                                             summed.mask)
        got = score(cfg, FeatureSet(feats.guids, feats.image, own), split, labels, ["text_only"])
        out = {"holdout_fraction": holdout, "seed": seed, "best_epoch": res.best_epoch, **got}
        print(out, flush=True)
        with open(f"{OUT}/text-seeds.jsonl", "a") as fh:
            fh.write(json.dumps(out) + "\n")
if bag:  # bagging: every seed's own features, averaged (validation rows: the seeds' encoders averaged too)
    k = len(seeds)
    mean = ModalityFeatures(summed.pooled / k, summed.tokens / k, summed.mask)
    got = score(cfg, FeatureSet(feats.guids, feats.image, mean), split, labels, ["text_only", "gated"])
    print({"bagged_seeds": seeds, **got}, flush=True)
    with open(f"{OUT}/text-seeds.jsonl", "a") as fh:
        fh.write(json.dumps({"bagged_seeds": seeds, **got}) + "\n")
