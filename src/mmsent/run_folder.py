"""What a finished run predicts with: the chosen design's seed models and the encoders its features came from.

:func:`load_run_models` is the one answer to "which models and encoders does this run predict with?"; ``mmsent
predict``, ``mmsent serve``, ``mmsent.load``, streaming and the report's explanations all go through it.

A run (and an exported folder) is sealed: ``checksums.sha256``, written last, holds the sha256 of every file that
predicting reads (:func:`prediction_files`), in ``sha256sum`` format (``cd RUN && sha256sum -c checksums.sha256``).
Loading verifies it, so a damaged or edited file is refused by name instead of changing the answers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mmsent.config import RunConfig, load_config
from mmsent.encoders.base import ImageEncoder, TextEncoder
from mmsent.encoders.registry import create_encoders_from_config
from mmsent.features.featureset import FeatureSet
from mmsent.fingerprint import file_digest, format_sha256sums, parse_sha256sums
from mmsent.fusion.base import FusionModel
from mmsent.fusion.registry import META_FILE, WEIGHTS_FILE, load_model
from mmsent.io import atomic_write_text
from mmsent.labels import LabelError, LabelSet
from mmsent.run_files import (  # re-exported: callers that load models find the layout here too
    CONFIG_FILE,
    FINETUNE_RECORD,
    FINETUNED_FILES,
    MANIFEST_FILE,
    METRICS_FILE,
    MODELS_DIR,
    PREDICTOR_FILE,
    RERUN,
    read_json,
)
from mmsent.training.ensemble import Predictor
from mmsent.training.trainer import mean_proba

log = logging.getLogger("mmsent.run_folder")

_MODEL_DIR = re.compile(r"(?P<name>[a-z][a-z0-9_]*?)(?:_fold(?P<fold>\d+))?_seed(?P<seed>\d+)")


def model_dir(run_dir: str | Path, name: str, seed: int, fold: int | None = None) -> Path:
    """Where a run keeps the model of design ``name`` trained with ``seed`` (on cross-validation fold ``fold``)."""
    return Path(run_dir) / MODELS_DIR / (f"{name}_seed{seed}" if fold is None else f"{name}_fold{fold}_seed{seed}")


@dataclass
class RunModels:
    """A run's predictor, loaded.

    Attributes:
        run_dir: the run folder.
        cfg: the run's saved config.
        name: what predicts (``ensemble`` or a design).
        seeds: the seeds of its models.
        models: the trained models (eval mode), whose mean probability is the prediction.
        labels: the class names of the models' outputs, in order (``id2label``).
        designs: the fusion designs among the models, in order.
        folds: how many cross-validation folds each design has models of (1 without k-fold).
    """

    run_dir: Path
    cfg: RunConfig
    name: str
    seeds: list[int]
    models: list[FusionModel]
    labels: LabelSet | None = None
    designs: list[str] = field(default_factory=list)
    folds: int = 1

    def describe(self) -> str:
        """How many models predict, in words (beside ``name``): ``mean of 6 designs × 3 seeds``, ``mean of 3
        seeds``, ``one model (seed 0)``."""
        if len(self.models) == 1:
            return f"one model (seed {self.seeds[0]})"
        factors = [counted(len(self.designs), "design")] if len(self.designs) > 1 else []
        factors += [counted(self.folds, "fold")] if self.folds > 1 else []
        return f"mean of {' × '.join([*factors, counted(len(self.seeds), 'seed')])}"

    def proba(self, feats: FeatureSet, device: str = "cpu") -> np.ndarray:
        """The predictor's class probabilities for the rows of ``feats`` (in ``labels`` order): its models' mean."""
        return mean_proba(self.models, feats, device)

    def encoders(self, device: str = "cpu") -> tuple[ImageEncoder, TextEncoder]:
        """The encoders the run's features came from (its fine-tuned ones when it fine-tuned)."""
        return load_run_encoders(self.run_dir, replace(self.cfg, encoders=replace(self.cfg.encoders, device=device)))


def _check_models(names: object, members: list[str], where: Path) -> list[str]:
    """``predictor.json``'s ``models``: folder names, each once, each a model of one of ``members``, and every member
    with a model (a repeat or a stray design would re-weight the mean without a word)."""
    fix = "run the job again"
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and _MODEL_DIR.fullmatch(n)
                                                           for n in names):
        raise ValueError(f"{where}: 'models' must list folder names like gated_seed0 or gated_fold0_seed0; {fix}")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ValueError(f"{where}: 'models' names {repeated} more than once; {fix}")
    for n in names:
        design = _MODEL_DIR.fullmatch(n)["name"]
        if design not in members:
            raise ValueError(f"{where}: {n} is a {design} model, which 'members' does not name; {fix}")
    idle = [m for m in members if not any(_MODEL_DIR.fullmatch(n)["name"] == m for n in names)]
    if idle:
        raise ValueError(f"{where}: 'members' names {', '.join(idle)}, but 'models' lists no model of it; {fix}")
    return list(names)


