"""A tiny but complete run directory made by the real pipeline, with small random encoders (nothing downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from mmsent_testkit import build_tiny_bert
from PIL import Image

LABEL_WORDS = {"positive": "happy love great win sun", "neutral": "the park is on a day",
               "negative": "sad hate awful lose rain"}


def jpeg_bytes(w: int = 96, h: int = 80, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def write_lab_dataset(root: Path, n_train: int = 30, n_test: int = 4) -> Path:
    """A lab-format folder whose texts carry the label's words and whose images are tinted by label."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = ["positive", "neutral", "negative"]
    tint = {"positive": (200, 180, 40), "neutral": (120, 120, 120), "negative": (30, 40, 160)}
    train_lines, test_lines = ["guid,tag"], ["guid,tag"]
    for i in range(n_train + n_test):
        guid = str(100 + i)
        label = labels[i % 3]
        words = LABEL_WORDS[label].split()
        text = " ".join(rng.choice(words, size=4)) + f" #{words[0]}"
        base = np.array(tint[label], dtype=np.int16)
        arr = np.clip(base + rng.integers(-60, 60, size=(72, 88, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(data / f"{guid}.jpg", quality=85)
        (data / f"{guid}.txt").write_text(text, encoding="utf-8")
        (train_lines if i < n_train else test_lines).append(f"{guid},{label if i < n_train else 'null'}")
    (root / "train.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (root / "test_without_label.txt").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    return root


def build_tiny_run(base: Path, predict_with: str = "dual_stream") -> Path:
    """Runs ``mmsent.pipeline.run`` on a 34-row dataset with a random EfficientNet-Lite0 and a 2-layer BERT."""
    from efficientnet_lite_pytorch import EfficientNet

    from mmsent.config import load_config
    from mmsent.pipeline import run

    torch.manual_seed(0)
    weights = base / "lite0-random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), weights)
    bert = build_tiny_bert(base / "bert")
    root = write_lab_dataset(base / "lab")
    cfg = load_config(overrides=[
        f"data.root={root}", "data.val_fraction=0.3", f"cache_dir={base / 'cache'}",
        f"encoders.image=efficientnet-lite0:{weights}", f"encoders.text={bert}", "encoders.image_grid=2",
        "encoders.text_max_length=16", "encoders.device=cpu", "encoders.batch_size=16", "encoders.backend=torch",
        "training.device=cpu",
        "training.hidden_dim=16", "training.num_heads=2", "training.epochs=4", "training.patience=4",
        "compare.models=dual_stream,gated,text_only", "compare.seeds=0,1", f"compare.predict_with={predict_with}",
    ])
    run_dir = base / "run"
    run(cfg, run_dir, progress=False)
    return run_dir


def run_on_the_sample(run_dir: Path, image: str, text: str, *extra: str, models: str = "concat,dual_stream"):
    """``mmsent.pipeline.run`` on the bundled sample with tiny settings and the given encoder names; the result."""
    from mmsent.config import load_config
    from mmsent.pipeline import run

    cfg = load_config(overrides=[  # data.root unset: the bundled sample
        f"cache_dir={run_dir.parent / 'cache'}", f"encoders.image={image}", f"encoders.text={text}",
        "encoders.image_grid=2", "encoders.text_max_length=16", "encoders.device=cpu", "encoders.backend=torch",
        "training.device=cpu", "training.hidden_dim=16", "training.num_heads=2", "training.epochs=2",
        f"compare.models={models}", "compare.seeds=0", "compare.workers=1", *extra,
    ])
    return run(cfg, run_dir, progress=False)


def serve_one_sample_post(run_dir: Path) -> dict:
    """``POST /predict`` with a sample image and a text to an app serving ``run_dir``; asserts 200, returns the body."""
    from fastapi.testclient import TestClient

    from mmsent.data.sample import sample_dataset_path
    from mmsent.inference import RunPredictor
    from mmsent.serve import create_app

    image = next((sample_dataset_path() / "data").glob("*.jpg"))
    with TestClient(create_app(predictor=RunPredictor(run_dir))) as client:
        r = client.post("/predict", files={"image": ("a.jpg", image.read_bytes(), "image/jpeg")},
                        data={"text": "happy day"})
    assert r.status_code == 200, r.text
    return r.json()
