"""Image-only on frozen and fine-tuned (out-of-fold) image features combined (exploration, benchmarks/RESULTS.md).

Needs the preset's out-of-fold features saved by ``sweep.py image base``. Example::

    python benchmarks/finetune_explore/stack.py
"""
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *

cfg, ds, split, feats, ex, labels = setup()
tuned = torch.load(f"{OUT}/feat-image-sweep-base-oof.pt", weights_only=False)
frozen = feats.image
stacked = ModalityFeatures(torch.cat([frozen.pooled, tuned.pooled], 1), tuned.tokens, tuned.mask)
print("concatenated", score(cfg, FeatureSet(feats.guids, stacked, feats.text), split, labels, ["image_only"]))
averaged = ModalityFeatures((frozen.pooled + tuned.pooled) / 2, tuned.tokens, tuned.mask)
print("averaged", score(cfg, FeatureSet(feats.guids, averaged, feats.text), split, labels, ["image_only"]))
