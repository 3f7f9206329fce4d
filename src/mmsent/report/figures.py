"""The report's figures as PNG bytes, drawn on bare :class:`~matplotlib.figure.Figure` objects (no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from mmsent.labels import DEFAULT_LABELS

_SCORES = (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("weighted_f1", "weighted-F1"))


def to_png(fig: Figure) -> bytes:
    """Renders a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def comparison_bars(summary: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]],
                    best: str | None = None) -> bytes:
    """Grouped bars of mean validation scores per model, sample-std error bars over seeds, and each seed as a dot."""
    models = [row["model"] for row in summary]
    x = np.arange(len(models))
    width = 0.8 / len(_SCORES)
    ax = Figure(figsize=(max(6.0, 1.3 * len(models) + 2), 3.8)).subplots()
    for k, (key, name) in enumerate(_SCORES):
        pos = x + (k - (len(_SCORES) - 1) / 2) * width
        ax.bar(pos, [row[f"{key}_mean"] for row in summary], width, yerr=[row[f"{key}_std"] for row in summary],
               capsize=3, label=name, alpha=0.85)
        for i, model in enumerate(models):
            seeds = [r["metrics"][key] for r in runs if r["model"] == model]
            ax.scatter([pos[i]] * len(seeds), seeds, s=8, color="black", zorder=3)
    ax.set_xticks(x, [f"{m} *" if m == best else m for m in models], rotation=20, ha="right")
    ax.set(ylabel="validation score", ylim=(0, 1),
           title="Models: mean ± sample std over seeds (dots: single seeds; * chosen)")
    ax.legend(ncols=3, fontsize="small", loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return to_png(ax.figure)


def learning_curves(runs: Sequence[dict[str, Any]]) -> bytes:
    """Per model: train/validation loss (top) and validation macro-F1 (bottom) per epoch, one line per seed."""
    models = list(dict.fromkeys(r["model"] for r in runs))
    fig = Figure(figsize=(max(6.0, 2.6 * len(models)), 5.2), layout="tight")
    axes = fig.subplots(2, len(models), squeeze=False, sharey="row")
    for j, model in enumerate(models):
        top, bottom = axes[0, j], axes[1, j]
        for r in (r for r in runs if r["model"] == model):
            hist = r.get("history") or []
            epochs = [h["epoch"] for h in hist]
            line = top.plot(epochs, [h.get("train_loss", np.nan) for h in hist], lw=1, label=f"seed {r['seed']}")[0]
            top.plot(epochs, [h.get("val_loss", np.nan) for h in hist], lw=1, ls="--", color=line.get_color())
            bottom.plot(epochs, [h.get("val_macro_f1", np.nan) for h in hist], lw=1, color=line.get_color())
            if r.get("best_epoch"):
                bottom.axvline(r["best_epoch"], color=line.get_color(), lw=0.6, alpha=0.5)
        top.set_title(model, fontsize="medium")
        bottom.set_xlabel("epoch")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("loss (solid train, dashed val)")
    axes[1, 0].set_ylabel("val macro-F1 (| best epoch)")
    axes[0, -1].legend(fontsize="x-small")
    return to_png(fig)


def confusion_matrix(gold: np.ndarray, pred: np.ndarray, n: int = len(DEFAULT_LABELS)) -> np.ndarray:
    """``(n, n)`` counts, rows gold, columns predicted."""
    return sklearn_confusion_matrix(gold, pred, labels=np.arange(n))


def tick_name(name: str, limit: int = 18) -> str:
    """A class name cut to fit a tick label (the report's tables give it in full)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _text_pt(text: str, size_pt: float) -> float:
    """Rough width of a line of text in points (DejaVu Sans averages about 0.6 of its size per character)."""
    return len(text) * 0.6 * size_pt


@dataclass(frozen=True)
class MatrixLayout:
    """How a confusion-matrix panel of ``k`` classes is drawn so that it stays readable from 2 to ~20 classes."""

    side: float  # panel width in inches (its height is 0.2 less: the title)
    tick_size: str | float  # font size of the class names
    count_size: str | float | None  # font size of the counts in the cells; None: they do not fit and are left out
    rotate: bool  # class names under the columns turned 45 degrees, as they would overlap side by side


def matrix_layout(labels: Sequence[str], largest: int) -> MatrixLayout:
    """The layout for ``labels`` with ``largest`` the biggest count to write in a cell; three classes keep the
    3.3-inch panel the report has always drawn."""
    k = len(labels)
    side = max(3.3, 1.6 + 0.42 * k)
    cell_pt = (side - 1.3) * 72 / k  # the class names and the title take about 1.3 inches of a panel
    tick_size, tick_pt = ("x-small", 6.94) if k <= 12 else (6.0, 6.0)
    count_size = next((size for size, pt in (("small", 8.33), (6.0, 6.0))
                       if _text_pt(str(largest), pt) <= 0.85 * cell_pt), None)
    rotate = max(_text_pt(tick_name(n), tick_pt) for n in labels) > 0.9 * cell_pt
    return MatrixLayout(side, tick_size, count_size, rotate)


def confusion_matrices(matrices: dict[str, np.ndarray], labels: Sequence[str] = DEFAULT_LABELS) -> bytes:
    """One panel per model: counts (where they fit), shaded by the share of each gold row; ``labels`` name the rows
    and columns in order."""
    layout = matrix_layout(labels, max((int(cm.max()) for cm in matrices.values() if cm.size), default=0))
    cols = max(1, min(3, len(matrices), int(14 // layout.side)))  # a figure about 14 inches wide at most
    rows = -(-len(matrices) // cols)
    fig = Figure(figsize=(layout.side * cols, (layout.side - 0.2) * rows), layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(matrices):]:
        ax.axis("off")
    names = [tick_name(n) for n in labels]
    turn = {"rotation": 45, "ha": "right", "rotation_mode": "anchor"} if layout.rotate else {}
    for ax, (name, cm) in zip(axes, matrices.items()):
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if layout.count_size is not None:
            for (i, j), count in np.ndenumerate(cm):
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=layout.count_size)
        ax.set_xticks(range(len(names)), names, fontsize=layout.tick_size, **turn)
        ax.set_yticks(range(len(names)), names, fontsize=layout.tick_size)
        ax.set_xlabel("predicted", fontsize="small")
        ax.set_ylabel("gold", fontsize="small")
        ax.set_title(name, fontsize="medium")
    return to_png(fig)


def per_class_bars(per_class: dict[str, dict[str, float]], title: str, labels: Sequence[str] | None = None) -> bytes:
    """Precision, recall and F1 for each class of ``labels`` (default: ``per_class``'s, in order), with its support
    in the tick label; the figure widens with the classes and turns their names when they would overlap."""
    names = list(per_class) if labels is None else list(labels)
    width = max(6.0, 1.5 + 0.75 * len(names))
    ax = Figure(figsize=(width, 3.4)).subplots()
    x = np.arange(len(names))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_class.get(c, {}).get(key, 0.0) for c in names], 0.27, label=key)
    support = [int(per_class.get(c, {}).get("support", 0)) for c in names]
    cell_pt = (width - 1.0) * 72 / max(len(names), 1)
    if max((_text_pt(tick_name(c), 10.0) for c in names), default=0.0) > 0.9 * cell_pt:
        ax.set_xticks(x, [f"{tick_name(c)} (n={n})" for c, n in zip(names, support)], rotation=45, ha="right",
                      rotation_mode="anchor")
    else:
        ax.set_xticks(x, [f"{tick_name(c)}\n(n={n})" for c, n in zip(names, support)])
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize="medium")
    ax.legend(ncols=3, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return to_png(ax.figure)


def calibration(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability statistics of the top-class confidence: per-bin confidence, accuracy, count, and the ECE."""
    conf = probs.max(1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    correct_sum = np.bincount(idx, weights=probs.argmax(1) == gold, minlength=bins)
    return {"edges": edges.tolist(), "count": count.tolist(),
            "confidence": [float(s / n) if n else None for s, n in zip(conf_sum, count)],
            "accuracy": [float(s / n) if n else None for s, n in zip(correct_sum, count)],
            # sum over bins of n_b / N * |mean confidence - accuracy|
            "ece": float(np.abs(conf_sum - correct_sum).sum() / max(len(conf), 1))}


def reliability_diagram(curves: dict[str, dict[str, Any]]) -> bytes:
    """Accuracy against confidence per bin (the diagonal is perfect calibration); counts below."""
    fig = Figure(figsize=(5.2, 5.4), layout="tight")
    ax, axc = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
    for k, (name, cal) in enumerate(curves.items()):
        # The first curve (the chosen ensemble) is drawn strong and gets the counts; the others are context.
        edges = np.asarray(cal["edges"])
        pts = [(c, a) for c, a in zip(cal["confidence"], cal["accuracy"]) if c is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=4 if k == 0 else 2, lw=2.0 if k == 0 else 0.8,
                    alpha=1.0 if k == 0 else 0.55, label=f"{name} (ECE {cal['ece']:.3f})")
        if k == 0:
            axc.bar((edges[:-1] + edges[1:]) / 2, cal["count"], width=(edges[1] - edges[0]) * 0.9, alpha=0.7)
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Reliability of the top-class probability", fontsize="medium")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    axc.set_xlabel("confidence (max probability)")
    axc.set_ylabel(f"rows ({next(iter(curves), '')})", fontsize="small")
    return to_png(fig)
