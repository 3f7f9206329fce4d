"""Benchmark: does a cross-fitted, fully fine-tuned MiniLM beat the frozen text side in 5-fold fusion?

Issue "Accuracy on the field's standard protocol". The folds are exactly those of ``data.kfold=5``
(:func:`mmsent.pipeline.prepare_splits`, split seed 13). For each fold k, a fresh all-MiniLM-L6-v2 is fine-tuned
fully (``finetune.text.mode=full`` through :func:`mmsent.finetune.finetune`, the config defaults: 3 epochs, lr 4e-5,
batch 32, class-weighted CE, early stopping on 10% of the *training* rows) on the other four folds, and extracts
fold k's rows (token states + mask + mean-pooled vector, as extraction makes them) and, for later use, the test rows.
So every labelled row's text features come from an encoder that never saw its label; the fusion models of outer fold k
then train on the other folds' (out-of-fold) features and are scored on fold k (``pipeline.compare`` per fold, as
``compare_folds`` calls it, with ``best.yaml``: 6 designs x seeds 0, 1, 2; the predictor is what ``choose_predictor``
builds for ``predict_with=ensemble``: the mean of every design's mean-over-seeds probabilities,
plain argmax). Each (variant, seed, fold) is saved as it finishes, seed 0 of every variant first, so a killed run
resumes and ``--summary-only`` scores whatever has finished.

Variants (scored out of fold over the 4,000 labelled rows):

* A: frozen default text side (MiniLM token states + e5 + VADER), i.e. ``configs/best.yaml``;
* B: the cross-fitted MiniLM in MiniLM's place, e5 + VADER beside it exactly as the combined encoder lays them out;
* C: the cross-fitted MiniLM alone (no e5 / VADER);
* H: the fine-tuned encoders' own linear heads (text only), each scoring the fold its encoder left out;
* D: B's six designs plus H as a 7th member (mean of 7); D(A): A's six designs plus H.

Everything is saved under ``--out`` (per-fold features, head probabilities, each variant's out-of-fold
probabilities), so a rerun resumes where it stopped. ``--bf16`` fine-tunes with ``finetune.amp`` on (bf16
autocast on a CPU with hardware bf16), without it in fp32.

Usage (OMP_WAIT_POLICY=PASSIVE: on a shared 2-core machine, spinning OpenMP threads made 2-thread training ~20x
slower)::

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/crossfit_text_kfold.py --data /work/shared/datasets/lab5 \
        --out runs/crossfit-text --bf16 --variants A,B,D,C
    python benchmarks/crossfit_text_kfold.py --out runs/crossfit-text --variants A,B,D,C --summary-only
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmsent import pipeline  # noqa: E402
from mmsent.config import FinetuneConfig, TextFinetuneConfig, load_config  # noqa: E402
from mmsent.data.text import TextCleaner  # noqa: E402
from mmsent.features.extract import round_like_cache  # noqa: E402
from mmsent.features.featureset import FeatureSet, ModalityFeatures  # noqa: E402
from mmsent.finetune.text import TextAdapter  # noqa: E402
from mmsent.io import load_tensors, save_tensors, write_json  # noqa: E402
from mmsent.labels import LABELS, label_to_index  # noqa: E402
from mmsent.training.metrics import compute_metrics  # noqa: E402

log = logging.getLogger("crossfit_text")


# ----------------------------------------------------------------------------------------------------------- features
def split_combined(text: ModalityFeatures, dims: list[int]) -> list[ModalityFeatures]:
    """The combined encoder's features -> its parts' (first: token states; the others: one-token signals).

    Inverse of :meth:`CombinedTextEncoder.combine`: pooled is the parts side by side; tokens are one token per extra
    part, then the first part's token states in the first part's block of dimensions."""
    k = len(dims) - 1
    offsets = np.cumsum([0, *dims]).tolist()
    first = ModalityFeatures(text.pooled[:, : dims[0]].clone(), text.tokens[:, k:, : dims[0]].clone(),
                             text.mask[:, k:].clone())
    extras = []
    for j in range(k):
        pooled = text.pooled[:, offsets[j + 1] : offsets[j + 2]].clone()
        ones = torch.ones(len(pooled), 1, dtype=torch.bool)
        extras.append(ModalityFeatures(pooled, pooled[:, None, :].clone(), ones))
    return [first, *extras]


def combine_parts(features: list[ModalityFeatures]) -> ModalityFeatures:
    """:meth:`CombinedTextEncoder.combine` with each part's width read from its features: the first part (token
    states) may then be another encoder than the combined encoder's own first part (mpnet for MiniLM, say)."""
    first, extras = features[0], features[1:]
    dims = [first.pooled.shape[1], *(f.pooled.shape[1] for f in extras)]
    offsets = np.cumsum([0, *dims]).tolist()
    k, n = len(extras), len(first)
    tokens = torch.zeros(n, k + first.tokens.shape[1], offsets[-1], dtype=first.tokens.dtype)
    for j, f in enumerate(extras):
        tokens[:, j, offsets[j + 1]:offsets[j + 2]] = f.pooled.to(tokens.dtype)
    tokens[:, k:, :dims[0]] = first.tokens
    mask = torch.cat([torch.ones(n, k, dtype=torch.bool), first.mask.bool()], dim=1)
    return ModalityFeatures(torch.cat([f.pooled.float() for f in features], dim=1), tokens, mask)


