"""Rendering the report as one self-contained HTML file: inline CSS, figures and thumbnails as data URIs."""

from __future__ import annotations

import base64
import datetime as dt
from html import escape
from typing import Any

from mmsent.labels import LABELS
from mmsent.report.gallery import GalleryItem

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;max-width:1200px;margin:0 auto;
padding:1rem 1.5rem 3rem}h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.muted{color:#6e6e73}table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.25rem .6rem;
text-align:right}th:first-child,td:first-child{text-align:left}tr.best td{font-weight:600;background:#f1f7ff}
figure{margin:.5rem 0}figure img{max-width:100%}.gallery{display:grid;grid-template-columns:repeat(auto-fill,
minmax(360px,1fr));gap:1rem}.card{border:1px solid #ddd;border-radius:8px;padding:.6rem;display:grid;
grid-template-columns:auto 1fr;gap:.6rem}.card img{width:150px;height:auto;border-radius:4px;display:block;
margin-bottom:.3rem}.gold{color:#1a7f37}.pred{color:#c62828}.tok{padding:0 .15em;border-radius:3px}
.note{color:#9a6700;font-size:.9em}code{background:#f4f4f6;padding:0 .2em}
"""


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pm(row: dict[str, Any], key: str) -> str:
    return f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}"


def comparison_table(summary: list[dict[str, Any]], best: str | None) -> str:
    head = ("<tr><th>model</th><th>seeds</th><th>accuracy</th><th>macro-F1</th><th>weighted-F1</th>"
            "<th>best epoch</th><th>train s</th></tr>")
    rows = []
    for r in summary:
        cls = ' class="best"' if r["model"] == best else ""
        rows.append(f"<tr{cls}><td>{escape(r['model'])}</td><td>{r['n_seeds']}</td><td>{_pm(r, 'accuracy')}</td>"
                    f"<td>{_pm(r, 'macro_f1')}</td><td>{_pm(r, 'weighted_f1')}</td>"
                    f"<td>{r['best_epoch_mean']:.1f}</td><td>{r['train_seconds_mean']:.1f}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = [f"<tr><td>{c}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td>"
            f"<td>{int(m['support'])}</td></tr>" for c, m in per_class.items()]
    return f"<table>{head}{''.join(rows)}</table>"


def _tokens_html(tokens: list[dict[str, Any]]) -> str:
    spans = []
    for t in tokens:
        a = min(1.0, abs(float(t["score"]))) * 0.6
        color = f"rgba(26,127,55,{a:.2f})" if t["score"] >= 0 else f"rgba(198,40,40,{a:.2f})"
        spans.append(f'<span class="tok" style="background:{color}" title="{t["score"]:.3f}">'
                     f"{escape(str(t['token']))}</span>")
    return " ".join(spans)


def gallery_html(items: list[GalleryItem]) -> str:
    cards = []
    for it in items:
        imgs = "".join(f'<img src="{uri}" alt="{alt}">' for uri, alt in
                       ((it.thumbnail, f"image {it.guid}"), (it.overlay, f"{it.image_map} map")) if uri)
        probs = ", ".join(f"{n} {it.probabilities[n]:.2f}" for n in LABELS)
        parts = [(f"<div><b>{escape(it.guid)}</b>: gold <span class='gold'>{it.gold}</span>, predicted "
                 f"<span class='pred'>{it.predicted}</span></div>"), f"<div class='muted'>{probs}</div>",
                 f"<div>{escape(it.text) or '<i>(no text)</i>'}</div>"]
        if it.ablation:
            parts.append(f"<div class='muted'>driven by: {escape(str(it.dominant))} (ablation drop: image "
                         f"{it.ablation['image']:+.3f}, text {it.ablation['text']:+.3f})</div>")
        if it.tokens:
            parts.append(f"<div>{_tokens_html(it.tokens)}</div>")
        parts += [f"<div class='note'>{escape(n)}</div>" for n in it.notes]
        cards.append(f"<div class='card'><div>{imgs}</div><div>{''.join(parts)}</div></div>")
    return f"<div class='gallery'>{''.join(cards)}</div>"


def render(ctx: dict[str, Any]) -> str:
    """The whole page from the pieces :func:`mmsent.report.build_report` gathered."""
    fig = ctx["figures"]
    m = ctx["metrics"]
    ens = m.get("ensemble_validation_metrics") or {}
    sections = [(f"<h1>mmsent run report</h1><p class='muted'>{escape(str(ctx['run_dir']))} · generated "
                f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>")]
    summary = f"<p>Chosen model: <b>{escape(str(ctx['chosen']))}</b>"
    if ens:
        summary += (f"; seed ensemble on {ens.get('n', '?')} validation rows: accuracy {ens['accuracy']:.3f}, "
                    f"macro-F1 {ens['macro_f1']:.3f}, weighted-F1 {ens['weighted_f1']:.3f}")
    summary += ".</p>"
    if m.get("data_root"):
        summary += f"<p class='muted'>data: <code>{escape(m['data_root'])}</code></p>"
    sections.append(summary)
    if ctx.get("summary"):
        sections.append("<h2>Model comparison</h2>" + comparison_table(ctx["summary"], ctx["chosen"]) +
                        f"<p class='muted'>{escape(ctx.get('comparison_note', ''))}</p>")
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
            sections.append(f"{head}<figure><img src='{png_uri(fig[key])}' alt='{key}'><figcaption class='muted'>"
                            f"{escape(caption)}</figcaption></figure>{extra}")
    sections.append("<h2>Most confident validation errors</h2><p class='muted'>The chosen ensemble's wrong "
                    "predictions, most confident first. Heat-map: where the model looked (text→image attention "
                    "for dual-stream, else |gradient × input| per image cell) over the center crop it saw; tokens: "
                    "green supports the predicted label, red speaks against it.</p>")
    sections += [f"<p class='note'>{escape(n)}</p>" for n in ctx.get("gallery_notes", [])]
    sections.append(gallery_html(ctx["gallery"]) if ctx["gallery"] else "<p>No validation errors to show.</p>")
    if ctx.get("problems"):
        sections.append("<h2>Not shown</h2><ul>" + "".join(f"<li>{escape(p)}</li>" for p in ctx["problems"]) +
                        "</ul>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmsent report: "
            f"{escape(str(ctx['run_dir'].name))}</title><style>{_CSS}</style></head><body>"
            f"{''.join(sections)}</body></html>\n")
