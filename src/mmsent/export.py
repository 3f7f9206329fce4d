"""Shareable model folders (``mmsent export RUN_DIR OUT``) and loading them (``mmsent.load``).

An exported folder holds only what predicting needs, in the Hugging Face hub's layout (a ``README.md`` model card
with YAML metadata at the top, weights as safetensors, JSON configuration), so it can be uploaded as it is:
``config.yaml`` (encoders, cleaning, preprocessing), ``predictor.json`` (members, held-out scores),
``models/`` (the predictor's fusion models: safetensors + JSON), fine-tuned encoder weights under ``finetuned/``
when the run fine-tuned, ``metrics.json``, ``data_report.json`` and ``test_metrics.json`` when the run scored labelled
test rows, and ``checksums.sha256`` (written last) sealing
every file predicting reads. It is itself a run folder: ``mmsent predict``, ``mmsent serve`` and :func:`load` take it
as they take the run, and refuse it once a file they read has changed.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsent.io import atomic_write_text
from mmsent.labels import DEFAULT_LABELS, LABELS, LabelSet
from mmsent.run_files import (
    COMPARISON_FILES,
    CONFIG_FILE,
    DATA_REPORT_FILE,
    FINETUNE_RECORD,
    FINETUNED_FILES,
    METRICS_FILE,
    MODELS_DIR,
    PREDICTOR_FILE,
    TEST_METRICS_FILE,
    RunFolder,
)
from mmsent.run_folder import counted, load_run_models, saved_labels, seal_run

if TYPE_CHECKING:  # annotations only
    from mmsent.config import RunConfig

CARD_FILE = "README.md"
_COPIED = (CONFIG_FILE, PREDICTOR_FILE, METRICS_FILE, DATA_REPORT_FILE, COMPARISON_FILES["md"], TEST_METRICS_FILE)


def export_run(run_dir: str | Path, out: str | Path, *, verify: bool = True) -> Path:
    """Writes the self-describing model folder of a finished run to ``out`` (which must not exist or be empty), sealed
    with its own ``checksums.sha256``.

    Args:
        verify: check the run against its checksums first (False exports, and seals, its files as they are).

    Raises:
        FileNotFoundError / ValueError: for a run folder that is not finished, is damaged or was changed (named).
        FileExistsError: if ``out`` holds files.
    """
    run_dir, out = Path(run_dir), Path(out)
    run = load_run_models(run_dir, verify=verify)  # checks the run can predict before anything is written
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; export into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    for name in RunFolder(run_dir).read_json(PREDICTOR_FILE).get("models", []):
        shutil.copytree(run_dir / MODELS_DIR / name, out / MODELS_DIR / name)
    if run.cfg.finetune.enabled:
        record = RunFolder(run_dir).read_json(FINETUNE_RECORD)
        for modality, entry in record.items():
            if entry.get("dir"):
                target = Path("finetuned") / modality
                (out / target).mkdir(parents=True)
                for name in FINETUNED_FILES:  # not the fine-tuning's cross-fitting folds (training rows' features)
                    shutil.copy2(Path(entry["dir"]) / name, out / target / name)
                entry["dir"] = target.as_posix()  # relative: read against the folder it lies in
        RunFolder(out).write_json(FINETUNE_RECORD, record)
    atomic_write_text(out / CARD_FILE, model_card(out))
    seal_run(out)  # last: it vouches for the files written above
    load_run_models(out)  # the folder must load, verified, as it is
    return out


def _is_sentiment(labels: LabelSet) -> bool:
    """Whether the classes are the sentiment classes of the lab data (the card's wording was written for them)."""
    return set(labels) <= set(LABELS)


def _limitations(labels: LabelSet, counts: dict[str, Any]) -> list[str]:
    """The card's intended-use bullets: the lab data's for the sentiment classes, else the task's class shares."""
    if _is_sentiment(labels):
        return [
            "- Research and analysis of the sentiment of social-media posts that pair a short text with an image.",
            "- Trained on one corpus of English tweets (MVSA-Single when trained on the lab data, whose terms allow "
            "research use only); other domains, languages, or posts without a meaningful image are out of its range.",
            "- The classes are imbalanced (about 60% positive, 30% negative, 10% neutral): neutral is the weakest "
            "class; read macro-F1, not accuracy alone. Not for decisions about individuals."]
    counts = {name: _count(n) or 0 for name, n in counts.items()}
    total = sum(counts.values())
    shares = ", ".join(f"{n} {counts.get(n, 0) / total:.0%}" for n in labels) if total else "not recorded"
    return [
        f"- Research and analysis of social-media posts that pair a short text with an image, as one of "
        f"{len(labels)} classes: {', '.join(labels)}.",
        "- Trained on one dataset; other domains, languages, or posts without a meaningful image are out of its "
        "range.",
        f"- Class shares of the training rows: {shares}; the rarer a class, the weaker it tends to be: read macro-F1, "
        "not accuracy alone. Not for decisions about individuals."]


def _count(value: Any) -> int | None:
    """A row or fold count a run file records, or None where it records none usable (missing, text, a bool)."""
    return value if type(value) is int and value >= 0 else None


def _counts(section: Any) -> str:
    """``utf-8 990, gbk 10`` from a section of named counts; the entries that are not counts are left out."""
    named = {str(name): _count(n) for name, n in _mapping(section).items()}
    return ", ".join(f"{name} {n}" for name, n in named.items() if n is not None)


def _mapping(value: Any) -> dict[str, Any]:
    """A section of a run file, or an empty one where it holds something else (null, a list, text)."""
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> float | None:
    """A score a run file records, or None where it is not a finite number (missing, text, a bool, NaN)."""
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _scores(record: Any) -> dict[str, float] | None:
    """Accuracy, macro-F1 and weighted-F1 from a scores record, or None unless all three are finite numbers."""
    record = _mapping(record)
    values = {k: _finite(record.get(k)) for k in ("accuracy", "macro_f1", "weighted_f1")}
    return values if None not in values.values() else None  # type: ignore[return-value]


def _finetuned_line(cfg: RunConfig, record: dict[str, Any]) -> str:
    """The card's line on which encoder was fine-tuned and how (``finetune.json``), e.g. only a combined text
    encoder's first part."""
    if not cfg.finetune.enabled:
        return "- fine-tuned: no (frozen pretrained encoders)"
    if not record:
        return "- fine-tuned: yes, weights under finetuned/ (this folder's finetune.json does not say which encoder)"
    tuned = [f"{modality} (`{entry.get('encoder') or getattr(cfg.encoders, modality)}`, "
             f"{'every layer' if entry.get('mode') == 'full' else 'its top layers'})"
             for modality, entry in record.items() if isinstance(entry, dict) and entry.get("dir")]
    frozen = [m for m, entry in record.items() if isinstance(entry, dict) and entry.get("mode") == "frozen"]
    line = f"- fine-tuned: {', '.join(tuned) if tuned else 'yes'}, weights under finetuned/"
    return line + (f"; {' and '.join(frozen)} frozen" if frozen else "")


def _machine(machine: Any) -> str:
    """`` (machine: Linux-x86_64, Python 3.11.7)`` from what ``metrics.json`` records, or nothing."""
    if isinstance(machine, dict):
        parts = [str(machine.get("platform") or ""), f"Python {machine['python']}" if machine.get("python") else ""]
        machine = ", ".join(p for p in parts if p)
    return f" (machine: {machine})" if isinstance(machine, str) and machine else ""


def _folds(metrics: dict[str, Any]) -> int:
    """The run's number of k-fold folds; 1 for a single split or where ``metrics.json`` records none usable."""
    return _count(metrics.get("folds")) or 1


def _test_scores(test: dict[str, Any]) -> list[str]:
    """The card's line on the labelled test rows the run scored (``test_metrics.json``), if it scored any."""
    scores = _scores(test)
    if scores is None:
        return []
    n = _count(test.get("n"))
    rows = "labelled rows" if n is None else f"{n} labelled rows"
    line = (f"Test split ({rows} no model trained or was chosen on): accuracy **{scores['accuracy']:.3f}**, "
            f"macro-F1 **{scores['macro_f1']:.3f}**, weighted-F1 {scores['weighted_f1']:.3f}")
    positive = _finite(test.get("positive_f1"))
    if positive is not None:
        line += f", F1 of {test.get('positive_label') or 'the positive class'} {positive:.3f}"
    return [line + ".", ""]


def _what_predicts(labels: LabelSet, predictor: dict[str, Any]) -> str:
    """The card's first sentence: the classes, and the predictor's name and members where ``predictor.json`` says."""
    line = f"Predicts {', '.join(labels)} for a post made of a text and an image."
    if not isinstance(predictor.get("name"), str) or not predictor["name"]:
        return line
    models, members = predictor.get("models"), predictor.get("members")
    what = f"mean probability of {counted(len(models), 'fusion model')}" if isinstance(models, list) and models else ""
    if isinstance(members, list) and members:
        what = f"{what}: {', '.join(map(str, members))}" if what else ", ".join(map(str, members))
    return f"{line} What predicts: **{predictor['name']}**{f' ({what})' if what else ''}, label by plain argmax."


def _held_out_scores(predictor: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """The card's held-out line, where ``predictor.json`` records the scores and ``metrics.json`` how they were held
    out; a folder without them says so instead of printing placeholders."""
    held = _scores(_mapping(predictor.get("scores")).get("argmax"))
    if held is None:
        return ["Held-out scores: not recorded in this folder's predictor.json.", ""]
    folds, rows = _folds(metrics), _count(metrics.get("validation_rows"))
    if folds > 1:
        where = f" ({folds}-fold cross-validation, every labelled row out of fold)"
    else:
        where = f" (a stratified validation split of {rows} rows)" if rows else ""
    return [f"Held out{where}: accuracy **{held['accuracy']:.3f}**, macro-F1 **{held['macro_f1']:.3f}**, "
            f"weighted-F1 {held['weighted_f1']:.3f}.", ""]


def _how_trained(cfg: RunConfig, labelled: int | None, metrics: dict[str, Any]) -> str:
    """The card's sentence on which rows trained the predictor's models, where the files say."""
    rows, folds = _count(metrics.get("validation_rows")), _folds(metrics)
    if folds > 1:
        return (f" Every labelled post trains the predictor: {folds} fold models per design and seed, each trained "
                "without its fold.")
    if labelled is not None and rows is not None and labelled > rows:
        return (f" Each model trained on the {labelled - rows} posts outside the validation split (a "
                f"{cfg.training.stop_fraction:.0%} holdout of them chose its epoch); the validation rows only scored"
                " them.")
    return ""


def _data_lines(cfg: RunConfig, data: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """The card's data paragraph from ``data_report.json`` and how the predictor's models trained."""
    labelled = _count(_mapping(data.get("counts")).get("train"))
    trained = _how_trained(cfg, labelled, metrics)
    if labelled is None:
        return [f"This folder's data_report.json does not record how many labelled posts trained it.{trained}", ""]
    counts, encodings, skipped = (_counts(data.get(key)) for key in ("label_counts", "encodings", "skipped"))
    per_class = f" ({counts})" if counts else ""
    read = f"; text encodings: {encodings}" if encodings else ""
    skips = f"; skipped rows: {skipped}" if skipped else "; no row skipped"
    return [f"The dataset: {labelled} labelled posts{per_class}{read}{skips}.{trained}", ""]


def model_card(folder: Path) -> str:
    """The Markdown model card of an exported folder, from its own files; what they do not record is left out."""
    from mmsent.config import load_config

    cfg = load_config(folder / CONFIG_FILE)
    files = RunFolder(folder)
    predictor, metrics, data = (files.read_json(name, missing_ok=True)  # a JSON object each, or refused naming it
                                for name in (PREDICTOR_FILE, METRICS_FILE, DATA_REPORT_FILE))
    table_file = files / COMPARISON_FILES["md"]
    table_text = table_file.read_text(encoding="utf-8").strip() if table_file.is_file() else ""
    table = ["Every design of the run, mean ± std over seeds (and folds):", "", table_text, ""] if table_text else []
    labels = saved_labels(folder) or DEFAULT_LABELS
    sentiment = _is_sentiment(labels)
    machine = _machine(metrics.get("machine"))
    lines = [
        "---", "library_name: mmsent", "pipeline_tag: text-classification",
        f"tags: [multimodal, {'sentiment-analysis' if sentiment else 'classification'}, image-text"
        f"{', mvsa' if sentiment else ''}]", "---", "",
        f"# mmsent image + text {'sentiment' if sentiment else 'classification'} model", "",
        _what_predicts(labels, predictor), "",
        "## Encoders", "",
        f"- image: `{cfg.encoders.image}` (grid {cfg.encoders.image_grid}, inference backend {cfg.encoders.backend})",
        f"- text: `{cfg.encoders.text}` (max {cfg.encoders.text_max_length} tokens, {cfg.encoders.text_pooling} "
        "pooling)",
        _finetuned_line(cfg, files.read_json(FINETUNE_RECORD, missing_ok=True)),
        "", "## Scores", "", *_held_out_scores(predictor, metrics),
        *_test_scores(files.read_json(TEST_METRICS_FILE, missing_ok=True)), *table,
        "## Data", "", *_data_lines(cfg, data, metrics),
        "## Intended use and limitations", "", *_limitations(labels, _mapping(data.get("label_counts"))), "",
        "## Use", "", "```bash", "mmsent predict THIS_FOLDER --image post.jpg --text \"what a day\"",
        "mmsent predict THIS_FOLDER --input posts.csv --out predicted.jsonl", "mmsent serve THIS_FOLDER", "```", "",
        "```python", "import mmsent", "clf = mmsent.load(\"THIS_FOLDER\")",
        "clf(\"post.jpg\", \"what a day\")  # {\"label\": ..., \"scores\": {...}}; lists give a list", "```", "",
        f"Training: `mmsent run` with the configuration in `{CONFIG_FILE}`{machine}.",
    ]
    return "\n".join(lines) + "\n"


SHIPPED_MODEL = Path(__file__).resolve().parent / "shipped_model"


def shipped_model_path() -> Path:
    """The model folder that ships with mmsent: the default ``mmsent run`` on the lab data, exported (its model card,
    ``README.md``, holds its validation scores). ``predict``, ``serve`` and :func:`load` use it without a run folder."""
    if not (SHIPPED_MODEL / PREDICTOR_FILE).is_file():
        raise FileNotFoundError(f"the shipped model is missing from this installation ({SHIPPED_MODEL}); reinstall "
                                "mmsent, or pass a run folder")
    return SHIPPED_MODEL


def load(folder: str | Path | None = None, **kwargs: Any):
    """A ready predictor for an exported folder or a run folder (:class:`~mmsent.inference.RunPredictor`); without
    one, the shipped model. ``kwargs`` go to the predictor (``verify=False`` skips checking the folder's checksums)."""
    from mmsent.inference import RunPredictor

    return RunPredictor(folder if folder is not None else shipped_model_path(), **kwargs)
