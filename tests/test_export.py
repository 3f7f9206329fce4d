"""mmsent export: a self-describing folder that a fresh process loads to the run's exact predictions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsent.cli import app
from mmsent.export import export_run
from mmsent.inference import RunPredictor


def test_an_exported_folder_reproduces_the_runs_predictions_in_a_fresh_process(tiny_run, tmp_path):
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["export", str(tiny_run), str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "checksums.sha256", "comparison.md", "config.yaml", "data_report.json", "metrics.json", "models",
         "predictor.json"])
    predictor = json.loads((out / "predictor.json").read_text())
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(predictor["models"])

    lab = tiny_run.parent / "lab"
    images = [str(lab / "data" / f"{g}.jpg") for g in ("130", "131", "100")]
    texts = ["happy love sun", "sad hate rain", "the park is on a day"]
    expected = RunPredictor(tiny_run).predict(images, texts, explain_inputs=False)
    code = ("import json, sys, mmsent; m = mmsent.load(sys.argv[1]); "
            "r = m.predict(json.loads(sys.argv[2]), json.loads(sys.argv[3]), explain_inputs=False); "
            "print(json.dumps([[x['label'], x['probabilities']] for x in r]))")
    fresh = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(images), json.dumps(texts)],
                           capture_output=True, text=True, check=True)
    got = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert got == [[e["label"], e["probabilities"]] for e in expected]  # exactly

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: mmsent\n")
    scores = predictor["scores"]["argmax"]
    assert f"accuracy **{scores['accuracy']:.3f}**, macro-F1 **{scores['macro_f1']:.3f}**" in card
    assert "| model | accuracy | macro-F1 |" in card and "## Intended use and limitations" in card


def test_export_refuses_a_folder_with_files(tiny_run, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_run(tiny_run, tmp_path)


def test_an_exported_folder_is_sealed_and_refuses_a_changed_file(tiny_run, tmp_path):
    from mmsent.run_folder import MANIFEST_FILE, IntegrityError, load_run_models, prediction_files

    out = export_run(tiny_run, tmp_path / "model")
    listed = [line.split("  ", 1)[1] for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert listed == sorted(prediction_files(out)) and "README.md" not in listed  # the card may be edited freely
    (out / "README.md").write_text("my own words\n")
    load_run_models(out)
    weights = out / "models" / json.loads((out / "predictor.json").read_text())["models"][0] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{weights}: changed since the run was sealed"):
        load_run_models(out)


def test_export_refuses_a_run_changed_since_it_was_sealed(tiny_run, tmp_path):
    from mmsent.run_folder import IntegrityError

    run = shutil.copytree(tiny_run, tmp_path / "run")
    _drop_a_seed(run)  # a valid edit: only the seal can tell
    with pytest.raises(IntegrityError, match=r"predictor\.json: changed since"):
        export_run(run, tmp_path / "model")
    assert not (tmp_path / "model").exists()  # refused before anything is written


def _drop_a_seed(run: Path) -> None:
    """Edits ``predictor.json`` as a valid file that answers differently: its last seed's model left out."""
    predictor = json.loads((run / "predictor.json").read_text(encoding="utf-8"))
    assert len(predictor["models"]) > 1
    predictor["models"] = predictor["models"][:-1]
    (run / "predictor.json").write_text(json.dumps(predictor), encoding="utf-8")


# --- the model card, from hand-built folders with fixed contents -----------------------------------------------------

CARDS = Path(__file__).parent / "export_cards"
SENTIMENT_TABLE = """\
| model | accuracy | macro-F1 | weighted-F1 | train s |
|---|---|---|---|---|
| **concat** | 0.702 ± 0.011 | 0.631 ± 0.008 | 0.698 ± 0.010 | 4.2 |
| gated | 0.694 ± 0.006 | 0.622 ± 0.012 | 0.690 ± 0.007 | 3.9 |
| *predictor: ensemble* | 0.713 | 0.649 | 0.703 | |

Mean ± sample std over seeds 0, 1; 850 training rows, 150 validation rows.
"""
SARCASM_TABLE = """\
| model | accuracy | macro-F1 | weighted-F1 | train s |
|---|---|---|---|---|
| **gated** | 0.809 ± 0.004 | 0.791 ± 0.006 | 0.807 ± 0.005 | 6.1 |
"""


