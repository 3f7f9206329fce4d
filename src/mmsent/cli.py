"""Command-line interface: thin wrappers that parse, load the config, and call the library."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.logging import RichHandler

from mmsent.config import ConfigError, RunConfig, load_config
from mmsent.run_files import (
    CONFIG_FILE,
    FINETUNE_RECORD,
    PREDICTIONS_FILE,
    REPORT_FILE,
    SPLIT_FILE,
    SPLIT_FOLD_FILES,
    STREAM_FILE,
    RunFolder,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mmsent: multimodal (image + text) sentiment analysis.")
# markup=False: paths and messages hold user text, and "[bold]" in a file name must print as it is, not as a style
console = Console(stderr=True, soft_wrap=True, markup=False)


def _error(message: str, kind: str = "error") -> None:
    """One red ``error:`` line (or ``config error:``) before a message printed exactly as it is."""
    console.print(Text(f"{kind}:", style="red"), message)

DataOpt = typer.Option(None, "--data", "-d", help="Dataset folder in lab format (default: the bundled sample).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (see configs/default.yaml).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config value, e.g. --set training.lr=5e-4 (repeatable).")
OnErrorOpt = typer.Option(None, "--on-error", help="Bad rows: 'raise' (default) lists them all; 'skip' drops them "
                          "with a logged count.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
NoVerifyOpt = typer.Option(False, "--no-verify", help="Load the run folder without checking it against its "
                           "checksums.sha256 (logs a warning): a damaged or edited file then changes answers silently.")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(config: Optional[Path], overrides: Optional[List[str]], data: Optional[Path] = None,
            on_error: Optional[str] = None) -> RunConfig:
    extra = list(overrides or [])
    if data is not None:
        extra.append(f"data.root={data}")
    if on_error is not None:
        extra.append(f"data.on_error={on_error}")
    try:
        return load_config(config, extra)
    except ConfigError as exc:
        _error(f"{exc}", "config error")
        raise typer.Exit(2) from exc


RunSetOpt = typer.Option(None, "--set", "-s", help="Change how the run runs, e.g. --set encoders.device=cuda "
                         "(repeatable); settings that would change its answers are refused.")
DataRunSetOpt = typer.Option(None, "--set", "-s", help="The data to use (data.*, e.g. --set data.format=table) and "
                             "how the run runs (e.g. --set encoders.device=cpu); settings that would change the run's "
                             "answers are refused (repeatable).")
RunConfigOpt = typer.Option(None, "--config", "-c", help="YAML config: only its runtime settings (device, threads, "
                            "batch size, limits, tracking) may differ from the run's own config.")


def _run_config(run_dir: Path, config: Optional[Path], overrides: Optional[List[str]]) -> Optional[RunConfig]:
    """A finished run's config with the user's runtime and data settings; None where ``run_dir`` holds no config
    (loading the run then says what it is missing)."""
    from mmsent.config import load_run_config

    if not (run_dir / CONFIG_FILE).is_file():
        return None
    try:
        return load_run_config(run_dir / CONFIG_FILE, config, overrides or [])
    except ConfigError as exc:
        _error(f"{exc}", "config error")
        raise typer.Exit(2) from exc


def _data_run_config(run_dir: Path, config: Optional[Path], overrides: Optional[List[str]], data: Optional[Path],
                     on_error: Optional[str]) -> Optional[RunConfig]:
    """For ``predict RUN`` over a dataset and ``evaluate``: the run's config with the user's data settings and runtime
    settings (anything else that differs is refused); its devices checked."""
    extra = [*(overrides or []), *([f"data.root={data}"] if data else []),
             *([f"data.on_error={on_error}"] if on_error else [])]
    settings = _run_config(run_dir, config, extra)
    _run_device(settings, config, overrides)
    return settings


def _run_device(cfg: Optional[RunConfig], config: Optional[Path] = None,
                overrides: Optional[List[str]] = None) -> str:
    """Where a finished run predicts: its ``encoders.device`` (``auto``: a GPU when there is one). A device this
    machine lacks (there or in ``training.device``) is a usage error when the user asked for it, before anything
    loads; when only the run's saved config names it (trained on a GPU, used here), the CPU serves, with a warning."""
    from mmsent.device import resolve_device

    if cfg is None:
        return "cpu"
    try:
        resolve_device(cfg.training.device)
        return str(resolve_device(cfg.encoders.device))
    except (RuntimeError, ValueError) as exc:
        if config is not None or any(".device=" in o for o in overrides or []):
            _error(str(exc), "config error")
            raise typer.Exit(2) from exc
        logging.getLogger("mmsent").warning("the run's config asks for %s / %s (%s); predicting on the CPU",
                                            cfg.encoders.device, cfg.training.device, exc)
        cfg.encoders.device = cfg.training.device = "cpu"
        return "cpu"


