"""Datasets as one table (data.format=table): CSV, JSONL and Parquet, labels, splits and every bad row named."""

from __future__ import annotations

import csv
import json
import os

import pytest
from mmsent_runkit import write_lab_dataset

from mmsent.config import load_config
from mmsent.data.lab_format import DataValidationError
from mmsent.data.table import load_table_dataset


def write_table(lab, path, rows: list[dict]) -> None:
    """Writes ``rows`` as CSV, JSONL or Parquet by the path's suffix."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        keys = sorted({k for r in rows for k in r})
        pq.write_table(pa.table({k: [r.get(k) for r in rows] for k in keys}), path)


def lab_rows(lab, folder) -> list[dict]:
    """The lab fixture's rows as table rows: inline text for the even ones, text_path for the odd ones."""
    rows = []
    for line in (lab / "train.txt").read_text().splitlines()[1:] + \
            (lab / "test_without_label.txt").read_text().splitlines()[1:]:
        guid, tag = line.split(",")
        text = (lab / "data" / f"{guid}.txt").read_text()
        row = {"id": f"post-{guid}", "image": os.path.relpath(lab / "data" / f"{guid}.jpg", folder)}
        row.update({"text": text} if int(guid) % 2 == 0 else {"text_path": str(lab / "data" / f"{guid}.txt")})
        row["label"] = "" if tag == "null" else tag.upper()  # labels are case-insensitive
        rows.append(row)
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_table_reads_like_the_lab_folder(tmp_path, suffix):
    lab = write_lab_dataset(tmp_path / "lab")
    table = tmp_path / "tables" / f"posts{suffix}"
    table.parent.mkdir()
    write_table(lab, table, lab_rows(lab, table.parent))
    dataset = load_table_dataset(table)
    assert len(dataset.train) == 30 and len(dataset.test) == 4 and dataset.validation == []
    first = dataset.train[0]
    assert first.guid == "post-100" and first.label == "positive"
    assert first.text == (lab / "data" / "100.txt").read_text() and first.image_path.resolve() == \
        (lab / "data" / "100.jpg").resolve()
    assert dataset.train[1].text == (lab / "data" / "101.txt").read_text()  # read from its text_path
    assert [ex.guid for ex in dataset.test] == dataset.test_order == [f"post-{g}" for g in range(130, 134)]
    assert all(ex.label is None for ex in dataset.test)


def test_a_split_column_gives_the_validation_rows_and_the_run_uses_them(tmp_path):
    from mmsent.pipeline import prepare_splits

    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)
    for i, row in enumerate(rows[:30]):
        row["split"] = "val" if i % 5 == 0 else "train"
    rows[30]["split"] = "test"
    write_table(lab, tmp_path / "posts.csv", rows)
    dataset = load_table_dataset(tmp_path / "posts.csv")
    assert dataset.validation == [f"post-{100 + i}" for i in range(0, 30, 5)]
    assert dataset.report.counts["val"] == 6
    cfg = load_config(overrides=[f"data.root={tmp_path / 'posts.csv'}", "data.format=table"])
    [split] = prepare_splits(cfg, dataset)
    assert split.val == dataset.validation and len(split.train) == 24 and not set(split.train) & set(split.val)