def _config(folder: Path, *, finetuned: bool = False) -> None:
    from mmsent.config import RunConfig

    cfg = RunConfig()
    cfg.encoders.image_grid, cfg.encoders.text_max_length, cfg.encoders.text_pooling = 2, 48, "cls"
    cfg.encoders.backend, cfg.training.stop_fraction = "torch", 0.2
    if finetuned:
        cfg.encoders.text, cfg.finetune.enabled, cfg.finetune.image.mode = "all-MiniLM-L6-v2", True, "frozen"
    cfg.save(folder / "config.yaml")


def _write(folder: Path, **files) -> Path:
    """Writes ``name_ext=content`` files (dicts as JSON, str as text) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, content in files.items():
        name = key.replace("_json", ".json").replace("_md", ".md")
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return folder


def _sentiment_folder(folder: Path) -> Path:
    """An exported three-class sentiment model: an ensemble, a validation split, labelled test rows."""
    from mmsent.labels import LABELS, LabelSet

    _config(_write(folder))
    predictor = {"name": "ensemble", "members": ["concat", "gated"],
                 "models": ["concat_seed0", "concat_seed1", "gated_seed0", "gated_seed1"],
                 "scores": {"argmax": {"accuracy": 0.7134, "macro_f1": 0.6487, "weighted_f1": 0.7031}},
                 **LabelSet(LABELS).to_json()}
    return _write(
        folder, predictor_json=predictor,
        metrics_json={"folds": 1, "validation_rows": 150,
                      "machine": {"python": "3.11.7", "platform": "Linux-x86_64"}},
        data_report_json={"counts": {"train": 1000, "test": 120, "empty_text": 3},
                          "encodings": {"utf-8": 990, "gbk": 10}, "skipped": {"missing_image": 2},
                          "label_counts": {"positive": 600, "neutral": 100, "negative": 300}},
        comparison_md=SENTIMENT_TABLE,
        test_metrics_json={"n": 200, "accuracy": 0.7049, "macro_f1": 0.6312, "weighted_f1": 0.6988})


def _sarcasm_folder(folder: Path) -> Path:
    """An exported two-class (not sentiment) model: fine-tuned, 2-fold cross-validated, a positive class's test F1."""
    from mmsent_runkit import SARCASM

    from mmsent.labels import LabelSet

    _config(_write(folder), finetuned=True)
    predictor = {"name": "gated", "members": ["gated"], "models": ["gated_seed0", "gated_seed1"],
                 "scores": {"argmax": {"accuracy": 0.8123, "macro_f1": 0.7956, "weighted_f1": 0.8101}},
                 **LabelSet(SARCASM).to_json()}
    return _write(
        folder, predictor_json=predictor, metrics_json={"folds": 2, "validation_rows": 400, "machine": "cpu box"},
        data_report_json={"counts": {"train": 400}, "encodings": {"utf-8": 400}, "skipped": {},
                          "label_counts": {"not_sarcastic": 300, "sarcastic": 100}},
        comparison_md=SARCASM_TABLE,
        test_metrics_json={"n": 80, "accuracy": 0.7874, "macro_f1": 0.7612, "weighted_f1": 0.7833,
                           "positive_label": "sarcastic", "positive_f1": 0.6667})


def test_the_card_of_a_sentiment_model_says_what_it_predicts_with_and_how_well(tmp_path):
    from mmsent.export import model_card

    card = model_card(_sentiment_folder(tmp_path / "model"))
    assert card == (CARDS / "sentiment.md").read_text(encoding="utf-8")


def test_the_card_of_a_model_without_test_rows_has_no_test_line(tmp_path):
    from mmsent.export import model_card

    folder = _sentiment_folder(tmp_path / "model")
    (folder / "test_metrics.json").unlink()
    expected = (CARDS / "sentiment.md").read_text(encoding="utf-8").replace(
        "Test split (200 labelled rows no model trained or was chosen on): accuracy **0.705**, macro-F1 **0.631**, "
        "weighted-F1 0.699.\n\n", "")
    assert "Test split" not in expected and model_card(folder) == expected


