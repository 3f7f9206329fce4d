"""Manifests: every format read row by row with its location, paths resolved, each missing value named."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mmsent.data.manifest import ManifestError, Row, count_rows, read_manifest, read_records, to_row

ROWS = [{"id": "1", "text": "a tweet", "image": "img/1.jpg"},
        {"id": 2, "text_path": "txt/2.txt", "image_path": "img/2.jpg", "label": " positive ", "split": "VAL"},
        {"id": "3", "text": "multi\nline, \"quoted\"", "image": "/abs/3.jpg", "label": "", "split": ""}]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n\n" for r in rows), encoding="utf-8")  # blank lines are skipped
    elif path.suffix == ".csv":
        import csv

        with path.open("w", encoding="utf-8-sig", newline="") as fh:  # with a BOM, as Excel writes it
            writer = csv.DictWriter(fh, ["id", "text", "text_path", "image", "image_path", "label", "split"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = ["id", "text", "text_path", "image", "image_path", "label", "split"]
        pq.write_table(pa.table({k: [None if r.get(k) is None else str(r[k]) for r in rows] for k in keys}), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rows_come_back_in_order_with_locations_and_resolved_paths(tmp_path, suffix) -> None:
    path = _write(tmp_path / f"posts{suffix}", ROWS)
    rows = list(read_manifest(path))
    where = {".csv": ["posts.csv:2", "posts.csv:3", "posts.csv:4"],
             ".jsonl": ["posts.jsonl:1", "posts.jsonl:3", "posts.jsonl:5"],
             ".parquet": ["posts.parquet:row 1", "posts.parquet:row 2", "posts.parquet:row 3"]}[suffix]
    assert rows == [
        Row("1", "a tweet", None, tmp_path / "img/1.jpg", where[0]),
        Row("2", None, tmp_path / "txt/2.txt", tmp_path / "img/2.jpg", where[1], "positive", "val"),
        Row("3", 'multi\nline, "quoted"', None, Path("/abs/3.jpg"), where[2]),
    ]
    assert count_rows(path) == (None if suffix == ".parquet" else 3)


def test_a_csv_record_is_named_by_the_line_it_starts_on(tmp_path) -> None:
    path = _write(tmp_path / "posts.csv", [ROWS[2], ROWS[0], {"id": "", "text": "x", "image": "i.jpg"}])
    with pytest.raises(ManifestError, match=r"^posts\.csv:5: no 'id'; every row needs a unique id$"):
        list(read_manifest(path))  # the header, a record over lines 2-3, one on line 4: the third starts on line 5


def test_a_bare_carriage_return_inside_an_unquoted_field_is_an_error_row_not_two_records(tmp_path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(b'id,text,image\n1,hello\rworld,a.jpg\n2,"quoted\rcr",b.jpg\n3,fine,c.jpg\n')
    rows = list(read_manifest(path))
    assert [r.id for r in rows] == ["1", "2", "3"]  # no row "world" made up from the second half
    assert rows[0].error == ("a bare carriage return (CR) inside an unquoted field; quote the field or remove the CR")
    assert rows[0].where == "posts.csv:2"
    assert rows[1].text == "quoted\rcr" and rows[1].error is None and rows[2].where == "posts.csv:4"  # LF lines
    assert count_rows(path) == 3


def test_the_id_of_a_record_with_several_bare_carriage_returns_is_the_field_before_the_first(tmp_path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(b'id,text,image\n7,a\rb\rc,a.jpg\n8,fine,b.jpg\n')
    rows = list(read_manifest(path))
    assert [(r.id, r.where) for r in rows] == [("7", "posts.csv:2"), ("8", "posts.csv:3")]
    assert rows[0].error.startswith("a bare carriage return (CR) inside an unquoted field") and rows[1].error is None


def test_a_last_line_ending_in_a_bare_carriage_return_is_a_whole_record(tmp_path) -> None:
    # LF lines, and at the very end a CR with nothing after it: the record ends there, nothing is lost or added
    path = tmp_path / "posts.csv"
    path.write_bytes(b"id,text,image\n1,sunny,a.jpg\n2,rainy,b.jpg\r")
    rows = list(read_manifest(path))
    assert [(r.id, r.text, r.where, r.error) for r in rows] == [("1", "sunny", "posts.csv:2", None),
                                                                  ("2", "rainy", "posts.csv:3", None)]
    assert rows[1].image == tmp_path / "b.jpg"
    assert count_rows(path) == 2


def test_a_file_whose_lines_end_in_a_bare_carriage_return_reads_line_by_line(tmp_path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(b"id,text,image\r1,sunny,a.jpg\r2,rainy,b.jpg\r")  # an old Mac file
    assert [(r.id, r.text, r.where) for r in read_manifest(path)] == [("1", "sunny", "posts.csv:2"),
                                                                       ("2", "rainy", "posts.csv:3")]


def test_a_blank_line_between_csv_records_is_skipped_and_the_rows_after_it_are_read(tmp_path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("id,text,image\n1,sunny,a.jpg\n\n2,rainy,b.jpg\n\n\n3,grey,c.jpg\n", encoding="utf-8")
    rows = list(read_manifest(path))
    assert [(r.id, r.text, r.where) for r in rows] == [("1", "sunny", "posts.csv:2"), ("2", "rainy", "posts.csv:4"),
                                                       ("3", "grey", "posts.csv:7")]
    assert count_rows(path) == 3


@pytest.mark.parametrize(("record", "message"), [
    ({"text": "t", "image": "i.jpg"}, "no 'id'; every row needs a unique id"),
    ({"id": "  ", "text": "t", "image": "i.jpg"}, "no 'id'; every row needs a unique id"),
    ({"id": "1", "text": "t"}, "no 'image' (or 'image_path') column value"),
    ({"id": "1", "text": "t", "image": ""}, "no 'image' (or 'image_path') column value"),
    ({"id": "1", "image": "i.jpg"}, "no 'text' (or 'text_path') column value"),
])
def test_each_missing_value_is_named(record, message) -> None:
    with pytest.raises(ManifestError, match=f"^{re.escape('m.jsonl:4: ' + message)}$"):
        to_row("m.jsonl:4", record, Path("."))


def test_an_empty_text_with_no_text_path_is_a_text() -> None:
    assert to_row("m.csv:2", {"id": "1", "text": "", "image": "i.jpg"}, Path("/b")).text == ""
    assert to_row("m.csv:2", {"id": "1", "text": "", "text_path": "t.txt", "image": "i.jpg"},
                  Path("/b")).text_path == Path("/b/t.txt")


def test_broken_jsonl_lines_and_unknown_formats_are_named(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"^m\.jsonl:2: not a JSON object \(Expecting property name .*\); fix or "
                                            r"remove the line$"):
        list(read_records(path))
    path.write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"^m\.jsonl:2: not a JSON object; write one object per line$"):
        list(read_records(path))
    other = tmp_path / "m.tsv"
    other.write_text("id\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=f"^{re.escape(str(other))}: unknown manifest format; use .csv, .jsonl, "
                                            r"\.parquet$"):
        list(read_records(other))
    assert count_rows(other) is None
    with pytest.raises(FileNotFoundError, match=f"^manifest not found: {re.escape(str(tmp_path / 'no.csv'))}$"):
        list(read_manifest(tmp_path / "no.csv"))


def test_count_rows_counts_records_not_lines(tmp_path) -> None:
    assert count_rows(_write(tmp_path / "m.csv", [ROWS[2], ROWS[0]])) == 2  # a quoted newline is one record
    header_only = tmp_path / "h.csv"
    header_only.write_text("id,text,image\n", encoding="utf-8")
    empty = tmp_path / "e.csv"
    empty.write_text("", encoding="utf-8")
    assert count_rows(header_only) == 0 and count_rows(empty) == 0
    upper = tmp_path / "M.JSONL"  # the suffix's case does not matter
    upper.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    assert count_rows(upper) == 1 and [r.id for r in read_manifest(upper)] == ["1"]
    upper_csv = _write(tmp_path / "m.csv", [ROWS[0]]).rename(tmp_path / "M.CSV")
    assert count_rows(upper_csv) == 1 and [r.id for r in read_manifest(upper_csv)] == ["1"]


def test_a_csv_text_keeps_the_line_breaks_inside_its_quotes(tmp_path) -> None:
    # The csv module needs the file opened with newline="": otherwise "\r\n" inside a quoted text becomes "\n".
    path = tmp_path / "m.csv"
    path.write_bytes(b'id,text,image\r\n1,"first line\r\nsecond line",a.jpg\r\n2,plain,b.jpg\r\n')
    rows = list(read_manifest(path))
    assert [row.text for row in rows] == ["first line\r\nsecond line", "plain"]
    assert [row.where for row in rows] == ["m.csv:2", "m.csv:4"]
    assert count_rows(path) == 2


def test_a_parquet_manifest_without_pyarrow_says_what_to_install(tmp_path, monkeypatch) -> None:
    import sys

    (tmp_path / "m.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import now raises ImportError
    with pytest.raises(ImportError) as err:
        list(read_records(tmp_path / "m.parquet"))
    assert str(err.value) == "reading a Parquet manifest needs pyarrow: pip install pyarrow"


def test_a_csv_row_with_an_unquoted_comma_is_an_error_row_not_a_cut_text(tmp_path) -> None:
    # the probe: "not bad, actually terrible" was predicted as "not bad", the rest silently dropped
    path = tmp_path / "m.csv"
    path.write_text('id,image,text\n1,IMG.jpg,not bad, actually terrible\n2,b.jpg,"fine, quoted"\n', encoding="utf-8")
    first, second = read_manifest(path)
    assert (first.id, first.where, first.text) == ("1", "m.csv:2", None)
    assert first.error == ("4 fields, but the header has 3 columns (an unquoted comma in a text?); put a text "
                           'holding a comma in double quotes: "not bad, actually"')
    assert (second.text, second.error) == ("fine, quoted", None)
    with pytest.raises(ManifestError, match=r"^m\.csv:2: 4 fields, but the header has 3 columns"):
        to_row(first.where, next(rec for _, rec in read_records(path)), tmp_path)


def test_a_csv_field_over_the_csv_modules_limit_is_an_error_row_and_the_next_rows_still_read(tmp_path) -> None:
    big = "x" * 140_000  # over csv.field_size_limit() (131,072): csv.Error was a traceback
    path = tmp_path / "m.csv"
    path.write_text(f'id,text,image\n1,{big},a.jpg\n2,"one\n{big}\nmore, text\nend",b.jpg\n3,fine,c.jpg\n'
                    f'4,"{big}\n', encoding="utf-8")
    rows = list(read_manifest(path))
    assert [(r.id, r.where) for r in rows] == [("1", "m.csv:2"), ("2", "m.csv:3"), ("3", "m.csv:7"), ("4", "m.csv:8")]
    assert rows[0].error == ("a field over 131,072 characters, more than the CSV reader takes (texts may have at "
                             "most 5,000); shorten it or remove the row")
    # a quoted field over several lines is skipped to its closing quote, and the message says so
    assert rows[1].error == ("a field over 131,072 characters, more than the CSV reader takes (texts may have at "
                             "most 5,000), in the record on lines 3-6; shorten it or remove the row")
    assert (rows[2].text, rows[2].error) == ("fine", None)
    assert rows[3].error == ("a field over 131,072 characters, more than the CSV reader takes: a quote in the record "
                             'from line 8 is never closed; close it, and double every quote inside a quoted text ("")')
    assert count_rows(path) == 4


def test_a_csv_field_too_large_before_the_id_has_no_id_and_stops_the_read_naming_the_line(tmp_path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"text,id,image\n{'x' * 140_000},1,a.jpg\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"^m\.csv:2: a field over 131,072 characters"):
        list(read_manifest(path))


def test_a_deeply_nested_jsonl_line_is_named_not_a_recursion_error(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 1, "text": "a", "image": "a.jpg"}\n{"id": 2, "text": ' + "[" * 100_000
                    + "]" * 100_000 + "}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"^m\.jsonl:2: not a JSON object \(nested too deeply\); fix or remove "
                                            r"the line$"):
        list(read_manifest(path))


def test_ids_are_written_stripped_so_a_padded_repeat_is_the_same_id(tmp_path) -> None:
    from mmsent.data.table import load_table_dataset

    path = tmp_path / "m.csv"
    path.write_text('id,text,image,label\n 7 ,a,a.jpg,positive\n1,b,b.jpg,positive\n" 1",c,c.jpg,negative\n',
                    encoding="utf-8")
    assert [row.id for row in read_manifest(path)] == ["7", "1", "1"]
    dataset = load_table_dataset(path, on_error="skip", check_images=False)
    assert [(issue.location, issue.reason) for issue in dataset.report.issues if issue.kind == "duplicate_guid"] == \
        [("m.csv:4", "duplicate id 1; first at m.csv:3")]


@pytest.mark.parametrize("record", [{"id": "1", "text": "t"}, {"id": " 1 ", "image": "i.jpg"}])
def test_a_row_with_an_id_but_no_image_or_text_is_an_error_row(tmp_path, record) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    [row] = read_manifest(path)
    assert row.id == "1" and row.where == "m.jsonl:1" and row.error is not None and row.error.startswith("no '")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_folder_as_the_manifest_is_refused_without_blocking(tmp_path) -> None:
    from data_helpers import call_unblocked

    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    assert call_unblocked(lambda: count_rows(fifo), [fifo]) is None  # predict counts the rows first
    for path, kind in ((fifo, "a FIFO (named pipe)"), (tmp_path / "d.jsonl", "a folder")):
        if kind == "a folder":
            path.mkdir()
        with pytest.raises(ManifestError, match=f"^{re.escape(str(path))}: not a regular file but {re.escape(kind)}; "
                                                "give a CSV, JSONL or Parquet file$"):
            call_unblocked(lambda p=path: list(read_manifest(p)), [fifo])


@pytest.mark.parametrize(("comma_at", "id_kept"), [(-2, True), (-1, False)])
def test_an_unreadable_records_id_is_taken_only_when_it_ends_inside_the_readable_prefix(tmp_path, comma_at,
                                                                                         id_kept) -> None:
    # The id of a record with a field over the csv module's limit comes from its first limit - 1 characters (a prefix
    # that holds no field over the limit). An id is only trusted when the comma after it is in that prefix too: one
    # cut at the prefix's end could be the start of a longer id, and an error row under a wrong id would answer it.
    import csv

    limit = csv.field_size_limit()
    note = "n" * (limit + comma_at - 2)  # note, comma, id "7", then its comma at index limit + comma_at
    path = tmp_path / "m.csv"
    path.write_text(f"note,id,text,image\n{note},7,{'x' * (limit + 10)},a.jpg\n8,fine,b.jpg,c\n", encoding="utf-8")
    if id_kept:
        rows = list(read_manifest(path))
        assert [(r.id, r.where, r.error is not None) for r in rows][0] == ("7", "m.csv:2", True)
    else:
        with pytest.raises(ManifestError, match=r"^m\.csv:2: a field over 131,072 characters"):
            list(read_manifest(path))


def test_a_csv_header_the_csv_module_cannot_read_is_named(tmp_path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"{'x' * 140_000},id\n1,2\n", encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        list(read_manifest(path))
    assert str(err.value) == ("m.csv:1: the header cannot be read (field larger than field limit (131072)); write the "
                              "column names on the first line")