def test_every_bad_row_is_named_by_line_with_its_fix(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:6]
    rows[1]["label"], rows[1]["split"] = "", "train"  # a training row without a label
    rows[2]["label"] = 'hap"py'
    rows[3]["id"] = rows[0]["id"]
    rows[4]["image"] = "nowhere.jpg"
    rows[5]["split"] = "holdout"
    write_table(lab, tmp_path / "posts.csv", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.csv")
    message = str(err.value)
    for expected in ("posts.csv:3: train row has no label", "posts.csv:4: label 'hap\"py' has surrounding",
                     "posts.csv:5: duplicate id post-100; first at posts.csv:2", "posts.csv:6: image",
                     "is missing", "posts.csv:7: unknown split 'holdout' -> use train, val or test"):
        assert expected in message
    skipped = load_table_dataset(tmp_path / "posts.csv", on_error="skip")
    assert [ex.guid for ex in skipped.train] == ["post-100"]
    assert skipped.report.skipped == {"unknown_label": 2, "duplicate_guid": 1, "missing_image": 1,
                                      "unknown_split": 1}


def test_a_missing_column_or_table_says_so(tmp_path):
    (tmp_path / "posts.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(DataValidationError, match=r"posts.csv:2.*no 'image'"):
        load_table_dataset(tmp_path / "posts.csv")
    with pytest.raises(FileNotFoundError, match="table not found"):
        load_table_dataset(tmp_path / "nothing.csv")


@pytest.mark.integration  # a whole run
def test_a_run_on_a_table(tmp_path):
    from mmsent_testkit import build_tiny_bert, build_tiny_clip

    from mmsent.pipeline import run

    lab = write_lab_dataset(tmp_path / "lab")
    write_table(lab, tmp_path / "posts.jsonl", lab_rows(lab, tmp_path))
    cfg = load_config(overrides=[
        f"data.root={tmp_path / 'posts.jsonl'}", "data.format=table", "data.val_fraction=0.3",
        f"cache_dir={tmp_path / 'cache'}", f"encoders.image=hf-clip:{build_tiny_clip(tmp_path / 'clip')}",
        "encoders.backend=torch", "compare.zero_shot=off",
        f"encoders.text={build_tiny_bert(tmp_path / 'bert')}", "encoders.device=cpu", "encoders.text_max_length=16",
        "training.device=cpu", "training.hidden_dim=16", "training.epochs=1", "compare.models=concat",
        "compare.seeds=0", "compare.workers=1",
    ])
    result = run(cfg, tmp_path / "run", progress=False)
    lines = result.predictions_path.read_text().splitlines()
    assert lines[0] == "guid,tag" and [line.split(",")[0] for line in lines[1:]] == [f"post-{g}" for g in
                                                                                   range(130, 134)]
    # the report's error gallery finds each row's files through the table
    from mmsent.report import build_report

    build_report(tmp_path / "run", explain=False)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "class='gallery'" in html and "unavailable" not in html and "not found in the table" not in html


def test_a_row_without_image_or_id_is_skipped_under_skip_and_named_by_its_first_line(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:4]
    rows[1]["text"] = "a quoted\nmulti-line tweet"  # one record over two lines: later line numbers must not slip
    rows[1].pop("text_path", None)
    del rows[2]["image"]
    rows[3]["id"] = ""
    write_table(lab, tmp_path / "posts.csv", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.csv")
    assert "posts.csv:5: no 'image'" in str(err.value) and "posts.csv:6: no 'id'" in str(err.value)
    dataset = load_table_dataset(tmp_path / "posts.csv", on_error="skip")
    assert [ex.guid for ex in dataset.train] == ["post-100", "post-101"]
    assert dataset.train[1].text == "a quoted\nmulti-line tweet"
    assert dataset.report.skipped == {"malformed_row": 2}


def test_a_validation_split_that_leaves_a_class_without_training_rows_is_refused(tmp_path):
    from mmsent.data.splits import SplitError
    from mmsent.pipeline import prepare_splits

    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:30]
    for row in rows:
        row["split"] = "val" if row["label"] == "NEUTRAL" else "train"
    write_table(lab, tmp_path / "posts.csv", rows)
    cfg = load_config(overrides=[f"data.root={tmp_path / 'posts.csv'}", "data.format=table"])
    with pytest.raises(SplitError, match="no neutral row"):
        prepare_splits(cfg, load_table_dataset(tmp_path / "posts.csv"))


def test_each_bad_row_is_one_exact_issue(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:5]
    rows[1]["label"], rows[1]["image"] = 'hap"py', "nowhere.jpg"  # one issue: a bad row's files are not checked
    rows[2]["id"] = "../up"
    rows[3]["id"] = rows[0]["id"]
    del rows[4]["image"]
    write_table(lab, tmp_path / "posts.jsonl", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.jsonl")
    assert [(str(issue), issue.kind, issue.guid) for issue in err.value.issues] == [
        ("posts.jsonl:2: label 'hap\"py' has surrounding spaces, a comma, a quote, a tab or a line break; rename it "
         "(prediction files are comma-separated) -> write a plain class name", "unknown_label", "post-101"),
        ("posts.jsonl:3: id '../up' is not a plain name -> use letters, digits, '_', '-' and '.'", "malformed_row",
         "../up"),
        ("posts.jsonl:4: duplicate id post-100; first at posts.jsonl:1 -> remove the repeated row", "duplicate_guid",
         "post-100"),
        (("posts.jsonl:5: no 'image' (or 'image_path') column value -> fill in the row's id, image and text (or "
          "text_path)"), "malformed_row", "post-104"),
    ]


def test_an_unreadable_line_is_one_issue_for_the_whole_table(tmp_path):
    (tmp_path / "posts.jsonl").write_text('{"id": "1"}\n{"id": 2, oops}\n', encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.jsonl")
    [issue] = err.value.issues
    assert (issue.location, issue.fix) == ("posts.jsonl:2", "fix the line or the file")
    assert issue.reason.startswith("not a JSON object (Expecting property name enclosed in double quotes: line 1 "
                                   "column 11 (char 10)); fix or remove the line")
    assert err.value.root == tmp_path


def test_images_are_decoded_by_default(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:3]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    rows[0]["image"] = "broken.jpg"
    write_table(lab, tmp_path / "posts.csv", rows)
    with pytest.raises(DataValidationError, match="broken.jpg: not an image"):
        load_table_dataset(tmp_path / "posts.csv")
    assert len(load_table_dataset(tmp_path / "posts.csv", check_images=False).train) == 3


def test_parquet_rows_are_named_by_row_number_and_a_row_without_id_has_no_guid(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:3]
    rows[1]["label"] = 'hap"py'
    rows[2]["id"] = None
    write_table(lab, tmp_path / "posts.parquet", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.parquet")
    assert [(issue.location, issue.kind, issue.guid) for issue in err.value.issues] == [
        ("posts.parquet:row 2", "unknown_label", "post-101"), ("posts.parquet:row 3", "malformed_row", None)]
    assert err.value.issues[1].reason == "no 'id'; every row needs a unique id"


def test_a_table_whose_name_holds_a_colon_keeps_the_reason_whole(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:2]
    del rows[1]["image"]
    write_table(lab, tmp_path / "week: 1.jsonl", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "week: 1.jsonl")
    [issue] = err.value.issues
    assert (issue.location, issue.reason) == ("week: 1.jsonl:2", "no 'image' (or 'image_path') column value")


def test_the_pixel_limit_applies_to_a_table(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    write_table(lab, tmp_path / "posts.csv", lab_rows(lab, tmp_path)[:2])
    with pytest.raises(DataValidationError, match="over the decompression-bomb limit of 10"):
        load_table_dataset(tmp_path / "posts.csv", max_image_pixels=10)
    assert len(load_table_dataset(tmp_path / "posts.csv").train) == 2


def test_a_row_marked_test_keeps_its_label_for_scoring_and_a_repeated_test_id_leaves_the_training_row_alone(
        tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:3]
    rows[1]["split"] = "test"  # labelled, and a prediction target: its label is only ever scored (mmsent evaluate)
    write_table(lab, tmp_path / "posts.csv", rows)
    dataset = load_table_dataset(tmp_path / "posts.csv")
    assert [ex.guid for ex in dataset.test] == ["post-101"] and dataset.test[0].label == rows[1]["label"].lower()
    assert "post-101" not in dataset.labels()  # never a training label
    rows = lab_rows(lab, tmp_path)[:3] + [dict(lab_rows(lab, tmp_path)[0], label="", split="test")]
    write_table(lab, tmp_path / "again.csv", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "again.csv")
    assert [(issue.location, issue.kind) for issue in err.value.issues] == [("again.csv:5", "duplicate_guid")]


def test_inline_texts_are_reported_as_utf8(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = [row for row in lab_rows(lab, tmp_path) if "text" in row][:4]
    write_table(lab, tmp_path / "posts.jsonl", rows)
    assert load_table_dataset(tmp_path / "posts.jsonl").report.encodings == {"utf-8": 4}


def test_a_file_outside_the_tables_folder_is_named_by_its_full_path(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path / "tables")[:2]
    rows[1]["image"] = str(tmp_path / "elsewhere" / "gone.jpg")
    (tmp_path / "tables").mkdir()
    write_table(lab, tmp_path / "tables" / "posts.csv", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "tables" / "posts.csv")
    [issue] = err.value.issues
    assert issue.reason == f"image {tmp_path / 'elsewhere' / 'gone.jpg'} is missing"


def test_a_row_with_more_fields_than_the_header_is_an_issue_naming_the_fix(tmp_path):
    # the probe: an unquoted comma silently cut the text ("not bad, actually terrible" read as "not bad")
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:2]
    write_table(lab, tmp_path / "posts.csv", rows)
    with (tmp_path / "posts.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"post-9,{rows[0]['image']},POSITIVE,not bad, actually terrible,\n")  # id,image,label,text,text_path
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.csv", check_images=False)
    assert [(i.location, i.kind, i.guid, i.reason, i.fix) for i in err.value.issues] == [
        ("posts.csv:4", "malformed_row", "post-9", "6 fields, but the header has 5 columns (an unquoted comma in a "
         "text?)", 'put a text holding a comma in double quotes: "not bad, actually"')]


def test_texts_over_the_limit_are_issues_inline_or_in_a_file(tmp_path):
    lab = write_lab_dataset(tmp_path / "lab")
    rows = lab_rows(lab, tmp_path)[:2]
    rows[0]["text"] = "x" * 5_001
    with (tmp_path / "long.txt").open("wb") as fh:
        fh.truncate(50_000_000)  # sparse: refused from its size, never read
    rows[1]["text_path"] = "long.txt"
    write_table(lab, tmp_path / "posts.jsonl", rows)
    with pytest.raises(DataValidationError) as err:
        load_table_dataset(tmp_path / "posts.jsonl", check_images=False)
    assert [(i.location, i.kind, i.reason, i.fix) for i in err.value.issues] == [
        ("posts.jsonl:1", "bad_text", "5,001 characters, over the limit of 5,000",
         "shorten it to 5,000 characters at most or remove the row"),
        ("long.txt", "bad_text", "50,000,000 bytes, over the limit of 5,000 characters",
         "shorten it to 5,000 characters at most or remove the row")]