def _default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors about the user's input or files end the command with one red line and exit code 1, no traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        _error(f"{exc}")
        raise typer.Exit(1) from exc


def _print_version(value: bool) -> None:
    if value:
        from mmsent import __version__

        print(f"mmsent {__version__}")
        raise typer.Exit()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
         version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mmsent: multimodal (image + text) sentiment analysis."""
    _setup_logging(verbose)


@app.command()
def run(data: Optional[Path] = DataOpt, out: Optional[Path] = typer.Option(None, "--out", "-o",
        help="Run directory; everything the run writes goes here (default: runs/<timestamp>)."),
        config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt, on_error: Optional[str] = OnErrorOpt,
        quiet: bool = QuietOpt) -> None:
    """The main job: validate → split → extract features (cached) → compare all models → predict the test rows."""
    cfg = _config(config, set_, data, on_error)
    # the config is checked before the heavy imports: a typo fails at once
    from mmsent.pipeline import run as run_pipeline

    run_dir = out or _default_run_dir()
    with _user_errors():
        result = run_pipeline(cfg, run_dir, progress=not quiet)
    console.print(Text("done", style="green"), f"in {result.timings['total_seconds']:.0f} s; predicting with "
                  f"{result.chosen_model}; outputs in {run_dir}")
    if result.predictions_path:
        console.print(f"predictions: {result.predictions_path}")
    if (Path(run_dir) / REPORT_FILE).is_file():
        console.print(f"report: {Path(run_dir) / REPORT_FILE} (open it in a browser)")


@app.command()
def validate(data: Optional[Path] = DataOpt, config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
             on_error: Optional[str] = OnErrorOpt) -> None:
    """Checks a dataset and prints what was found (every bad row, encodings, label counts)."""
    cfg = _config(config, set_, data, on_error)
    from mmsent.pipeline import data_report, load_dataset

    with _user_errors():
        dataset = load_dataset(cfg)
        label_set = dataset.label_set(cfg.data.labels)
    print(json.dumps(data_report(dataset, label_set), indent=2))


@app.command()
def prepare(data: Optional[Path] = DataOpt, out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
            config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
            on_error: Optional[str] = OnErrorOpt) -> None:
    """Validates the dataset and writes the train/validation split (split.csv) and config into the run directory."""
    cfg = _config(config, set_, data, on_error)
    from mmsent.pipeline import load_dataset, prepare_splits

    with _user_errors():
        dataset = load_dataset(cfg)
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / CONFIG_FILE)
        splits = prepare_splits(cfg, dataset, out)
    written = SPLIT_FILE if len(splits) == 1 else SPLIT_FOLD_FILES
    console.print(f"{len(splits)} split(s), {len(splits[0].train)} train / {len(splits[0].val)} validation rows each "
                  f"-> {out / written}")


@app.command()
def extract(data: Optional[Path] = DataOpt, config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
            on_error: Optional[str] = OnErrorOpt, quiet: bool = QuietOpt) -> None:
    """Extracts image and text features for every row into the feature cache (a later run reuses them)."""
    cfg = _config(config, set_, data, on_error)
    from mmsent.pipeline import extract as extract_stage
    from mmsent.pipeline import load_dataset

    with _user_errors():
        dataset = load_dataset(cfg)
        feats = extract_stage(cfg, dataset.train + dataset.test, progress=not quiet)
    console.print(f"features for {len(feats)} rows: image {feats.image.dim}-d x {feats.image.tokens.shape[1]} tokens, "
                  f"text {feats.text.dim}-d x {feats.text.tokens.shape[1]} tokens; cache {cfg.cache_dir}")


def _compare(cfg: RunConfig, out: Path, quiet: bool) -> None:
    from mmsent.pipeline import compare_folds, load_dataset, prepare_splits
    from mmsent.pipeline import extract as extract_stage

    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG_FILE)
    dataset = load_dataset(cfg)
    label_set = dataset.label_set(cfg.data.labels)
    splits = prepare_splits(cfg, dataset, out, label_set)
    feats = extract_stage(cfg, dataset.train + dataset.test, progress=not quiet)
    _, table = compare_folds(cfg, feats, splits, dataset.labels(), progress=not quiet, label_set=label_set)
    table.save(out)
    print(table.to_markdown())


@app.command()
def train(model: str = typer.Argument(..., help="A fusion design, e.g. concat or dual_stream (an unknown name is "
                                      "refused at once, listing every registered one)."),
          data: Optional[Path] = DataOpt, out: Optional[Path] = typer.Option(None, "--out", "-o"),
          seed: List[int] = typer.Option([0], "--seed", help="Seed(s) to train with (repeatable)."),
          config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt, on_error: Optional[str] = OnErrorOpt,
          quiet: bool = QuietOpt) -> None:
    """Trains one fusion model on the split and reports its validation metrics."""
    # as overrides, so the name is checked (with a did-you-mean) before any data or feature loads
    cfg = _config(config, [*(set_ or []), f"compare.models={json.dumps([model])}",
                           f"compare.seeds={json.dumps(list(seed))}"], data, on_error)
    with _user_errors():
        _compare(cfg, out or _default_run_dir(), quiet)


@app.command()
def compare(data: Optional[Path] = DataOpt, out: Optional[Path] = typer.Option(None, "--out", "-o"),
            config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
            on_error: Optional[str] = OnErrorOpt, quiet: bool = QuietOpt) -> None:
    """Trains and compares all configured models over all seeds on one split (no prediction file)."""
    cfg = _config(config, set_, data, on_error)
    with _user_errors():
        _compare(cfg, out or _default_run_dir(), quiet)


@app.command()
def predict(run_dir: Optional[Path] = typer.Argument(None, help="A finished run or exported model folder (default: "
            "the model that ships with mmsent)."),
            data: Optional[Path] = DataOpt, out: Optional[Path] = typer.Option(None, "--out", "-o",
            help="Prediction file (default: RUN_DIR/predictions.txt). An existing file is replaced only if mmsent "
            "wrote it (OUT.mmsent.json beside it says so)."),
            input_: Optional[Path] = typer.Option(None, "--input", "-i", help="A manifest (CSV / JSONL / Parquet "
            "with id, text or text_path, image or image_path) to stream instead of a lab folder; results go to "
            "--out as JSONL (default RUN_DIR/predictions.jsonl), and a rerun resumes."),
            shard: str = typer.Option("0/1", "--shard", help="With --input: predict rows i, i+n, ... only (i/n)."),
            chunk_size: int = typer.Option(256, "--chunk-size", min=1, help="With --input: rows per chunk."),
            engine: str = typer.Option("local", "--engine", help="With --input: local (one process, resumable JSONL) "
                                       "or ray (a Ray Data pipeline; --out is then a folder of Parquet files)."),
            actors: int = typer.Option(2, "--actors", min=1, help="With --engine ray: actors holding the run."),
            ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: a cluster to "
                                                      "join (auto: the one `ray start` runs here); default: a local "
                                                      "instance for this command."),
            image: Optional[Path] = typer.Option(None, "--image", help="One post: its image (with --text)."),
            text: Optional[str] = typer.Option(None, "--text", help="One post: its text (with --image)."),
            as_json: bool = typer.Option(False, "--json", help="One post: print its answer as JSON (label, scores)."),
            config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = DataRunSetOpt,
            on_error: Optional[str] = OnErrorOpt, quiet: bool = QuietOpt, no_verify: bool = NoVerifyOpt) -> None:
    """Writes guid,tag predictions for the unlabeled rows of a dataset with a run's saved models, streams a manifest
    of any size (--input) to JSONL, or answers one post (--image with --text)."""
    if (image is None) != (text is None):
        _error("--image and --text go together (one post: its image and its text)")
        raise typer.Exit(2)
    if engine not in ("local", "ray"):
        _error(f"--engine {engine!r}: use local or ray")
        raise typer.Exit(2)
    if run_dir is None:
        if image is None and out is None:
            _error("without RUN_DIR (the shipped model) give --out for the predictions")
            raise typer.Exit(2)
        from mmsent.export import shipped_model_path

        with _user_errors():
            run_dir = shipped_model_path()
    if image is not None and text is not None:
        run_cfg = _run_config(run_dir, config, set_)
        _predict_post(run_dir, image, text, run_cfg, _run_device(run_cfg, config, set_), no_verify, as_json)
    elif input_ is not None:
        run_cfg = _run_config(run_dir, config, set_)
        if engine == "ray":
            _predict_with_ray(run_dir, input_, out, run_cfg, actors, chunk_size, ray_address, no_verify)
        else:
            _predict_manifest(run_dir, input_, out, run_cfg, _run_device(run_cfg, config, set_), shard, chunk_size,
                              quiet, no_verify)
    else:
        settings = _data_run_config(run_dir, config, set_, data, on_error)
        _predict_dataset(run_dir, out, _config(config, set_, data, on_error), settings, quiet, no_verify)


def _predict_post(run_dir: Path, image: Path, text: str, cfg: Optional[RunConfig], device: str, no_verify: bool,
                  as_json: bool) -> None:
    """``predict --image --text``: one post's label and probabilities (as JSON with ``--json``)."""
    if not image.is_file():  # before the models load: a mistyped path costs nothing
        _error(f"--image {image}: " + ("a folder; give an image file in it" if image.is_dir() else "no such file"))
        raise typer.Exit(1)
    from mmsent.inference import RunPredictor

    with _user_errors():
        answer = RunPredictor(run_dir, verify=not no_verify, cfg=cfg, device=device)(image, text)
    if as_json:
        typer.echo(json.dumps(answer))
        return
    scores = "  ".join(f"{k} {v:.3f}" for k, v in answer["scores"].items())
    typer.echo(f"{answer['label']}  ({scores})")


