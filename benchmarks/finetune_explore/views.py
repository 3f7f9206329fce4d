"""Augmented trunk views: random resized crop + flip, decoded once per view, trunk computed once."""
import sys, time, torch, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from harness import *
from PIL import Image
from mmsent.data.images import load_image

def aug_view(enc, path, rng):
    img = load_image(path, min_side=enc.resize_size)
    W, H = img.size
    area = W * H
    for _ in range(10):
        s = rng.uniform(0.4, 1.0); r = np.exp(rng.uniform(np.log(3/4), np.log(4/3)))
        w = int(round(np.sqrt(area * s * r))); h = int(round(np.sqrt(area * s / r)))
        if w <= W and h <= H:
            x = rng.integers(0, W - w + 1); y = rng.integers(0, H - h + 1); break
    else:
        w, h = min(W, H), min(W, H); x = (W - w) // 2; y = (H - h) // 2
    crop = img.crop((x, y, x + w, y + h)).resize((enc.input_size, enc.input_size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop.convert("RGB"), dtype=np.uint8)

if __name__ == "__main__":
    last_n = int(sys.argv[1]); V = int(sys.argv[2]); n_train = int(sys.argv[3])
    cfg, ds, split, feats, ex, labels = setup()
    adapter, rows = trunk_cache(cfg, ex, "image", last_n)
    enc = adapter.encoder
    rng = np.random.default_rng(0)
    for v in range(V):
        path = OUT / f"trunk-image-{last_n}-view{v}.pt"
        if path.exists(): continue
        t = time.time(); out = []
        for s in range(0, n_train, 32):
            px = torch.from_numpy(np.stack([aug_view(enc, e.image_path, rng) for e in ex[s:min(s+32, n_train)]]))
            with torch.inference_mode():
                maps = adapter._trunk(adapter._normalise(px)).float()
            out.extend(m.clone() for m in maps.unbind(0))
        torch.save(out, path); print("view", v, time.time() - t, flush=True)