def _predictor_models(run_dir: Path) -> tuple[str, list[str]]:
    """(name, model folder names) from ``predictor.json``, or for runs made before it existed, the
    chosen design's seed models named in ``metrics.json``."""
    fix = RERUN
    if (run_dir / PREDICTOR_FILE).is_file():
        data = read_json(run_dir / PREDICTOR_FILE, fix)
        predictor = Predictor.from_dict(data, str(run_dir / PREDICTOR_FILE))
        names = _check_models(data.get("models"), predictor.members, run_dir / PREDICTOR_FILE)
        return predictor.name, names
    if not (run_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / PREDICTOR_FILE} not found: the run did not finish, or the file was "
                                f"deleted; {fix}")
    metrics = read_json(run_dir / METRICS_FILE, fix)
    chosen = metrics.get("chosen_model")
    if not isinstance(chosen, str) or not _MODEL_DIR.fullmatch(f"{chosen}_seed0"):
        raise FileNotFoundError(f"{run_dir / METRICS_FILE} names no chosen_model: the run did not finish; {fix}")
    return chosen, [f"{chosen}_seed{int(s)}" for s in metrics.get("seeds") or [0]]


class IntegrityError(ValueError):
    """A run folder's files differ from its ``checksums.sha256``, or it has none to check them against."""


def _inside(run_dir: Path, path: Path) -> Path:
    """``path``, if it lies in ``run_dir`` once links are resolved; a folder's answers must come from its own files."""
    if not path.resolve().is_relative_to(run_dir.resolve()):
        raise ValueError(f"{path} resolves to {path.resolve()}, outside the run folder {run_dir}; a run predicts only "
                         "with its own files: copy them into the folder instead of linking them")
    return path


def _finetuned_files(run_dir: Path) -> list[Path]:
    """The fine-tuned encoder files ``finetune.json`` names inside the folder (an exported one's ``finetuned/``); those
    of a run lie in the cache, outside, and are checked against the fingerprints they were saved with."""
    path = run_dir / FINETUNE_RECORD
    if not path.is_file():
        return []
    files = []
    for entry in read_json(path).values():
        folder = run_dir / entry["dir"] if isinstance(entry, dict) and isinstance(entry.get("dir"), str) else None
        if folder is not None and folder.resolve().is_relative_to(run_dir.resolve()):
            files += [folder / name for name in FINETUNED_FILES]
    return files


def prediction_files(run_dir: str | Path) -> list[str]:
    """Every file predicting with ``run_dir`` reads, as ``/``-separated paths relative to it: the config, the
    predictor, each model's description and weights, and the fine-tuning record and weights when it has them.

    Raises:
        ValueError: for a damaged predictor file or a file that resolves outside the folder.
    """
    run_dir = Path(run_dir)
    _, names = _predictor_models(run_dir)
    files = [run_dir / CONFIG_FILE, run_dir / (PREDICTOR_FILE if (run_dir / PREDICTOR_FILE).is_file() else
                                               METRICS_FILE)]
    files += [run_dir / MODELS_DIR / n / f for n in names for f in (META_FILE, WEIGHTS_FILE)]
    if (run_dir / FINETUNE_RECORD).is_file():
        files += [run_dir / FINETUNE_RECORD, *_finetuned_files(run_dir)]
    return [_inside(run_dir, f).relative_to(run_dir).as_posix() for f in files]


