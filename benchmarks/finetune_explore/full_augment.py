"""Full fine-tuning of the image encoder with pixel augmentation (random resized crop + flip per step) on lab5.

The GPU recipe, run on the 2-core CPU once to see whether it is worth it: every image is decoded once, every step runs
the whole EfficientNet on freshly augmented crops. Prints the fine-tuning head's validation score and the downstream
models' scores on the tuned encoder's features (training rows: its own features; text frozen). Example::

    MMSENT_EXPLORE=/tmp/explore MMSENT_CACHE=/tmp/cache-lab5 \\
        python benchmarks/finetune_explore/full_augment.py epochs=2 tag=full-aug
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import *  # noqa: F403 -- exploration script, see harness.py
from mmsent.training.metrics import compute_metrics

args = dict(a.split("=", 1) for a in sys.argv[1:])
tag = args.get("tag", "full-aug")
cfg, ds, split, feats, ex, labels = setup()
ntr = len(split.train)
y = [label_to_index(e.label) for e in ex]
img, _ = create_encoders_from_config(cfg.encoders, cache_dir=Path(cfg.cache_dir) / "models")
ecfg = copy.deepcopy(cfg.finetune.image)
ecfg.mode, ecfg.augment, ecfg.crossfit_folds = "full", args.get("augment", "true") == "true", 0
ecfg.epochs = int(args.get("epochs", 2))
ecfg.lr_full = float(args.get("lr", ecfg.lr_full))
fcfg = copy.deepcopy(cfg.finetune)
adapter = make_adapter(img, ecfg)
t = time.time()
rows = adapter.prepare([e.image_path for e in ex], batch_size=32)
print(f"decoded {len(rows)} images in {time.time() - t:.0f}s", flush=True)
t = time.time()
res = tune(adapter, rows, list(range(ntr)), y, ecfg, fcfg)
print(f"tuned in {time.time() - t:.0f}s", [(h["epoch"], round(h.get("holdout_macro_f1", 0), 3)) for h in res.history],
      flush=True)
t = time.time()
mf = adapter.features(rows, batch_size=32)
print(f"features in {time.time() - t:.0f}s", flush=True)
with torch.no_grad():
    head_val = res.head(mf.pooled[ntr:]).argmax(1).numpy()
out = {"head_val_macro_f1": compute_metrics(np.array(y[ntr:]), head_val)["macro_f1"],
       "history": res.history, "seconds": res.seconds}
print("fine-tuning head on validation rows", round(out["head_val_macro_f1"], 4), flush=True)
out["downstream"] = score(cfg, FeatureSet(feats.guids, mf, feats.text), split, labels, ["image_only", "gated", "concat"])
print("downstream (training rows: own features; text frozen)", out["downstream"], flush=True)
torch.save(mf, OUT / f"feat-image-{tag}-naive.pt")
json.dump({"args": args, **out}, open(OUT / f"res-image-{tag}.json", "w"), default=str)
