"""A tiny but complete run directory made by the real pipeline, with small random encoders (nothing downloaded)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmsent_testkit import build_tiny_bert
from PIL import Image

EMOTIONS = ("angry", "bored", "calm", "fear", "happy", "love", "sad")  # TumEmo's seven classes
SARCASM = ("not_sarcastic", "sarcastic")  # HFM's two
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


def build_tiny_run(base: Path, predict_with: str = "dual_stream", seeds: str = "0,1") -> Path:
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
        "compare.models=dual_stream,gated,text_only", f"compare.seeds={seeds}", f"compare.predict_with={predict_with}",
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


def _probs_near(gold: np.ndarray, k: int, rng: np.random.Generator, skill: float = 1.0) -> np.ndarray:
    """Softmax probabilities that lean toward the gold class: right most of the time, wrong some of it."""
    logits = rng.normal(size=(len(gold), k)) + skill * np.eye(k)[gold]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _write_held_out(run_dir: Path, labels: Sequence[str], guids: list[str], gold: np.ndarray,
                    runs: list[tuple[str, int, np.ndarray]], ensemble: np.ndarray) -> None:
    """``validation_predictions.csv`` as the pipeline writes it: each run's rows, then the ensemble's (fold -1)."""
    lines = ["guid,gold,model,fold,seed," + ",".join(f"p_{n}" for n in labels) + "\n"]
    for model, fold, seed, probs in [(m, 0, s, p) for m, s, p in runs] + [("ensemble", -1, 0, ensemble)]:
        lines += [f"{g},{labels[y]},{model},{fold},{seed}," + ",".join(f"{p:.6f}" for p in row) + "\n"
                  for g, y, row in zip(guids, gold, probs)]
    (run_dir / "validation_predictions.csv").write_text("".join(lines), encoding="utf-8")


def _save_untrained(run_dir: Path, design: str, seed: int, dims: tuple[int, int], training, label_set) -> str:
    """Saves an untrained ``design`` model over ``label_set``'s classes as the run's seed-``seed`` model."""
    from mmsent.fusion import create_fusion_model, save_model
    from mmsent.run_folder import model_dir

    torch.manual_seed(seed)
    model = create_fusion_model(design, *dims, training, num_classes=len(label_set)).eval()
    return save_model(model, model_dir(run_dir, design, seed), {"model": design, "seed": seed}, labels=label_set).name


def _tiny_config(base: Path, root: Path, extra: Sequence[str]):
    """A config over ``root`` with a random EfficientNet-Lite0 and a 2-layer BERT written under ``base``."""
    from efficientnet_lite_pytorch import EfficientNet

    from mmsent.config import load_config

    torch.manual_seed(0)
    weights = base / "lite0-random.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), weights)
    return load_config(overrides=[
        f"data.root={root}", f"cache_dir={base / 'cache'}", f"encoders.image=efficientnet-lite0:{weights}",
        f"encoders.text={build_tiny_bert(base / 'bert')}", "encoders.image_grid=2", "encoders.text_max_length=16",
        "encoders.device=cpu", "encoders.backend=torch", "training.device=cpu", "training.hidden_dim=16",
        "training.num_heads=2", *extra])


def build_labelled_run(base: Path, labels: Sequence[str], *, designs: Sequence[str] = ("dual_stream", "gated"),
                       seeds: Sequence[int] = (0, 1), per_class: int = 3, positive_label: str | None = None) -> Path:
    """A sealed run folder over the classes ``labels``, written without the pipeline: untrained fusion models of
    ``designs`` x ``seeds`` (``num_classes=len(labels)``) over a random EfficientNet-Lite0 and a 2-layer BERT,
    validation probabilities leaning toward the gold class, ``comparison.json``, ``metrics.json``,
    ``data_report.json`` and a ``test_metrics.json`` (``positive_f1`` with ``positive_label``). Images and texts of
    the validation rows lie in ``base/lab/data`` for the report's gallery."""
    from mmsent.encoders.registry import create_encoders_from_config
    from mmsent.evaluate import TEST_METRICS_FILE
    from mmsent.labels import LabelSet
    from mmsent.run_folder import seal_run
    from mmsent.training.compare import Comparison, ModelRun
    from mmsent.training.ensemble import Predictor
    from mmsent.training.metrics import compute_metrics

    label_set, k = LabelSet(tuple(labels)), len(labels)
    rng = np.random.default_rng(0)
    gold = np.repeat(np.arange(k), per_class)
    guids = [f"v{i}" for i in range(len(gold))]
    lab = base / "lab"
    (lab / "data").mkdir(parents=True)
    for i, (guid, y) in enumerate(zip(guids, gold)):  # the posts the report's gallery shows and explains
        (lab / "data" / f"{guid}.jpg").write_bytes(jpeg_bytes(seed=i))
        (lab / "data" / f"{guid}.txt").write_text(f"happy day {labels[y]} #park", encoding="utf-8")
    cfg = _tiny_config(base, lab, [f"compare.models={','.join(designs)}",
                                   f"compare.seeds={','.join(map(str, seeds))}"])
    run_dir = base / "run"
    run_dir.mkdir()
    cfg.save(run_dir / "config.yaml")
    image, text = create_encoders_from_config(cfg.encoders, cache_dir=base / "cache" / "models")

    names = [_save_untrained(run_dir, design, seed, (image.dim, text.dim), cfg.training, label_set)
             for design in designs for seed in seeds]
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_macro_f1": 0.2 * e} for e in (1, 2)]
    runs = []
    for design in designs:
        for seed in seeds:
            probs = _probs_near(gold, k, rng)
            runs.append(ModelRun(design, seed, compute_metrics(gold, probs.argmax(1), label_set), 2, 0.5, history,
                                 probs))
    ensemble = np.mean([r.val_probs for r in runs], axis=0)
    held = compute_metrics(gold, ensemble.argmax(1), label_set, positive_label)
    predictor = Predictor(list(designs), {"argmax": held}, "ensemble")
    (run_dir / "predictor.json").write_text(json.dumps({**predictor.to_dict(), "models": names,
                                                        **label_set.to_json()}), encoding="utf-8")
    table = Comparison(runs, {}, guids, train_size=40, config={}, predictor={"name": "ensemble", **held})
    table.save(run_dir)
    _write_held_out(run_dir, labels, guids, gold, [(r.model, r.seed, r.val_probs) for r in runs], ensemble)
    (run_dir / "metrics.json").write_text(json.dumps({
        "chosen_model": "ensemble", "seeds": list(seeds), "folds": 1, "validation_rows": len(guids),
        "predictor": predictor.to_dict(), "ensemble_validation_metrics": held, "data_root": str(lab)}),
        encoding="utf-8")
    (run_dir / "data_report.json").write_text(json.dumps({
        "root": str(lab), "counts": {"train": 40 + len(guids)}, **label_set.to_json(),
        "label_counts": {n: int((gold == i).sum()) * 5 for i, n in enumerate(labels)}}), encoding="utf-8")
    test_gold = np.repeat(np.arange(k), per_class + 1)
    test_pred = _probs_near(test_gold, k, rng).argmax(1)
    (run_dir / TEST_METRICS_FILE).write_text(json.dumps({
        "data_root": str(lab), **compute_metrics(test_gold, test_pred, label_set, positive_label)}), encoding="utf-8")
    seal_run(run_dir)
    return run_dir