def test_the_card_of_another_task_names_its_classes_and_their_shares(tmp_path):
    from mmsent.export import model_card

    card = model_card(_sarcasm_folder(tmp_path / "model"))
    assert card == (CARDS / "sarcasm.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("label_counts", "shares"), [
    ({"not_sarcastic": 40}, "not_sarcastic 100%, sarcastic 0%"),  # a class without training rows
    ({}, "not recorded"),
])
def test_the_class_shares_of_another_task_when_a_class_or_every_count_is_missing(tmp_path, label_counts, shares):
    from mmsent.export import model_card

    folder = _sarcasm_folder(tmp_path / "model")
    report = json.loads((folder / "data_report.json").read_text())
    _write(folder, data_report_json={**report, "label_counts": label_counts})
    lines = model_card(folder).splitlines()
    assert f"- Class shares of the training rows: {shares}; the rarer a class, the weaker it tends to be: read " \
           "macro-F1, not accuracy alone. Not for decisions about individuals." in lines


def test_the_card_of_a_bare_folder_leaves_out_what_its_files_do_not_say(tmp_path):
    """Only a config, a predictor without scores or classes, the validation row count and test scores without a row
    count or a positive class's name: the card renders with the sentiment defaults, says which facts are not
    recorded, and prints no placeholder (no ?, nan, None, empty brackets)."""
    from mmsent.export import model_card

    folder = tmp_path / "model"
    _config(_write(folder, predictor_json={"name": "concat", "models": ["concat_seed0"]},
                   metrics_json={"validation_rows": 12},
                   test_metrics_json={"accuracy": 0.5, "macro_f1": 0.25, "weighted_f1": 0.375, "positive_f1": 0.4}))
    sentiment = (CARDS / "sentiment.md").read_text(encoding="utf-8").splitlines()
    expected = [
        *sentiment[:8],  # the front matter and title of the sentiment classes (the default classes)
        ("Predicts positive, neutral, negative for a post made of a text and an image. What predicts: **concat** "
         "(mean probability of 1 fusion model), label by plain argmax."),
        *sentiment[9:18],  # encoders: the same config
        "Held-out scores: not recorded in this folder's predictor.json.",
        "",
        ("Test split (labelled rows no model trained or was chosen on): accuracy **0.500**, macro-F1 **0.250**, "
         "weighted-F1 0.375, F1 of the positive class 0.400."),
        "",
        "## Data", "",  # no comparison table
        "This folder's data_report.json does not record how many labelled posts trained it.",
        *sentiment[sentiment.index("## Data") + 3:-1],
        "Training: `mmsent run` with the configuration in `config.yaml`.",
    ]
    assert sentiment[8].startswith("Predicts") and sentiment[16] == "## Scores" and sentiment[-1].startswith("Training:")
    card = model_card(folder)
    assert card == "\n".join(expected) + "\n"
    assert not re.search(r"\?\W|\bnan\b|\bNone\b|\(\)|\{\}", card.split("## Use")[0])


def test_the_card_of_a_folder_without_a_predictor_file_still_names_its_classes(tmp_path):
    from mmsent.export import model_card

    folder = tmp_path / "model"
    _config(_write(folder, metrics_json={"folds": 5, "machine": "cpu box"}))
    lines = model_card(folder).splitlines()
    assert "Predicts positive, neutral, negative for a post made of a text and an image." in lines
    assert "Held-out scores: not recorded in this folder's predictor.json." in lines
    assert ("This folder's data_report.json does not record how many labelled posts trained it. Every labelled post "
            "trains the predictor: 5 fold models per design and seed, each trained without its fold.") in lines
    assert lines[-1] == "Training: `mmsent run` with the configuration in `config.yaml` (machine: cpu box)."