def seal_run(run_dir: str | Path) -> Path:
    """Writes ``checksums.sha256`` (the sha256 of every :func:`prediction_files` file) and returns its path.

    Call it last, once every file predicting reads is written: :func:`load_run_models` refuses any later change.

    Raises:
        FileNotFoundError: if a file predicting reads is missing.
        ValueError: for a damaged predictor file or a file that resolves outside the folder.
    """
    run_dir = Path(run_dir)
    files = prediction_files(run_dir)
    missing = [f for f in files if not (run_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: cannot seal, missing {', '.join(missing)}; run the job again")
    digests = {f: file_digest(run_dir / f, memo=False) for f in files}
    return atomic_write_text(run_dir / MANIFEST_FILE, format_sha256sums(digests))


def _escape_hatch(run_dir: Path) -> str:
    return (f"if you changed it on purpose, `mmsent seal {run_dir}` accepts the folder as it is now; `--no-verify` "
            "(verify=False) loads it unchecked")


def verify_run(run_dir: str | Path) -> None:
    """Checks every file ``checksums.sha256`` lists against it, and that it lists every file predicting reads.

    Raises:
        IntegrityError: naming the file and the fix, for a missing manifest, an unlisted, missing or changed file.
    """
    run_dir = Path(run_dir)
    manifest = run_dir / MANIFEST_FILE
    if manifest.is_dir():
        raise IntegrityError(f"{manifest} is a folder, not the checksums file; remove it and restore the file (rerun "
                             f"or re-export the run), or {_escape_hatch(run_dir)}")
    if not manifest.is_file():
        raise IntegrityError(f"{manifest} not found: {run_dir} was made by an mmsent from before runs were sealed, or "
                             "the file was deleted, so nothing shows its files are those the run wrote; if you trust "
                             f"them, `mmsent seal {run_dir}` seals them as they are; `--no-verify` (verify=False) "
                             "loads them unchecked")
    try:
        listed = parse_sha256sums(manifest.read_text(encoding="utf-8"), str(manifest))
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{manifest}: not UTF-8 text ({exc}); rerun or re-export the run, or "
                             f"{_escape_hatch(run_dir)}") from exc
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{exc}; rerun or re-export the run, or {_escape_hatch(run_dir)}") from exc
    for rel, expected in listed.items():
        path = _inside(run_dir, run_dir / rel)
        if not path.is_file():
            raise IntegrityError(f"{path}: listed in {MANIFEST_FILE} but missing; restore it (rerun or re-export "
                                 "the run)")
        actual = file_digest(path, memo=False)  # read afresh: a flipped bit keeps size and mtime
        if actual != expected:
            raise IntegrityError(f"{path}: changed since the run was sealed (sha256 {actual[:12]}..., "
                                 f"{MANIFEST_FILE} says {expected[:12]}...), so the run would answer differently; "
                                 f"restore it (rerun or re-export the run), or {_escape_hatch(run_dir)}")
    for rel in prediction_files(run_dir):  # after the listed files: an edited predictor.json is named as such
        if rel not in listed:
            raise IntegrityError(f"{run_dir / rel}: read to predict, but {MANIFEST_FILE} does not list it (added "
                                 f"after the run was sealed?); remove it, or {_escape_hatch(run_dir)}")


def load_run_models(run_dir: str | Path, *, model_name: str | None = None, device: str = "cpu",
                    verify: bool = True, cfg: RunConfig | None = None) -> RunModels:
    """The models a finished run predicts with (``predictor.json``), or only those of design ``model_name``.

    Args:
        cfg: the run's config with a user's runtime settings (:func:`~mmsent.config.load_run_config`); default: its
            saved ``config.yaml``.
        verify: check the folder against its ``checksums.sha256`` first; False (``--no-verify``) skips that, with a
            warning: an escape hatch for folders sealed by no mmsent, or changed on purpose.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a finished run or a model it names is missing.
        IntegrityError: if a file differs from the folder's checksums (or it has none), naming the file and the fix.
        ValueError: if a run file is damaged (naming the file and the fix).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / CONFIG_FILE} not found; is {run_dir} a run directory? (`mmsent run "
                                "--out RUN_DIR` makes one)")
    sealed = (run_dir / MANIFEST_FILE).exists()
    if verify and sealed:  # first: checking digests parses nothing, so a damaged predictor.json is named as changed
        verify_run(run_dir)
    elif not verify:
        log.warning("%s: not verified against %s (--no-verify): a damaged or edited file would change its answers "
                    "without an error", run_dir, MANIFEST_FILE)
    name, names = _predictor_models(run_dir)
    if model_name and model_name != name:
        names = [n for n in names if _MODEL_DIR.fullmatch(n)["name"] == model_name]
        name = model_name
        if not names:
            raise FileNotFoundError(f"{run_dir}: no saved {model_name} models; the run saved only its predictor's "
                                    "members (see predictor.json)")
    dirs = [run_dir / MODELS_DIR / n for n in names]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        source = (PREDICTOR_FILE if (run_dir / PREDICTOR_FILE).is_file() else
                  f"{METRICS_FILE} (read because {run_dir / PREDICTOR_FILE} is missing)")
        raise FileNotFoundError(f"{run_dir}: saved model folder(s) missing: {', '.join(missing)}, named by {source}; "
                                "run the job again")
    for d in dirs:
        _inside(run_dir, d)
    prediction_files(run_dir)  # every file read resolves inside the folder, verified or not
    if verify and not sealed:  # after naming a damaged or missing predictor file: refused for want of checksums
        verify_run(run_dir)
    cfg = cfg or load_config(run_dir / CONFIG_FILE)
    seeds = sorted({int(_MODEL_DIR.fullmatch(n)["seed"]) for n in names})
    models = [load_model(d, device) for d in dirs]
    _check_finetuning(cfg, run_dir)
    for model, folder in zip(models, dirs):
        _check_feature_settings(cfg, model.saved_meta, folder / META_FILE, run_dir)
    parts = [_MODEL_DIR.fullmatch(n) for n in names]
    designs = list(dict.fromkeys(m["name"] for m in parts))
    folds = len({m["fold"] for m in parts})
    return RunModels(run_dir, cfg, name, seeds, models, run_labels(run_dir, models, dirs), designs, folds)


# The encoder settings that decide which features a model was trained on; the others change only how a run runs.
# The encoders' names are not compared: a run moved to another machine names its weights by another path, and an
# alias names the same encoder as its full name.
_FEATURE_KEYS = ("image_grid", "text_max_length", "text_pooling", "backend")


def _check_finetuning(cfg: RunConfig, run_dir: Path) -> None:
    """``finetune.enabled`` must say what the run did (its ``finetune.json``): the other value predicts with other
    encoders than those that made the training features."""
    if cfg.finetune.enabled != (run_dir / FINETUNE_RECORD).is_file():
        raise IntegrityError(f"{run_dir / CONFIG_FILE}: finetune.enabled is {cfg.finetune.enabled}, but the run "
                             f"{'has no' if cfg.finetune.enabled else 'has a'} {FINETUNE_RECORD}: its models were "
                             "trained on features of the encoders as that record says; set it back, or run the job "
                             "again")


def _check_feature_settings(cfg: RunConfig, meta: dict, where: Path, run_dir: Path) -> None:
    """The run's config must make the features the model was trained on: the encoder and cleaning settings its
    ``model.json`` saved (a config edited, then sealed again, would otherwise change the answers without a word)."""
    config = {**{f"encoders.{k}": getattr(cfg.encoders, k) for k in _FEATURE_KEYS},
              **{f"cleaning.{k}": v for k, v in asdict(cfg.cleaning).items()}}
    saved = {**{f"encoders.{k}": v for k, v in (meta.get("encoders") or {}).items()},
             **{f"cleaning.{k}": v for k, v in (meta.get("cleaning") or {}).items()}}
    for key, value in config.items():
        if key in saved and saved[key] != value:
            raise IntegrityError(f"{run_dir / CONFIG_FILE}: {key} is {value!r}, but the model in {where.parent} was "
                                 f"trained on features made with {saved[key]!r}; its answers would change. Set it back "
                                 f"to {saved[key]!r} (`--set {key}=...` where a command takes it), or run the job again")


def counted(n: int, noun: str) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def saved_labels(run_dir: str | Path) -> LabelSet | None:
    """The class names a run folder's ``predictor.json`` saved (``id2label``); None where it saved none (a run made
    before they were saved predicts the three sentiment classes) or has no ``predictor.json``.

    Raises:
        ValueError: for a damaged ``predictor.json`` or ``id2label``, naming the file and the fix.
    """
    where = Path(run_dir) / PREDICTOR_FILE
    data = read_json(where, missing_ok=True)
    if "id2label" not in data:
        return None
    try:
        return LabelSet.from_json(data, str(where))
    except LabelError as exc:
        raise ValueError(f"{exc}; run the job again") from None


def run_labels(run_dir: Path, models: list[FusionModel], dirs: list[Path]) -> LabelSet:
    """The run's class names: ``predictor.json``'s ``id2label`` (runs before it: the models'), which every model's
    ``model.json`` must repeat, names and order."""
    where = run_dir / PREDICTOR_FILE
    labels = saved_labels(run_dir)
    if labels is None:
        labels = models[0].label_set
    for model, folder in zip(models, dirs):
        try:
            labels.require_same(model.label_set, str(where), str(folder / META_FILE))
        except LabelError as exc:
            raise ValueError(f"{exc}; run the job again") from None
    return labels


def load_run_encoders(run_dir: str | Path, cfg: RunConfig) -> tuple[ImageEncoder, TextEncoder]:
    """The encoders a run extracted with: built from its config, with its fine-tuned weights when it fine-tuned.

    Raises:
        FileNotFoundError: if the run fine-tuned but its record or a fine-tuned folder it names is gone.
    """
    image, text = create_encoders_from_config(cfg.encoders, cache_dir=Path(cfg.cache_dir).expanduser() / "models")
    if not cfg.finetune.enabled:
        return image, text
    from mmsent.finetune.finetuned import apply_finetuned  # local: only fine-tuned runs need it

    path = Path(run_dir) / FINETUNE_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run's fine-tuning did not finish; run it again")
    record = read_json(path)
    for encoder in (image, text):
        entry = record.get(encoder.modality, {})
        if entry.get("dir"):  # absolute in a run, relative to the folder in an exported one
            apply_finetuned(encoder.tunable, Path(run_dir) / entry["dir"])
    return image, text