def _predict_with_ray(run_dir: Path, manifest: Path, out: Optional[Path], cfg: Optional[RunConfig], actors: int,
                      chunk_size: int, address: Optional[str], no_verify: bool) -> None:
    """``predict --input --engine ray``: a Ray Data pipeline into a folder of Parquet files."""
    from mmsent.ray_engine import predict_with_ray

    with _user_errors():
        result = predict_with_ray(run_dir, manifest, out or run_dir / "predictions-ray", actors=actors,
                                  chunk_size=chunk_size, address=address, verify=not no_verify, cfg=cfg)
    console.print(f"{result.predicted} predicted, {result.errors} unreadable (with 'error') by "
                  f"{result.actors} actor(s) in {result.seconds:.0f} s -> {result.out}")


def _predict_manifest(run_dir: Path, manifest: Path, out: Optional[Path], cfg: Optional[RunConfig], device: str,
                      shard: str, chunk_size: int, quiet: bool, no_verify: bool) -> None:
    """``predict --input``: a manifest streamed, resumably, to JSONL."""
    from mmsent.stream import predict_stream

    with _user_errors():
        i, _, n = shard.partition("/")
        if not (i.isdigit() and n.isdigit()):
            raise ValueError(f"--shard {shard!r}: write it as i/n, e.g. 0/4")
        result = predict_stream(run_dir, manifest, out or run_dir / STREAM_FILE, chunk_size=chunk_size,
                                shard=(int(i), int(n)), progress=not quiet, verify=not no_verify, cfg=cfg,
                                device=device)
    console.print(f"{result.predicted} predicted, {result.errors} unreadable (written with 'error'), "
                  f"{result.skipped_done} already done -> {result.out}")