def feats_equal(a: ModalityFeatures, b: ModalityFeatures) -> bool:
    return (torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens.float(), b.tokens.float())
            and torch.equal(a.mask.bool(), b.mask.bool()))


def save_fold(path: Path, guids: list[str], feats: ModalityFeatures, probs: np.ndarray, test_guids: list[str],
              test_feats: ModalityFeatures | None, test_probs: np.ndarray | None, result: dict) -> None:
    tensors = {"pooled": feats.pooled.float(), "tokens": feats.tokens.half(), "mask": feats.mask.bool(),
               "head_probs": torch.as_tensor(probs, dtype=torch.float32)}
    if test_feats is not None:
        tensors.update(test_pooled=test_feats.pooled.float(), test_tokens=test_feats.tokens.half(),
                       test_mask=test_feats.mask.bool(), test_head_probs=torch.as_tensor(test_probs))
    save_tensors(path, tensors, {"guids": json.dumps(guids), "test_guids": json.dumps(test_guids),
                                 "result": json.dumps(result)})


def load_fold(path: Path) -> tuple[list[str], ModalityFeatures, np.ndarray, dict]:
    tensors, meta = load_tensors(path)
    feats = ModalityFeatures(tensors["pooled"].float(), tensors["tokens"].float(), tensors["mask"].bool())
    return json.loads(meta["guids"]), feats, tensors["head_probs"].numpy(), json.loads(meta["result"])


