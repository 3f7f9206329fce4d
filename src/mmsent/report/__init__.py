"""A self-contained HTML report of a finished run (``report.html``, no network assets) and its figures as PNGs."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mmsent.report.gallery import GalleryItem, build_gallery
from mmsent.report.run_data import RunData, load_run_data
from mmsent.training.ensemble import decide
from mmsent.run_files import REPORT_DIR, REPORT_FILE, RunFolder

log = logging.getLogger("mmsent.report")

FIGURES_DIR = REPORT_DIR

__all__ = ["FIGURES_DIR", "REPORT_FILE", "RunData", "build_report", "load_run_data"]


def _figures(data: RunData, problems: list[str]) -> dict[str, bytes]:
    from mmsent.report import figures as F  # local: matplotlib is only needed once a report is built

    out: dict[str, bytes] = {}
    comp, chosen, validation = data.comparison, data.chosen_model, data.validation

    def attempt(key: str, what: str, fn: Any, *args: Any) -> None:
        # One broken figure should cost that figure, not the report.
        try:
            out[key] = fn(*args)
        except Exception as exc:  # noqa: BLE001
            log.warning("report: %s figure failed: %s", what, exc)
            problems.append(f"{what} figure: {type(exc).__name__}: {exc}")

    if comp.get("summary"):
        attempt("comparison", "comparison", F.comparison_bars, comp["summary"], comp.get("runs", []), chosen)
    else:
        problems.append("comparison figure and table: no comparison.json")
    if any(r.get("history") for r in comp.get("runs", [])):
        attempt("learning_curves", "learning-curve", F.learning_curves, comp["runs"])
    if validation:
        matrices = {name: F.confusion_matrix(data.gold, decide(v.ensemble), len(data.labels))
                    for name, v in validation.items()}
        attempt("confusion", "confusion-matrix", F.confusion_matrices, matrices, data.labels)
    else:
        problems.append("confusion matrices, calibration and error gallery: no validation_predictions.csv")
    per_class = (data.metrics.get("ensemble_validation_metrics") or {}).get("per_class")
    if per_class:
        attempt("per_class", "per-class", F.per_class_bars, per_class, f"{chosen} seed ensemble, validation",
                data.labels)
    if chosen in validation:
        # "the predictor": the chosen name may itself be "ensemble" ("ensemble ensemble" read as a typo)
        curves = {f"{chosen} (predictor)": F.calibration(validation[chosen].ensemble, data.gold)}
        curves.update({n: F.calibration(v.ensemble, data.gold) for n, v in validation.items() if n != chosen})
        attempt("calibration", "calibration", F.reliability_diagram, curves)
    test = data.test_metrics
    if test.get("confusion_matrix"):
        attempt("test_confusion", "test confusion-matrix", F.confusion_matrices,
                {f"{chosen or 'predictor'}, test rows": np.asarray(test["confusion_matrix"])},
                test.get("labels") or data.labels)
    return out


def build_report(run_dir: str | Path, *, explain: bool = True, max_errors: int = 12, predictor: Any = None) -> Path:
    """Writes ``report.html`` and ``report/*.png`` into a run directory from what the run saved there.

    Args:
        run_dir: a run directory (``comparison.json``, ``metrics.json``, ``validation_predictions.csv``, ...).
        explain: explain the error gallery (loads the run's encoders and models unless ``predictor`` is given).
        max_errors: size of the error gallery.
        predictor: an already loaded :class:`~mmsent.inference.RunPredictor` for the explanations.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a run directory.
    """
    run_dir = Path(run_dir)
    data = load_run_data(run_dir)
    problems: list[str] = []
    figs = _figures(data, problems)
    (run_dir / FIGURES_DIR).mkdir(exist_ok=True)
    for name, png in figs.items():
        (run_dir / FIGURES_DIR / f"{name}.png").write_bytes(png)
    gallery, notes = build_gallery(data, max_errors, explain=explain, predictor=predictor)
    out = RunFolder(run_dir).write_text(REPORT_FILE, render(data, figs, gallery, notes, problems))
    log.info("wrote report %s", out)
    return out


# -- the page: one self-contained HTML file, inline CSS, figures and thumbnails as data URIs ----------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;max-width:1200px;margin:0 auto;
padding:1rem 1.5rem 3rem}h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.muted{color:#6e6e73}table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.25rem .6rem;
text-align:right}th:first-child,td:first-child{text-align:left}tr.best td{font-weight:600;background:#dbeafe}.predicts{color:#1d4ed8;white-space:nowrap}
figure{margin:.5rem 0}figure img{max-width:100%}.gallery{display:grid;grid-template-columns:repeat(auto-fill,
minmax(360px,1fr));gap:1rem}.card{border:1px solid #ddd;border-radius:8px;padding:.6rem;display:grid;
grid-template-columns:auto 1fr;gap:.6rem}.card img{width:150px;height:auto;border-radius:4px;display:block;
margin-bottom:.3rem}.card img.map{grid-column:1/-1;width:100%;max-width:520px}
blockquote.post{margin:.2rem 0;font-style:italic}.gold{color:#1a7f37}.pred{color:#c62828}.tok{padding:0 .15em;border-radius:3px}
.note{color:#9a6700;font-size:.9em}code{background:#f4f4f6;padding:0 .2em}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], best: int | None = None) -> str:
    """An HTML table of ready (escaped) cells, row ``best`` highlighted."""
    trs = [('<tr class="best">' if i == best else "<tr>") + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
           for i, row in enumerate(rows)]
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(trs) + "</table>"


PREDICTS = "<span class='predicts'>★ predicts</span>"


def comparison_table(summary: list[dict[str, Any]], best: str | None, predictor: dict[str, Any] | None = None) -> str:
    """The designs' mean ± std over seeds; the predictor's row marked ``★ predicts`` and highlighted: the chosen
    design's, or a row of its own for an ensemble (``predictor``: its scores on the same rows)."""
    rows = [[escape(r["model"]), r["n_seeds"],
             *(f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_std']:.3f}" for k in ("accuracy", "macro_f1", "weighted_f1")),
             f"{r['best_epoch_mean']:.1f}", f"{r['train_seconds_mean']:.1f}"] for r in summary]
    chosen = next((i for i, r in enumerate(summary) if r["model"] == best), None)
    if chosen is None and predictor:
        rows.append([escape(str(predictor["name"])), "all",
                     *(f"{predictor[k]:.3f}" for k in ("accuracy", "macro_f1", "weighted_f1")), "", ""])
        chosen = len(rows) - 1
    if chosen is not None:
        rows[chosen][0] = f"{rows[chosen][0]} {PREDICTS}"
    return _table(("model", "seeds", "accuracy", "macro-F1", "weighted-F1", "best epoch", "train s"), rows, chosen)


def per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    rows = [[escape(c), *(f"{m[k]:.3f}" for k in ("precision", "recall", "f1")), int(m["support"])]
            for c, m in per_class.items()]
    return _table(("class", "precision", "recall", "F1", "support"), rows)


def probabilities_text(probs: dict[str, float], shown: int = 6) -> str:
    """A row's class probabilities in class order; past ``shown`` classes only the ``shown - 1`` most probable."""
    if len(probs) <= shown:
        return ", ".join(f"{escape(n)} {p:.2f}" for n, p in probs.items())
    top = sorted(probs.items(), key=lambda item: -item[1])[: shown - 1]
    return f"top {len(top)} of {len(probs)} classes: " + ", ".join(f"{escape(n)} {p:.2f}" for n, p in top)


def figure_html(png: bytes, alt: str, caption: str) -> str:
    """A figure as an inline PNG with its caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f"<figure><img src='{uri}' alt='{alt}'><figcaption class='muted'>{escape(caption)}</figcaption></figure>"


def scores_on_test_rows(test: dict[str, Any], predictor: str | None, figure: bytes | None) -> str:
    """The predictor's scores on labelled test rows (``test_metrics.json``): the headline numbers, its confusion
    matrix and per-class table."""
    scores = [f"accuracy {test['accuracy']:.3f}", f"macro-F1 {test['macro_f1']:.3f}",
              f"weighted-F1 {test['weighted_f1']:.3f}"]
    if test.get("positive_f1") is not None:
        scores.append(f"F1 of the positive class ({test.get('positive_label', '?')}) {test['positive_f1']:.3f}")
    html = (f"<h2>Test split</h2><p>The predictor ({escape(str(predictor))}) on {escape(str(test.get('n', '?')))} "
            f"labelled test rows that no model trained or was chosen on: {escape(', '.join(scores))}.</p>")
    if test.get("data_root"):
        html += f"<p class='muted'>data: <code>{escape(str(test['data_root']))}</code></p>"
    if figure is not None:
        html += figure_html(figure, "test_confusion", "Rows gold, columns predicted by the predictor; shading is the "
                                                      "share of the gold row.")
    return html + (per_class_table(test["per_class"]) if test.get("per_class") else "")


def _token_span(t: dict[str, Any]) -> str:
    """A token shaded green when it supports the prediction, red when it speaks against it."""
    rgb = "26,127,55" if t["score"] >= 0 else "198,40,40"
    alpha = min(1.0, abs(float(t["score"]))) * 0.6
    return (f'<span class="tok" style="background:rgba({rgb},{alpha:.2f})" title="{t["score"]:.3f}">'
            f"{escape(str(t['token']))}</span>")


def gallery_html(items: list[GalleryItem]) -> str:
    """The error gallery: per post its image, labels, probabilities, text and evidence, the image map (the crop and
    the map side by side, with a colour bar) across the card's width."""
    cards = []
    for it in items:
        ev = it.evidence
        thumb = f'<img src="{it.thumbnail}" alt="{escape(f"image {it.guid}", quote=True)}">' if it.thumbnail else ""
        probs = probabilities_text(it.probabilities)
        parts = [(f"<div><b>{escape(it.guid)}</b>: gold <span class='gold'>{escape(it.gold)}</span>, predicted "
                 f"<span class='pred'>{escape(it.predicted)}</span></div>"), f"<div class='muted'>{probs}</div>",
                 f"<blockquote class='post'>{escape(it.text) or '<i>(no text)</i>'}</blockquote>"]
        if ev.get("modality_ablation"):
            drop = ev["modality_ablation"]
            parts.append(f"<div class='muted'>driven by: {escape(str(ev.get('dominant_modality')))} (ablation drop: "
                         f"image {drop['image']:+.3f}, text {drop['text']:+.3f})</div>")
        if ev.get("gate"):
            parts.append(f"<div class='muted'>{escape(ev['gate']['summary'])}</div>")
        if ev.get("tokens"):
            parts.append(f"<div>{' '.join(map(_token_span, ev['tokens']))}</div>")
        parts += [f"<div class='note'>{escape(n)}</div>" for n in it.notes]
        image_map = (f"<img class='map' src=\"{it.overlay}\" alt=\"{escape(str(ev.get('image_map')), quote=True)} "
                     "map beside the crop\">") if it.overlay else ""
        cards.append(f"<div class='card'><div>{thumb}</div><div>{''.join(parts)}</div>{image_map}</div>")
    return f"<div class='gallery'>{''.join(cards)}</div>"


def render(data: RunData, fig: dict[str, bytes], gallery: list[GalleryItem], gallery_notes: list[str],
           problems: list[str]) -> str:
    """The whole page: the run's numbers, its figures (PNG bytes by key), the error gallery and what is missing."""
    m, comp, chosen = data.metrics, data.comparison, data.chosen_model
    ens = m.get("ensemble_validation_metrics") or {}
    sections = [(f"<h1>mmsent run report</h1><p class='muted'>{escape(str(data.run_dir))} · generated "
                f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>")]
    predictor = m.get("predictor") or {}
    summary = f"<p>Predictor: <b>{escape(str(chosen))}</b>"
    if predictor.get("members"):
        summary += f" (mean of {escape(', '.join(predictor['members']))}, each design weighted equally)"
    if ens:
        held = "out-of-fold" if (m.get("folds") or 1) > 1 else "validation"
        summary += (f"; on {ens.get('n', '?')} {held} rows: accuracy {ens['accuracy']:.3f}, "
                    f"macro-F1 {ens['macro_f1']:.3f}, weighted-F1 {ens['weighted_f1']:.3f}")
    if predictor.get("class_weights"):  # a run of an older version: say which of its numbers are not its own
        summary += ("; these scores are of a decision rule (class weights) that this version no longer applies: "
                    "the confusion matrices and the error gallery here are plain argmax")
    summary += ".</p>"
    if m.get("data_root"):
        summary += f"<p class='muted'>data: <code>{escape(m['data_root'])}</code></p>"
    sections.append(summary)
    if comp.get("summary"):
        seeds = ", ".join(map(str, sorted({r["seed"] for r in comp.get("runs", [])})))
        folds = comp.get("folds") or 1
        note = (f"Mean ± sample std over {f'{folds} folds x ' if folds > 1 else ''}seeds {seeds}; "
                f"{comp.get('train_size', '?')} training rows, {comp.get('val_size', '?')} held-out rows; "
                "the row marked ★ predicts is the predictor (an ensemble: scored once, on the same rows).")
        for b in comp.get("baselines") or []:
            note += (f" Untrained baseline {b['name']} ({b.get('model', '')}): accuracy {b['accuracy']:.3f}, "
                     f"macro-F1 {b['macro_f1']:.3f}, weighted-F1 {b['weighted_f1']:.3f}.")
        sections.append(f"<h2>Model comparison</h2>{comparison_table(comp['summary'], chosen, comp.get('predictor'))}"
                        f"<p class='muted'>{escape(note)}</p>")
    for key, title, caption in (
        ("comparison", None, ""),
        ("learning_curves", "Learning curves", "Per seed; vertical lines mark the epoch kept (early stopping)."),
        ("confusion", "Confusion matrices", ("Each design's seed ensemble (mean probabilities) on the validation "
                                            "rows; shading is the share of the gold row.")),
        ("per_class", "Per-class metrics", ""),
        ("calibration", "Calibration", ("Top-class probability against accuracy, 10 equal-width bins; ECE is the "
                                       "row-weighted mean gap.")),
    ):
        if key in fig:
            head = f"<h2>{title}</h2>" if title else ""
            extra = per_class_table(ens["per_class"]) if key == "per_class" and ens.get("per_class") else ""
            sections.append(f"{head}{figure_html(fig[key], key, caption)}{extra}")
    if data.test_metrics.get("accuracy") is not None:
        sections.append(scores_on_test_rows(data.test_metrics, chosen, fig.get("test_confusion")))
    sections.append("<h2>Most confident validation errors</h2><p class='muted'>The chosen ensemble's wrong "
                    "predictions, most confident first. Under each post: the center crop the model saw and, beside "
                    "it, where the model looked (text→image attention for dual-stream, else |gradient × input| per "
                    "image cell; the colour bar runs from low to high); words: green supports the predicted label, "
                    "red speaks against it.</p>")
    sections += [f"<p class='note'>{escape(n)}</p>" for n in gallery_notes]
    sections.append(gallery_html(gallery) if gallery else "<p>No validation errors to show.</p>")
    if problems:
        sections.append("<h2>Not shown</h2><ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmsent report: "
            f"{escape(data.run_dir.name)}</title><style>{_CSS}</style></head><body>"
            f"{''.join(sections)}</body></html>\n")