def _predict_dataset(run_dir: Path, out: Optional[Path], cfg: RunConfig, settings: Optional[RunConfig], quiet: bool,
                     no_verify: bool) -> None:
    """``predict RUN --data DIR``: ``guid,tag`` predictions for a dataset's unlabelled rows."""
    from mmsent.pipeline import predict_from_run, resolve_data_root
    from mmsent.predict import prediction_path

    with _user_errors():
        # where the predictions go is checked before the models load, so a refused --out costs nothing
        prediction_path(out or run_dir / PREDICTIONS_FILE, run_dir, resolve_data_root(cfg))
        path = predict_from_run(run_dir, cfg, out, progress=not quiet, verify=not no_verify, settings=settings)
    console.print(f"predictions: {path}")


@app.command()
def evaluate(run_dir: Path = typer.Argument(..., help="A finished run or exported model folder."),
             data: Optional[Path] = DataOpt, config: Optional[Path] = ConfigOpt,
             set_: Optional[List[str]] = DataRunSetOpt, on_error: Optional[str] = OnErrorOpt, quiet: bool = QuietOpt,
             no_verify: bool = NoVerifyOpt) -> None:
    """Scores RUN_DIR on the labelled test rows of --data (rows it never trained or selected on): accuracy, macro-F1,
    weighted-F1, per-class scores and the confusion matrix, into RUN_DIR/test_metrics.json."""
    cfg = _config(config, set_, data, on_error)  # the data to score
    settings = _data_run_config(run_dir, config, set_, data, on_error)
    from mmsent.pipeline import evaluate_from_run
    from mmsent.training.metrics import format_metrics

    with _user_errors():
        metrics = evaluate_from_run(run_dir, cfg, progress=not quiet, verify=not no_verify, settings=settings)
    positive = f" | F1 {metrics['positive_label']} {metrics['positive_f1']:.3f}" if "positive_f1" in metrics else ""
    console.print(f"{metrics['n']} test rows: {format_metrics(metrics)}{positive} -> {run_dir / 'test_metrics.json'}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A finished run directory."),
           explain: bool = typer.Option(True, "--explain/--no-explain", help="Explain the error gallery (loads the "
                                        "run's encoders and models)."),
           max_errors: int = typer.Option(12, "--max-errors", help="Rows in the error gallery."),
           config: Optional[Path] = RunConfigOpt, set_: Optional[List[str]] = RunSetOpt) -> None:
    """Rebuilds RUN_DIR/report.html (self-contained) and the figures in RUN_DIR/report/."""
    from mmsent.report import build_report

    cfg = _run_config(run_dir, config, set_)
    with _user_errors():
        predictor = None
        if explain and cfg is not None and (config or set_):  # else the report loads the run's predictor itself
            from mmsent.inference import RunPredictor

            predictor = RunPredictor(run_dir, cfg=cfg, device=_run_device(cfg, config, set_))
        path = build_report(run_dir, explain=explain, max_errors=max_errors, predictor=predictor)
    console.print(f"report: {path}")