_PREDICTOR = {"name": "ensemble", "models": ["a_seed0", "b_seed0"], "members": ["a", "b"],
              "scores": {"argmax": {"accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.45}}}
_REPORT = {"counts": {"train": 30}, "label_counts": {"negative": 10, "neutral": 10, "positive": 10},
           "encodings": {"utf-8": 34}}


@pytest.mark.parametrize(("files", "expected"), [
    ({"predictor_json": _PREDICTOR, "metrics_json": {"folds": None}}, "Held out: accuracy **0.500**"),
    ({"predictor_json": _PREDICTOR, "metrics_json": {"folds": "5"}}, "Held out: accuracy **0.500**"),
    ({"predictor_json": {**_PREDICTOR, "scores": None}}, "Held-out scores: not recorded"),
    ({"predictor_json": {**_PREDICTOR, "scores": {"argmax": {"accuracy": "0.5", "macro_f1": 0.4,
                                                             "weighted_f1": 0.4}}}}, "Held-out scores: not recorded"),
    ({"predictor_json": {**_PREDICTOR, "scores": {"argmax": {"accuracy": float("nan"), "macro_f1": 0.4,
                                                             "weighted_f1": 0.4}}}}, "Held-out scores: not recorded"),
    ({"predictor_json": {k: v for k, v in _PREDICTOR.items() if k != "models"}}, "**ensemble** (a, b), label by"),
    ({"data_report_json": {"counts": None}}, "does not record how many labelled posts"),
    ({"data_report_json": {**_REPORT, "counts": {"train": "30"}}}, "does not record how many labelled posts"),
    ({"data_report_json": {**_REPORT, "counts": {"train": True}}}, "does not record how many labelled posts"),
    ({"data_report_json": {"counts": {"train": 30}}}, "The dataset: 30 labelled posts; no row skipped."),
    ({"metrics_json": {"validation_rows": 40}, "data_report_json": _REPORT}, "utf-8 34; no row skipped.\n"),
    ({"test_metrics_json": {"accuracy": 0.5}},
     "## Scores\n\nHeld-out scores: not recorded in this folder's predictor.json.\n\n## Data"),
    ({"test_metrics_json": {"accuracy": .5, "macro_f1": .5, "weighted_f1": .5, "n": True, "positive_f1": .3,
                            "positive_label": None}}, "Test split (labelled rows no model trained or was chosen on)"),
    ({"test_metrics_json": {"accuracy": .5, "macro_f1": .5, "weighted_f1": .5, "n": 4, "positive_f1": .3,
                            "positive_label": None}}, "weighted-F1 0.500, F1 of the positive class 0.300."),
    ({"predictor_json": _PREDICTOR, "comparison_md": "  \n"}, "weighted-F1 0.450.\n\n## Data"),
    ({"data_report_json": {**_REPORT, "label_counts": ["a"], "encodings": "utf-8", "skipped": 3}},
     "The dataset: 30 labelled posts; no row skipped."),
    ({"data_report_json": {**_REPORT, "label_counts": {"neutral": None, "positive": 20},
                           "encodings": {"utf-8": {"x": 1}, "gbk": 4}, "skipped": {"missing_image": "2"}}},
     "The dataset: 30 labelled posts (positive 20); text encodings: gbk 4; no row skipped."),
])
def test_the_card_of_a_folder_with_odd_or_partial_files_renders_without_placeholders(tmp_path, files, expected):
    """Found by an adversarial pass: odd values in a folder's JSON files crashed the card or printed placeholders."""
    from mmsent.export import model_card

    folder = tmp_path / "model"
    _config(_write(folder, **files))
    card = model_card(folder)
    assert expected in card
    body = card.split("## Use")[0]
    assert not re.search(r"\?\W|\bnan\b|\bNone\b|\bTrue\b|\(\)|\{|-\d+ posts|\b0 fusion", body), body


@pytest.mark.parametrize(("record", "line"), [
    ({"image": {"mode": "frozen"}, "text": {"mode": "full", "encoder": "all-mpnet-base-v2", "dir": "finetuned/text"}},
     "- fine-tuned: text (`all-mpnet-base-v2`, every layer), weights under finetuned/; image frozen"),
    ({}, "- fine-tuned: yes, weights under finetuned/ (this folder's finetune.json does not say which encoder)"),
])
def test_the_card_names_the_fine_tuned_part_of_a_combined_text_encoder(tmp_path, record, line):
    """With ``mpnet+e5+vader`` only mpnet is fine-tuned: the card says so, from ``finetune.json``."""
    from mmsent.config import load_config
    from mmsent.export import model_card

    folder = _write(tmp_path / "model", finetune_json=record)
    load_config(overrides=["encoders.text=mpnet+e5+vader", "finetune.enabled=true",
                           "finetune.text.mode=full"]).save(folder / "config.yaml")
    lines = model_card(folder).splitlines()
    assert "- text: `mpnet+e5+vader` (max 64 tokens, mean pooling)" in lines and line in lines


def test_the_card_of_a_folder_whose_file_is_not_a_json_object_names_the_file(tmp_path):
    from mmsent.export import model_card

    folder = tmp_path / "model"
    _config(_write(folder, predictor_json=["not", "an", "object"]))
    with pytest.raises(ValueError, match=r"predictor\.json: expected a JSON object; run the job again"):
        model_card(folder)


# --- export_run: what it copies, where it writes, what it refuses ----------------------------------------------------

def test_export_copies_the_runs_files_byte_for_byte_into_new_nested_folders(tiny_run, tmp_path):
    from mmsent.export import model_card

    run = shutil.copytree(tiny_run, tmp_path / "run")
    _write(run, test_metrics_json={"n": 4, "accuracy": 0.75, "macro_f1": 0.5, "weighted_f1": 0.625})  # not sealed
    out = export_run(run, tmp_path / "a" / "b" / "model")
    assert out == tmp_path / "a" / "b" / "model"
    copied = ["comparison.md", "config.yaml", "data_report.json", "metrics.json", "predictor.json", "test_metrics.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*copied, "README.md", "checksums.sha256", "models"])
    for name in copied:
        assert (out / name).read_bytes() == (run / name).read_bytes(), name
    for model in json.loads((run / "predictor.json").read_text())["models"]:
        files = sorted(p.relative_to(run / "models" / model) for p in (run / "models" / model).rglob("*"))
        assert files and files == sorted(p.relative_to(out / "models" / model) for p in (out / "models" / model).rglob("*"))
        assert all((out / "models" / model / f).read_bytes() == (run / "models" / model / f).read_bytes()
                   for f in files if (run / "models" / model / f).is_file())
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card == model_card(out)
    assert "Test split (4 labelled rows no model trained or was chosen on): accuracy **0.750**" in card


def test_export_writes_into_an_existing_empty_folder(tiny_run, tmp_path):
    from mmsent.run_folder import load_run_models

    (tmp_path / "model").mkdir()
    out = export_run(tiny_run, tmp_path / "model")
    assert (out / "README.md").is_file() and (out / "checksums.sha256").is_file()
    assert load_run_models(out).name == load_run_models(tiny_run).name


def test_export_names_the_folder_it_refuses(tiny_run, tmp_path):
    out = tmp_path / "model"
    _write(out, keep_json={})
    with pytest.raises(FileExistsError) as info:
        export_run(tiny_run, out)
    assert str(info.value) == f"{out} is not empty; export into a new folder"
    assert [p.name for p in out.iterdir()] == ["keep.json"]


def test_export_without_verifying_exports_and_seals_a_changed_run_as_it_is(tiny_run, tmp_path):
    from mmsent.fingerprint import file_digest
    from mmsent.run_folder import MANIFEST_FILE, load_run_models

    run = shutil.copytree(tiny_run, tmp_path / "run")
    _drop_a_seed(run)
    out = export_run(run, tmp_path / "model", verify=False)
    assert (out / "predictor.json").read_bytes() == (run / "predictor.json").read_bytes()
    sealed = dict(reversed(line.split("  ", 1)) for line in (out / MANIFEST_FILE).read_text().splitlines())
    assert sealed["predictor.json"] == file_digest(out / "predictor.json")
    assert load_run_models(out).seeds == [0]  # verified against its own seal
    assert "(mean probability of 1 fusion model: dual_stream)" in (out / "README.md").read_text()


def _finetuned_run(tiny_run, tmp_path):
    """A copy of the tiny run recorded as fine-tuned: its text encoder's weights in a cache folder outside the run
    (with a resumable checkpoint beside them), its image encoder frozen; sealed again."""
    from mmsent.config import load_config
    from mmsent.run_folder import seal_run

    run = shutil.copytree(tiny_run, tmp_path / "run")
    cfg = load_config(run / "config.yaml")
    cfg.finetune.enabled, cfg.finetune.image.mode = True, "frozen"
    cfg.save(run / "config.yaml")
    weights = tmp_path / "cache" / "finetune" / "text-abc"
    for name, content in (("encoder.safetensors", b"tuned weights"), ("head.safetensors", b"head"),
                          ("finetuned.json", b'{"fingerprint": "text-ft"}')):
        weights.mkdir(parents=True, exist_ok=True)
        (weights / name).write_bytes(content)
    _write(weights / "checkpoints" / "step-50", state_json={"step": 50})
    # the fine-tuning's cross-fitting folds (training rows' features), of this run and another: not the model's
    _write(weights / "crossfit-k5-0123456789ab", fold0_json={"features": "of training rows"})
    _write(weights / "crossfit-k3-ba9876543210", fold0_json={"features": "another run's"})
    record = {"image": {"mode": "frozen", "fingerprint": "image-base"},
              "text": {"mode": "last_n", "dir": str(weights), "fingerprint": "text-ft", "seconds": 1.5}}
    _write(run, finetune_json=record)
    seal_run(run)
    return run, weights, record


def test_export_of_a_finetuned_run_carries_its_weights_under_finetuned_without_checkpoints(tiny_run, tmp_path):
    from mmsent.config import load_config
    from mmsent.run_folder import MANIFEST_FILE, load_run_models

    run, weights, record = _finetuned_run(tiny_run, tmp_path)
    out = export_run(run, tmp_path / "model")
    # the encoder, its head and its record only: no checkpoints, no cross-fitting folds; frozen image: nothing
    assert sorted(p.relative_to(out).as_posix() for p in (out / "finetuned").rglob("*")) == [
        "finetuned/text", "finetuned/text/encoder.safetensors", "finetuned/text/finetuned.json",
        "finetuned/text/head.safetensors"]
    assert ((out / "finetuned" / "text" / "encoder.safetensors").read_bytes() ==
            (weights / "encoder.safetensors").read_bytes())
    assert json.loads((out / "finetune.json").read_text()) == {
        "image": record["image"], "text": {**record["text"], "dir": "finetuned/text"}}  # relative to the folder
    assert json.loads((run / "finetune.json").read_text()) == record  # the run's own record is left as it was
    listed = [line.split("  ", 1)[1] for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert {"finetune.json", "finetuned/text/encoder.safetensors", "finetuned/text/finetuned.json",
            "finetuned/text/head.safetensors"} <= set(listed)
    assert not [f for f in listed if "crossfit" in f or "checkpoints" in f]
    text_encoder = load_config(run / "config.yaml").encoders.text  # the record names none: the config's
    assert (f"- fine-tuned: text (`{text_encoder}`, its top layers), weights under finetuned/; image frozen"
            in (out / "README.md").read_text().splitlines())
    shutil.rmtree(tmp_path / "cache")
    load_run_models(out)  # self-contained: the cache it came from is gone
    (out / "finetuned" / "text" / "encoder.safetensors").write_bytes(b"other weights")
    with pytest.raises(Exception, match=r"encoder\.safetensors: changed since"):
        load_run_models(out)


# --- load() and the shipped model ------------------------------------------------------------------------------------

def test_load_gives_the_folders_predictor_and_without_one_the_shipped_models(tiny_run, tmp_path, monkeypatch):
    import mmsent.export
    from mmsent.export import load

    out = export_run(tiny_run, tmp_path / "model")
    monkeypatch.setattr(mmsent.export, "SHIPPED_MODEL", tmp_path / "not_installed")
    assert isinstance(model := load(out), RunPredictor) and model.run_dir == out  # the shipped model is not touched
    monkeypatch.setattr(mmsent.export, "SHIPPED_MODEL", out)
    assert isinstance(shipped := load(), RunPredictor) and shipped.run_dir == out


def test_load_passes_its_options_to_the_predictor(tiny_run, tmp_path):
    from mmsent.export import load
    from mmsent.run_folder import IntegrityError

    out = export_run(tiny_run, tmp_path / "model")
    weights = out / "models" / json.loads((out / "predictor.json").read_text())["models"][0] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load(out)
    assert load(out, verify=False).run_dir == out


def test_the_shipped_model_lies_beside_the_package():
    import mmsent.export
    from mmsent.export import shipped_model_path

    folder = shipped_model_path()
    assert folder == Path(mmsent.export.__file__).resolve().parent / "shipped_model"
    assert (folder / "predictor.json").is_file() and (folder / "README.md").is_file()


def test_a_missing_shipped_model_is_named_with_the_fix(tmp_path, monkeypatch):
    import mmsent.export
    from mmsent.export import shipped_model_path

    _write(tmp_path / "shipped_model", README_md="# no model\n")  # a folder without its predictor.json
    monkeypatch.setattr(mmsent.export, "SHIPPED_MODEL", tmp_path / "shipped_model")
    with pytest.raises(FileNotFoundError) as info:
        shipped_model_path()
    assert str(info.value) == (f"the shipped model is missing from this installation ({tmp_path / 'shipped_model'}); "
                               "reinstall mmsent, or pass a run folder")
