import sys, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
img, txt = sys.argv[1], sys.argv[2]
models = sys.argv[3].split(",") if len(sys.argv) > 3 else ["concat","gated","single_stream","dual_stream","text_only","image_only"]
cfg, ds, split, feats, ex, labels = setup()
I = feats.image if img == "frozen" else torch.load(f"{OUT}/feat-image-{img}.pt", weights_only=False)
T = feats.text if txt == "frozen" else torch.load(f"{OUT}/feat-text-{txt}.pt", weights_only=False)
print(img, txt, score(cfg, FeatureSet(feats.guids, I, T), split, labels, models), flush=True)