@app.command()
def serve(run_dir: Optional[Path] = typer.Argument(None, help="A finished run or exported model folder (default: the "
          "model that ships with mmsent)."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
          port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
          model: Optional[str] = typer.Option(None, "--model", help="Serve this design instead of the chosen one."),
          threads: int = typer.Option(1, "--threads", min=0, max=4096, help="Torch threads per request (requests run one at a "
                                      "time). 1 stays fast when other processes share the cores; 0 = all cores."),
          max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest image file accepted."),
          max_image_pixels: int = typer.Option(40_000_000, "--max-image-pixels", min=1,
                                               help="Largest decoded image (w x h)."),
          max_batch: int = typer.Option(32, "--max-batch", min=1, help="Most rows per /predict/batch request."),
          max_micro_batch: int = typer.Option(8, "--max-micro-batch", min=1, help="Most rows (concurrent /predict "
                                              "requests, a batch's rows) in one forward pass (1: one at a time)."),
          max_batch_mb: float = typer.Option(32.0, "--max-batch-mb", help="Largest /predict/batch body, all rows."),
          memory_budget_mb: float = typer.Option(512.0, "--memory-budget-mb", help="Memory all requests in flight "
                                                 "may hold together (bodies and decoded images); past it: 503."),
          header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1, help="Seconds a client has for a "
                                               "request's line and headers; slower connections are closed."),
          body_timeout: float = typer.Option(60.0, "--body-timeout", min=0.1, help="Seconds a client has for a "
                                             "request's body; slower ones get 408."),
          config: Optional[Path] = RunConfigOpt, set_: Optional[List[str]] = RunSetOpt,
          no_verify: bool = NoVerifyOpt) -> None:
    """Serves a run's ensemble over HTTP: POST /predict, POST /predict/batch, GET /health, a demo page at /."""
    import math

    import torch
    import uvicorn

    from mmsent.device import resolve_num_threads
    from mmsent.serve import ServeSettings, create_app
    from mmsent.serve.timeouts import uvicorn_config

    for flag, value in (("--max-upload-mb", max_upload_mb), ("--max-batch-mb", max_batch_mb),
                        ("--memory-budget-mb", memory_budget_mb), ("--header-timeout", header_timeout),
                        ("--body-timeout", body_timeout)):
        if not (math.isfinite(value) and 0 < value <= 1e9):  # inf would overflow int(), nan passes range checks
            raise typer.BadParameter(f"{value} is not a positive finite number (at most 1e9)", param_hint=f"'{flag}'")
    if run_dir is None:
        from mmsent.export import shipped_model_path

        with _user_errors():
            run_dir = shipped_model_path()
    torch.set_num_threads(resolve_num_threads(threads))
    mib = 1024 * 1024
    settings = ServeSettings(max_upload_bytes=int(max_upload_mb * mib), max_image_pixels=max_image_pixels,
                             max_batch=max_batch, max_micro_batch=max_micro_batch,
                             max_batch_bytes=int(max_batch_mb * mib), memory_budget_bytes=int(memory_budget_mb * mib),
                             header_timeout=header_timeout, body_timeout=body_timeout)
    cfg = _run_config(run_dir, config, set_)
    device = _run_device(cfg, config, set_)
    with _user_errors():
        from mmsent.inference import RunPredictor

        predictor = RunPredictor(run_dir, model_name=model, verify=not no_verify, cfg=cfg, device=device)
        api = create_app(settings=settings, predictor=predictor)
    console.print(f"serving {run_dir} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.Server(uvicorn_config(api, host, port)).run()  # with the headers deadline uvicorn.run lacks


@app.command()
def finetune(data: Optional[Path] = DataOpt, out: Optional[Path] = typer.Option(None, "--out", "-o",
             help="Run directory for split.csv, config.yaml and finetune.json (default: runs/<timestamp>)."),
             config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
             on_error: Optional[str] = OnErrorOpt, quiet: bool = QuietOpt) -> None:
    """Fine-tunes the image and text encoders on the split's training rows (resumes an interrupted fine-tuning).

    The fine-tuned encoders go to finetune.output_dir (default: CACHE_DIR/finetune), keyed by data and settings, so
    `mmsent run --set finetune.enabled=true` with the same config reuses them. Modes per encoder:
    --set finetune.text.mode=full|last_n|frozen (same for image).
    """
    # enabled as an override, so the config is checked with it on (k-fold needs matching cross-fitting folds, say)
    cfg = _config(config, [*(set_ or []), "finetune.enabled=true"], data, on_error)
    from mmsent.data.splits import Split
    from mmsent.finetune import finetune_encoders
    from mmsent.pipeline import load_dataset, prepare_splits
    from mmsent.training import distributed

    if out is None and distributed.launched_processes() > 1:  # before joining: no process waits for this one
        _error("give --out under torchrun: every process must write to the same run folder")
        raise typer.Exit(2)
    distributed.init_from_env()  # under torchrun: one process per CPU group or GPU
    run_dir = out or _default_run_dir()
    with _user_errors():
        dataset = load_dataset(cfg)

        def write_setup() -> list[Split]:
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / CONFIG_FILE)
            return prepare_splits(cfg, dataset, run_dir)

        splits = distributed.on_main(write_setup)
        if splits is None:  # the other processes draw the same splits without writing them
            splits = prepare_splits(cfg, dataset)
        finetune_encoders(cfg, dataset, splits, run_dir, progress=not quiet)
    if not distributed.is_main():
        return
    record = RunFolder(run_dir).read_json(FINETUNE_RECORD)
    for modality, entry in record.items():
        if not entry.get("dir"):
            console.print(f"{modality}: frozen (not fine-tuned)")
            continue
        held = (entry["result"].get("holdout_metrics") or {}).get("macro_f1")
        score = f", holdout macro-F1 {held:.3f}" if held is not None else ""
        cross = entry.get("crossfit")
        folds = f", out-of-fold features from {cross['folds']} folds" if cross else ""
        if cross and cross.get("cv_metrics"):
            folds += f" (cross-validated macro-F1 {cross['cv_metrics']['macro_f1']:.3f})"
        console.print(f"{modality}: {entry['mode']}, best epoch {entry['result']['best_epoch']}{score}{folds}, "
                      f"{entry['seconds']:.0f} s -> {entry['dir']}")


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A finished run directory."),
           out: Path = typer.Argument(..., help="New folder for the model (must not exist or be empty).")) -> None:
    """Writes a shareable model folder (weights, config, model card README.md) that predict and serve take."""
    from mmsent.export import export_run

    with _user_errors():
        folder = export_run(run_dir, out)
    console.print(f"exported {run_dir} -> {folder} (model card: {folder / 'README.md'})")