def crossfit_folds(args, cfg, dataset, splits, encoder, out: Path) -> tuple[ModalityFeatures, np.ndarray, list[dict]]:
    """Per fold: fine-tune a fresh copy of ``encoder`` on the fold's training rows, extract its held-out rows.

    Returns the out-of-fold features and head probabilities in ``dataset.train`` order, and each fold's record."""
    from mmsent.finetune import trainer as ft_trainer

    cleaner = TextCleaner(cfg.cleaning)
    by_guid = {ex.guid: ex for ex in dataset.train}
    cleaned = {ex.guid: cleaner.clean(ex.text) for ex in dataset.train + dataset.test}
    labels = {ex.guid: label_to_index(ex.label) for ex in dataset.train}
    test_guids = [ex.guid for ex in dataset.test]
    ecfg = TextFinetuneConfig(mode="full", epochs=args.epochs)
    fcfg = FinetuneConfig(enabled=True, amp=args.bf16)  # bf16 autocast where the CPU has hardware bf16
    adapter = TextAdapter(encoder, "full")
    all_guids = list(cleaned)
    rows = dict(zip(all_guids, adapter.prepare([cleaned[g] for g in all_guids])))  # token ids, as extraction
    start = {k: v.detach().clone() for k, v in adapter.tuned_state().items()}

    # Sanity: the adapter's features with the base weights are the frozen extraction's (up to float rounding).
    probe = [ex.guid for ex in dataset.train[:64]]
    mine = adapter.features([rows[g] for g in probe])
    ref = encoder.encode([cleaned[g] for g in probe])
    log.info("adapter vs frozen encoder features on 64 rows: max |diff| pooled %.2e, tokens %.2e",
             (mine.pooled - ref.pooled).abs().max(), (mine.tokens - ref.tokens).abs().max())

    parts, probs, records = [], [], []
    for k, split in enumerate(splits):
        path = out / f"fold{k}.safetensors"
        val = list(split.val)
        if path.is_file():
            got, feats, p, result = load_fold(path)
            if got == val:
                log.info("fold %d: reusing %s (fine-tuned in %.0f s)", k, path, result["finetune_seconds"])
                parts.append(feats), probs.append(p), records.append(result)
                continue
        adapter.load_tuned_state(start)
        encoder.mark_weights_changed()
        held = set(val)
        train = [g for g in split.train if g not in held]
        t0 = time.perf_counter()
        res = ft_trainer.finetune(adapter, [cleaned[g] for g in train], [labels[g] for g in train], train, ecfg, fcfg,
                                  out / f"fold{k}" / "checkpoints", run_key=f"crossfit-text|{args.tuned_encoder}|fold{k}|e{args.epochs}"
                                  f"|{'bf16' if args.bf16 else 'fp32'}", progress=args.progress,
                                  rows=[rows[g] for g in train], desc=f"fold {k}")
        t1 = time.perf_counter()
        feats = round_like_cache(adapter.features([rows[g] for g in val]))  # tokens through fp16, as the cache
        head = res.head.eval()
        with torch.no_grad():
            p = torch.softmax(head(feats.pooled), dim=-1).numpy()
        t2 = time.perf_counter()
        test_feats, test_p = None, None
        if not args.no_test_features and test_guids:
            test_feats = round_like_cache(adapter.features([rows[g] for g in test_guids]))
            with torch.no_grad():
                test_p = torch.softmax(head(test_feats.pooled), dim=-1).numpy()
        t3 = time.perf_counter()
        result = {"fold": k, "train_rows": res.train_rows, "holdout_rows": res.holdout_rows,
                  "best_epoch": res.best_epoch, "epochs_run": len(res.history), "steps": res.steps,
                  "holdout_macro_f1": (res.holdout_metrics or {}).get("macro_f1"), "history": res.history,
                  "amp": res.amp or ("bfloat16 (patched)" if args.bf16 else "fp32"),
                  "finetune_seconds": t1 - t0, "extract_val_seconds": t2 - t1, "extract_test_seconds": t3 - t2,
                  "resumed_from_step": res.resumed_from_step,
                  "head_fold_metrics": {m: v for m, v in compute_metrics([labels[g] for g in val], p.argmax(1)).items()
                                        if m in ("accuracy", "macro_f1", "weighted_f1")}}
        save_fold(path, val, feats, p, test_guids, test_feats, test_p, result)
        import shutil

        shutil.rmtree(out / f"fold{k}", ignore_errors=True)  # its checkpoints: the fold is done
        log.info("fold %d: fine-tuned %.0f s (best epoch %d of %d, holdout macro-F1 %s), extracted %d val rows in "
                 "%.1f s, %d test rows in %.1f s; head on the fold: acc %.3f macro-F1 %.3f", k, t1 - t0,
                 res.best_epoch, len(res.history), result["holdout_macro_f1"], len(val), t2 - t1, len(test_guids),
                 t3 - t2, result["head_fold_metrics"]["accuracy"], result["head_fold_metrics"]["macro_f1"])
        parts.append(feats), probs.append(p), records.append(result)
    adapter.load_tuned_state(start)
    encoder.mark_weights_changed()
    order = [g for split in splits for g in split.val]
    pos = {g: i for i, g in enumerate(order)}
    idx = torch.tensor([pos[ex.guid] for ex in dataset.train])
    oof = ModalityFeatures.concat(parts).index(idx)
    return oof, np.concatenate(probs)[idx.numpy()], records


