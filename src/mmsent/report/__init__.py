"""A self-contained HTML report of a finished run, and its figures as PNG files.

``build_report(run_dir)`` writes ``run_dir/report.html`` (figures and thumbnails embedded as data URIs, inline CSS,
no network assets) and ``run_dir/report/*.png``. ``mmsent report RUN_DIR`` rebuilds them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mmsent.report.run_data import RunData, load_run_data

log = logging.getLogger("mmsent.report")

REPORT_FILE = "report.html"
FIGURES_DIR = "report"

__all__ = ["FIGURES_DIR", "REPORT_FILE", "RunData", "build_report", "load_run_data"]


def _figures(data: RunData, problems: list[str]) -> dict[str, bytes]:
    from mmsent.report import figures as F  # local: matplotlib is only needed once a report is built

    out: dict[str, bytes] = {}
    comp, chosen = data.comparison, data.chosen_model

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
    if data.validation:
        matrices = {name: F.confusion_matrix(data.gold, v.ensemble.argmax(1)) for name, v in data.validation.items()}
        attempt("confusion", "confusion-matrix", F.confusion_matrices, matrices)
    else:
        problems.append("confusion matrices, calibration and error gallery: no validation_predictions.csv")
    per_class = (data.metrics.get("ensemble_validation_metrics") or {}).get("per_class")
    if per_class:
        attempt("per_class", "per-class", F.per_class_bars, per_class, f"{chosen} seed ensemble, validation")
    if chosen in data.validation:
        curves = {f"{chosen} ensemble": F.calibration(data.validation[chosen].ensemble, data.gold)}
        for name, v in data.validation.items():
            if name != chosen:
                curves[name] = F.calibration(v.ensemble, data.gold)
        attempt("calibration", "calibration", F.reliability_diagram, curves)
    return out


def build_report(run_dir: str | Path, *, explain: bool = True, max_errors: int = 12, predictor: Any = None) -> Path:
    """Writes ``report.html`` and ``report/*.png`` into a run directory from what the run saved there.

    Args:
        run_dir: a run directory (``comparison.json``, ``metrics.json``, ``validation_predictions.csv``, ...).
        explain: explain the gallery's errors (loads the run's encoders and models; skipped with a note on failure).
        max_errors: size of the error gallery.
        predictor: an already loaded :class:`~mmsent.inference.RunPredictor` for the explanations.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a run directory.
    """
    from mmsent.report.gallery import build_gallery
    from mmsent.report.html import render

    run_dir = Path(run_dir)
    data = load_run_data(run_dir)
    problems: list[str] = []
    figs = _figures(data, problems)
    fig_dir = run_dir / FIGURES_DIR
    fig_dir.mkdir(exist_ok=True)
    for name, png in figs.items():
        (fig_dir / f"{name}.png").write_bytes(png)
    gallery, notes = build_gallery(data, max_errors, explain=explain, predictor=predictor)
    seeds = sorted({r["seed"] for r in data.comparison.get("runs", [])})
    ctx = {
        "run_dir": run_dir, "metrics": data.metrics, "chosen": data.chosen_model, "figures": figs,
        "summary": data.comparison.get("summary"), "gallery": gallery, "gallery_notes": notes,
        "problems": problems,
        "comparison_note": (f"Mean ± sample std over seeds {', '.join(map(str, seeds))}; "
                            f"{data.comparison.get('train_size', '?')} training rows, "
                            f"{data.comparison.get('val_size', '?')} validation rows; chosen model highlighted."),
    }
    out = run_dir / REPORT_FILE
    out.write_text(render(ctx), encoding="utf-8")
    log.info("wrote report %s", out)
    return out