@app.command()
def seal(run_dir: Path = typer.Argument(..., help="A run or exported model folder whose files you trust.")) -> None:
    """Accepts a run folder's files as they are now: writes its checksums.sha256, which predict and serve check.

    For a folder made before runs were sealed, or one whose config you changed on purpose.
    """
    from mmsent.run_folder import MANIFEST_FILE, load_run_models, seal_run

    with _user_errors():
        load_run_models(run_dir, verify=False)  # only a folder that loads is sealed
        path = seal_run(run_dir)
    console.print(f"sealed {run_dir}: {path.name} lists the sha256 of every file predicting reads (check it with "
                  f"`cd {run_dir} && sha256sum -c {MANIFEST_FILE}`)")


@app.command()
def track(run_dir: Path = typer.Argument(..., help="A finished run directory."),
          mlflow: Optional[str] = typer.Option(None, "--mlflow", help="MLflow tracking URI, e.g. sqlite:///mlflow.db "
                                               "(default: the config's tracking.mlflow)."),
          experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment name (default: the "
                                                   "config's tracking.experiment, mmsent)."),
          config: Optional[Path] = RunConfigOpt, set_: Optional[List[str]] = RunSetOpt) -> None:
    """Records a finished run in MLflow (config as parameters, scores and timings as metrics, outputs as artifacts)."""
    from mmsent.tracking import log_run

    cfg = _run_config(run_dir, config, set_)
    mlflow = mlflow or (cfg.tracking.mlflow if cfg else None)
    experiment = experiment or (cfg.tracking.experiment if cfg else "mmsent")
    if not mlflow:
        _error("give --mlflow URI (or --set tracking.mlflow=URI): where to record the run")
        raise typer.Exit(2)
    with _user_errors():
        run_id = log_run(run_dir, mlflow, experiment)
    console.print(f"recorded {run_dir} in MLflow ({mlflow}, experiment {experiment!r}): run {run_id}")