# ----------------------------------------------------------------------------------------------------------- compare
def run_fold(name: str, seed: int, k: int, cfg, feats: FeatureSet, split, labels, out: Path) -> None:
    """``pipeline.compare`` of every design with one seed on one fold; probabilities and runs saved (and reused)."""
    path = out / "compare" / f"{name}_seed{seed}_fold{k}.npz"
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        return
    run_cfg = copy.deepcopy(cfg)
    run_cfg.compare.seeds = [seed]
    t0 = time.perf_counter()
    comp = pipeline.compare(run_cfg, feats, split, labels, progress=False)
    seconds = time.perf_counter() - t0
    probs = {r.model: r.val_probs for r in comp.runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **probs)
    write_json(meta_path, {"designs": list(probs), "val_guids": list(comp.val_guids), "seconds": seconds,
                           "runs": [r.to_dict() for r in comp.runs]})  # written last: the fold is done
    ens = np.mean(list(probs.values()), axis=0).argmax(1)
    y = [label_to_index(labels[g]) for g in comp.val_guids]
    m = compute_metrics(y, ens)
    log.info("variant %s seed %d fold %d: %.0f s; ensemble of this seed: acc %.3f macro-F1 %.3f", name, seed, k,
             seconds, m["accuracy"], m["macro_f1"])


def gather(name: str, seeds: list[int], splits, out: Path) -> dict | None:
    """The variant's designs' out-of-fold probabilities (mean over the seeds finished on every fold), or None."""
    done = [s for s in seeds if all((out / "compare" / f"{name}_seed{s}_fold{k}.json").is_file()
                                    for k in range(len(splits)))]
    if not done:
        return None
    designs: dict[str, list] = {}
    seconds, val_guids, runs = 0.0, [], []
    for k in range(len(splits)):
        per_seed = []
        for s in done:
            meta = json.loads((out / "compare" / f"{name}_seed{s}_fold{k}.json").read_text(encoding="utf-8"))
            data = np.load(out / "compare" / f"{name}_seed{s}_fold{k}.npz")
            per_seed.append({d: data[d] for d in meta["designs"]})
            seconds += meta["seconds"]
            runs += [{**r, "fold": k} for r in meta["runs"]]
            if s == done[0]:
                val_guids += meta["val_guids"]
        for d in per_seed[0]:
            designs.setdefault(d, []).append(np.mean([p[d] for p in per_seed], axis=0))
    return {"designs": {d: np.concatenate(v) for d, v in designs.items()}, "val_guids": val_guids,
            "compare_seconds": seconds, "seeds": done, "runs": runs}


def link_variant(source: Path, out: Path, name: str) -> None:
    """Symlinks ``source``'s finished compare files of variant ``name`` into ``out`` (they are then reused)."""
    (out / "compare").mkdir(parents=True, exist_ok=True)
    for path in sorted((source / "compare").glob(f"{name}_seed*_fold*.*")):
        target = out / "compare" / path.name
        if not target.exists():
            target.symlink_to(path.resolve())