@app.command()
def tune(model: str = typer.Argument("concat", help="The fusion design whose training settings are searched."),
         data: Optional[Path] = DataOpt, out: Path = typer.Option(..., "--out", "-o",
         help="Study folder: tune.sqlite3 (a rerun resumes it), tuning.md, tuning.json, best_config.yaml."),
         trials: int = typer.Option(20, "--trials", min=1, help="Finished trials wanted in all (earlier ones count)."),
         folds: int = typer.Option(5, "--folds", min=2, help="K of the cross-validation scoring each trial."),
         seed: int = typer.Option(0, "--seed", help="Seeds the sampler and the training runs."),
         timeout: Optional[float] = typer.Option(None, "--timeout", help="Start no trial after this many seconds."),
         config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt, on_error: Optional[str] = OnErrorOpt,
         quiet: bool = QuietOpt) -> None:
    """Searches a design's training settings with Optuna, scored by cross-validated macro-F1 (pruned, resumable)."""
    cfg = _config(config, set_, data, on_error)
    from mmsent.tuning import tune as run_tuning

    with _user_errors():
        result = run_tuning(cfg, out, model, trials, folds=folds, seed=seed, timeout=timeout, progress=not quiet)
    console.print(f"best of {result.trials} trials ({result.pruned} pruned): mean macro-F1 "
                  f"{result.best_macro_f1:.4f} with {result.best_settings}")
    console.print(f"use it: mmsent run --config {out / 'best_config.yaml'}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