def scores(probs: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict:
    pred = probs.argmax(1)
    pooled = compute_metrics(y, pred)
    per = [compute_metrics(y[folds == k], pred[folds == k]) for k in np.unique(folds)]
    return {"accuracy": pooled["accuracy"], "macro_f1": pooled["macro_f1"], "weighted_f1": pooled["weighted_f1"],
            "neutral_f1": pooled["per_class"]["neutral"]["f1"],
            "fold_macro_f1": [m["macro_f1"] for m in per], "fold_accuracy": [m["accuracy"] for m in per]}


def ms(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/datasets/lab5")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "crossfit-text")
    ap.add_argument("--config", default=str(REPO / "configs" / "best.yaml"))
    ap.add_argument("--set", action="append", default=[], help="extra config overrides (section.key=value)")
    ap.add_argument("--variants", default="A,B,D,C", help="in the order to run; D needs B (and H), C last")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="finetune.amp: bf16 autocast in the fine-tuning forward pass on a CPU with hardware bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-test-features", action="store_true")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--finetune-only", action="store_true", help="stop after the cross-fitting folds")
    ap.add_argument("--summary-only", action="store_true", help="score what is saved; train nothing new")
    ap.add_argument("--smoke", type=int, default=0, help="keep only the first N labelled rows (a quick check)")
    ap.add_argument("--tuned-encoder", default="minilm",
                    help="the text encoder fine-tuned per fold (an alias or model folder, e.g. mpnet); its features "
                         "take the place of the combined encoder's first part (MiniLM) in B")
    ap.add_argument("--reuse-a", type=Path, default=None,
                    help="another --out whose finished variant-A runs (same folds, config and seeds) are linked in "
                         "instead of trained again")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "log.txt")])
    # one timings file per call (calls may run side by side: compare A next to the fine-tuning, say)
    tag = "finetune" if args.finetune_only else args.variants.replace(",", "")
    timings_path = args.out / f"timings-{tag}.json"
    timings: dict = {}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    cfg = load_config(args.config, [f"data.root={args.data}", f"encoders.num_threads={args.threads}", *args.set])
    assert cfg.data.kfold == 5 and cfg.compare.predict_with == "ensemble"
    t = time.perf_counter()
    dataset = pipeline.load_dataset(cfg)
    if args.smoke:  # a quick check of every stage on a few rows (numbers meaningless)
        dataset.train, dataset.test = dataset.train[: args.smoke], dataset.test[:20]
    splits = pipeline.prepare_splits(cfg, dataset)
    labels = dataset.labels()
    log.info("%d labelled, %d test rows, %d folds (seed %d); load %.0f s", len(dataset.train), len(dataset.test),
             len(splits), cfg.data.split_seed, time.perf_counter() - t)

    # 1. default features (feature cache, ~/.cache/mmsent)
    t = time.perf_counter()
    source = pipeline.configured_source(cfg)
    stats: dict = {}
    default = pipeline.extract(cfg, dataset.train + dataset.test, source, progress=args.progress, stats=stats)
    timings["extract_default_seconds_this_call"] = time.perf_counter() - t
    log.info("default features: %.0f s (%s)", timings["extract_default_seconds_this_call"],
             json.dumps({m: {k: v for k, v in s.items() if k != "parts"} for m, s in stats.items()}, default=str))
    train_guids = [ex.guid for ex in dataset.train]
    default = default.select(train_guids)  # labelled rows only (compare never sees test rows)
    combined = source.text
    if args.tuned_encoder == "minilm":
        tuned = combined.parts[0]
    else:
        from mmsent.encoders.registry import create_text_encoder

        tuned = create_text_encoder(args.tuned_encoder, max_length=cfg.encoders.text_max_length,
                                    pooling=cfg.encoders.text_pooling, device="cpu")
    if args.reuse_a is not None:
        link_variant(args.reuse_a, args.out, "A")
    dims = [p.dim for p in combined.parts]
    frozen_parts = split_combined(default.text, dims)
    if not feats_equal(combined.combine(frozen_parts), default.text):
        raise SystemExit("split_combined does not invert CombinedTextEncoder.combine")
    source.image = None  # the image network is no longer needed

    y = np.array([label_to_index(labels[g]) for g in train_guids])
    feats_of = {"A": default}
    head_probs = None
    need_cf = args.finetune_only or any(v in variants for v in ("B", "C", "D", "H"))
    if need_cf:
        t = time.perf_counter()
        cf, head_probs, records = crossfit_folds(args, cfg, dataset, splits, tuned, args.out)
        timings["crossfit_seconds_this_call"] = time.perf_counter() - t
        timings["folds"] = [{k: r[k] for k in ("fold", "finetune_seconds", "extract_val_seconds",
                                                "extract_test_seconds", "best_epoch", "epochs_run", "steps",
                                                "holdout_macro_f1", "amp")} for r in records]
        write_json(timings_path, timings)
        if args.finetune_only:
            return 0
        if "B" in variants or "D" in variants:
            feats_of["B"] = FeatureSet(train_guids, default.image, combine_parts([cf, *frozen_parts[1:]]))
        if "C" in variants:
            feats_of["C"] = FeatureSet(train_guids, default.image, cf)
    del frozen_parts
    gc.collect()

    # 4. compare: one (variant, seed, fold) at a time, each saved, seed 0 of every variant first
    seeds = list(cfg.compare.seeds)
    work = [v for v in ("A", "B") if v in feats_of and (v in variants or v == "B")]
    if not args.summary_only:
        for seed in seeds:
            for name in work:
                for k, split in enumerate(splits):
                    run_fold(name, seed, k, cfg, feats_of[name], split, labels, args.out)
        if "C" in feats_of:
            for seed in seeds:
                for k, split in enumerate(splits):
                    run_fold("C", seed, k, cfg, feats_of["C"], split, labels, args.out)
    results = {name: gather(name, seeds, splits, args.out) for name in ("A", "B", "C")}
    results = {name: res for name, res in results.items() if res is not None}
    write_json(timings_path, timings)

    # 4. scores, over every labelled row, in the order of the folds' validation rows
    if not results:
        return 0
    timings["compare_seconds"] = {name: res["compare_seconds"] for name, res in results.items()}
    timings["compare_seeds"] = {name: res["seeds"] for name, res in results.items()}
    any_res = next(iter(results.values()))
    order = any_res["val_guids"]
    pos = {g: i for i, g in enumerate(train_guids)}
    idx = np.array([pos[g] for g in order])
    y_o = y[idx]
    folds = np.concatenate([[k] * len(s.val) for k, s in enumerate(splits)])
    rows, per_design = {}, {}
    for name, res in results.items():
        assert res["val_guids"] == order
        d = res["designs"]
        rows[name] = scores(np.mean(list(d.values()), axis=0), y_o, folds)
        per_design[name] = {k: compute_metrics(y_o, v.argmax(1))["macro_f1"] for k, v in d.items()}
    if head_probs is not None:
        h = head_probs[idx]
        rows["H"] = scores(h, y_o, folds)
        if "B" in results:
            rows["D"] = scores(np.mean([*results["B"]["designs"].values(), h], axis=0), y_o, folds)
        if "A" in results:
            rows["D(A)"] = scores(np.mean([*results["A"]["designs"].values(), h], axis=0), y_o, folds)
    if "A" in results and "B" in results:  # the two variants' predictors averaged, as averaging two runs would
        rows["A+B"] = scores(np.mean([np.mean(list(results[v]["designs"].values()), axis=0) for v in ("A", "B")],
                                     axis=0), y_o, folds)
    tuned = "MiniLM" if args.tuned_encoder == "minilm" else args.tuned_encoder
    labels_of = {"A": "A: frozen MiniLM + e5 + VADER (best.yaml)", "B": f"B: cross-fitted full-FT {tuned} + e5 + VADER",
                 "C": f"C: cross-fitted full-FT {tuned} alone", "H": f"H: fine-tuned {tuned}'s own linear head (text only)",
                 "D": "D: B's 6 designs + H as 7th member", "D(A)": "D(A): A's 6 designs + H as 7th member",
                 "A+B": "A+B: the mean of A's and B's predictors (two runs averaged)"}
    lines = ["| variant | OOF accuracy | macro-F1 | weighted-F1 | neutral F1 | accuracy per fold (mean ± std) | "
             "macro-F1 per fold (mean ± std) | paired macro-F1 change vs A per fold (mean ± std) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ["A", "B", "D", "D(A)", "A+B", "C", "H"]:
        if name not in rows:
            continue
        r = rows[name]
        change = "-"
        if "A" in rows and name != "A":
            diff = np.array(r["fold_macro_f1"]) - np.array(rows["A"]["fold_macro_f1"])
            change = f"{diff.mean():+.3f} ± {diff.std(ddof=1):.3f} ({', '.join(f'{x:+.3f}' for x in diff)})"
        lines.append(f"| {labels_of[name]} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['weighted_f1']:.4f} | "
                     f"{r['neutral_f1']:.3f} | {ms(r['fold_accuracy'])} | {ms(r['fold_macro_f1'])} | {change} |")
    designs = list(next(iter(per_design.values())))
    lines += ["", "| per-design OOF macro-F1 (mean of the finished seeds' probabilities) | "
              + " | ".join(designs) + " |",
              "|---|" + "---|" * len(designs)]
    for name, d in per_design.items():
        lines.append(f"| {name} | " + " | ".join(f"{d[k]:.3f}" for k in designs) + " |")
    table = "\n".join(lines)
    print(table)
    print(json.dumps(timings, indent=1))
    (args.out / "summary.md").write_text(table + "\n\n```\n" + json.dumps(timings, indent=1) + "\n```\n")
    write_json(args.out / "scores.json", {"rows": rows, "per_design": per_design, "timings": timings})
    return 0


if __name__ == "__main__":
    sys.exit(main())
