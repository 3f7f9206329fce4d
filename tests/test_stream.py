"""mmsent predict --input: a manifest streamed in chunks, resumable, shardable, every row answered once."""

from __future__ import annotations

import csv
import json
import os
import re
from typing import ClassVar

import numpy as np
import pytest
from mmsent_testkit import call_unblocked

from mmsent.stream import ManifestError, predict_stream, read_manifest


def _manifest(tiny_run, tmp_path, suffix=".csv"):
    lab = tiny_run.parent / "lab"
    guids = [line.split(",")[0] for line in (lab / "test_without_label.txt").read_text().splitlines()[1:]]
    guids += [line.split(",")[0] for line in (lab / "train.txt").read_text().splitlines()[1:7]]
    rows = [{"id": g, "text": (lab / "data" / f"{g}.txt").read_text(), "image": f"../lab/data/{g}.jpg"}
            for g in guids]
    rows[1] = {"id": rows[1]["id"], "text_path": f"../lab/data/{rows[1]['id']}.txt", "image": rows[1]["image"]}
    rows.append({"id": "broken", "text": "hello", "image": "../lab/data/no-such.jpg"})
    folder = tiny_run.parent / f"corpus-{tmp_path.name}"  # beside lab/, so relative paths resolve from it
    folder.mkdir(exist_ok=True)
    path = folder / f"manifest{suffix}"
    if suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "text", "text_path", "image"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, [r["id"] for r in rows]


def _read(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_row_is_answered_once_and_matches_the_run(tiny_run, tmp_path):
    manifest, ids = _manifest(tiny_run, tmp_path)
    result = predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", chunk_size=4, progress=False)
    rows = _read(result.out)
    assert [r["id"] for r in rows] == ids and result.predicted == len(ids) - 1 and result.errors == 1
    assert "no-such.jpg" in rows[-1]["error"] and "manifest.csv:" in rows[-1]["error"]
    # the lab's own test rows: the same labels and probabilities as the run's prediction file
    with (tiny_run / "predictions_proba.csv").open() as fh:
        ref = {r["guid"]: r for r in csv.DictReader(fh)}
    for r in rows:
        if r["id"] in ref:
            assert r["label"] == ref[r["id"]]["tag"]
            np.testing.assert_allclose([r["p_positive"], r["p_neutral"], r["p_negative"]],
                                       [float(ref[r["id"]][f"p_{k}"]) for k in ("positive", "neutral", "negative")],
                                       atol=2e-3)


def test_a_killed_job_resumes_without_losing_or_repeating_a_row(tiny_run, tmp_path, monkeypatch):
    from mmsent.stream import ChunkPredictor

    manifest, ids = _manifest(tiny_run, tmp_path, ".jsonl")
    full = _read(predict_stream(tiny_run, manifest, tmp_path / "full.jsonl", chunk_size=3, progress=False).out)
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    answer, calls = ChunkPredictor.__call__, []

    def killed_in_second_chunk(self, rows):
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return answer(self, rows)

    with monkeypatch.context() as patch:
        patch.setattr(ChunkPredictor, "__call__", killed_in_second_chunk)
        with pytest.raises(KeyboardInterrupt):
            predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert out.read_text() == "".join(lines[:3])  # the first chunk, committed
    # what a kill -9 in the middle of writing the second chunk leaves: a whole line the marker does not cover yet
    # (written, not yet recorded) and a torn one
    with out.open("a") as fh:
        fh.write(lines[3] + lines[4][:9])
    again = predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert again.skipped_done == 3
    rows = _read(out)
    assert [r["id"] for r in rows] == ids  # each id once, in order
    assert rows == full


def test_shards_split_the_corpus(tiny_run, tmp_path):
    manifest, ids = _manifest(tiny_run, tmp_path)
    a = _read(predict_stream(tiny_run, manifest, tmp_path / "a.jsonl", shard=(0, 2), progress=False).out)
    b = _read(predict_stream(tiny_run, manifest, tmp_path / "b.jsonl", shard=(1, 2), progress=False).out)
    assert [r["id"] for r in a] == ids[0::2] and [r["id"] for r in b] == ids[1::2]


def test_bad_manifests_and_outputs_are_named(tiny_run, tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("id,text,image\n1,hi,a.jpg\n,hi,b.jpg\n")
    with pytest.raises(ManifestError, match=r"m.csv:3: no 'id'"):
        list(read_manifest(bad))
    dup = tmp_path / "d.csv"
    dup.write_text("id,text,image\n1,hi,a.jpg\n1,ho,b.jpg\n")
    with pytest.raises(ManifestError, match="appears twice"):
        predict_stream(tiny_run, dup, tmp_path / "o.jsonl", progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\nnotes\n")
    with pytest.raises(ValueError, match="not a prediction file"):
        predict_stream(tiny_run, dup, notes, progress=False)
    assert notes.read_text() == "precious\nnotes\n"
    # a JSONL of other records (a manifest, say) with a blank line inside is refused whole, never truncated
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": 1, "text": "a", "image": "x.jpg"}\n\n{"id": 2, "text": "b", "image": "y.jpg"}\n')
    before = other.read_text()
    with pytest.raises(ValueError, match="not a prediction file"):
        predict_stream(tiny_run, dup, other, progress=False)
    assert other.read_text() == before
    with pytest.raises(ValueError, match="is the manifest itself"):
        predict_stream(tiny_run, other, other, progress=False)


def _forbid_model_loading(monkeypatch):
    """Every refusal below must come before the run's models load."""
    import mmsent.run_folder as run_folder

    def fail(*args, **kwargs):
        raise AssertionError("the run's models were loaded before the output was checked")

    monkeypatch.setattr(run_folder, "load_run_models", fail)


def test_an_input_without_a_final_newline_is_never_truncated(tiny_run, tmp_path, monkeypatch):
    # defect 1: a text file the manifest names, given as --out, lost its whole content (taken for a torn write)
    post = tmp_path / "post.txt"
    post.write_bytes(b"I love this sunny day")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text_path,image\nX,post.txt,{tiny_run.parent / 'lab' / 'data' / '130.jpg'}\n")
    _forbid_model_loading(monkeypatch)
    with pytest.raises(ValueError, match=r"post\.txt.*not a prediction file.*delete it yourself"):
        predict_stream(tiny_run, manifest, post, progress=False)
    assert post.read_bytes() == b"I love this sunny day"
    # an mmsent-looking JSONL with a torn tail, but no marker beside it (copied, or from elsewhere): not repaired
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b'{"id": "1", "label": "positive"}\n{"id": "2", "lab')
    with pytest.raises(ValueError, match="not a prediction file"):
        predict_stream(tiny_run, manifest, copy, progress=False)
    assert copy.read_bytes() == b'{"id": "1", "label": "positive"}\n{"id": "2", "lab'


def test_an_output_changed_since_mmsent_wrote_it_is_refused(tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", chunk_size=4, progress=False).out
    assert (tmp_path / "out.jsonl.mmsent.json").is_file()  # the marker: what mmsent wrote, beside the output
    out.write_bytes(b'{"id": "mine", "label": "positive"}\n{"id": "torn')  # the user's own file, same name
    with pytest.raises(ValueError, match="changed since mmsent wrote it"):
        predict_stream(tiny_run, manifest, out, progress=False)
    assert out.read_bytes() == b'{"id": "mine", "label": "positive"}\n{"id": "torn'


def test_a_row_naming_the_output_as_its_input_is_refused(tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    with manifest.open("a") as fh:
        fh.write(f"self,hello,,{out}\n")
    with pytest.raises(ValueError, match=r"names --out .*out\.jsonl as its image"):
        predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)
    assert "self" not in {r["id"] for r in _read(out)}


def test_two_writers_of_one_output_never_both_write(tiny_run, tmp_path, monkeypatch):
    # defect 9: two `predict --input ... --out same.jsonl` at once wrote every row twice
    import threading

    from mmsent.stream import ChunkPredictor

    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "same.jsonl"
    first_inside, go_on = threading.Event(), threading.Event()
    answer = ChunkPredictor.__call__

    def held(self, rows):
        if threading.current_thread().name == "first":  # the first writer pauses inside its first chunk
            first_inside.set()
            go_on.wait(60)
        return answer(self, rows)

    monkeypatch.setattr(ChunkPredictor, "__call__", held)
    results = []
    first = threading.Thread(target=lambda: results.append(
        predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)), name="first")
    first.start()
    try:
        assert first_inside.wait(60)
        with pytest.raises(ValueError, match=r"same\.jsonl.*another mmsent process"):
            predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)
    finally:
        go_on.set()
        first.join(60)
    assert results and [r["id"] for r in _read(out)] == ids  # each id once


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_texts_against_the_text_rule_and_unreadable_files_are_error_rows(tiny_run, tmp_path):
    # the probe: empty, invisible and NUL texts got a label, an 8.6 MB text stalled its chunk, a FIFO hung the job
    manifest, _ = _manifest(tiny_run, tmp_path, ".jsonl")
    good = json.loads(manifest.read_text().splitlines()[0])
    folder, image = manifest.parent, good["image"]
    huge, pipe_jpg, pipe_txt = (folder / f"{name}-{tmp_path.name}" for name in ("huge.txt", "pipe.jpg", "pipe.txt"))
    with huge.open("wb") as fh:
        fh.truncate(100_000_000)  # sparse: refused from its size, never read
    os.mkfifo(pipe_jpg)
    os.mkfifo(pipe_txt)
    bad = [("empty", {"text": ""}), ("blank", {"text": " \n\t"}), ("invisible", {"text": "\u200b\u200e\u202e"}),
           ("nul", {"text": "\x00"}), ("long", {"text": "x" * 5_001}), ("huge", {"text_path": huge.name}),
           ("fifo-image", {"text": "hi", "image": pipe_jpg.name}), ("fifo-text", {"text_path": pipe_txt.name}),
           ("no-image", {"text": "hi", "image": None})]
    path = folder / f"strict-{tmp_path.name}.jsonl"
    path.write_text("".join(json.dumps({"id": rid, "image": image, **fields}) + "\n"
                            for rid, fields in [("good", {"text": good["text"]}), *bad]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = call_unblocked(lambda: predict_stream(tiny_run, path, out, chunk_size=4, progress=False),
                             [pipe_jpg, pipe_txt])
    rows = _read(out)
    assert [r["id"] for r in rows] == ["good"] + [rid for rid, _ in bad] and "label" in rows[0]
    assert (result.predicted, result.errors) == (1, len(bad))
    name = path.name
    invisible = "empty: only invisible characters (zero-width, bidi or control)"
    assert [r["error"] for r in rows[1:]] == [
        f"{name}:2: text: empty; write the post's text",
        f"{name}:3: text: empty; write the post's text",
        f"{name}:4: text: {invisible}; write the post's text",
        f"{name}:5: text: contains NUL characters (binary data?); remove the NUL characters",
        f"{name}:6: text: 5,001 characters, over the limit of 5,000; shorten it to 5,000 characters at most",
        f"{name}:7: {huge}: 100,000,000 bytes, over the limit of 5,000 characters; shorten it to 5,000 characters "
        "at most",
        f"{name}:8: {pipe_jpg}: not a regular file but a FIFO (named pipe)",
        f"{name}:9: {pipe_txt}: not a regular file but a FIFO (named pipe); replace it with a regular file",
        f"{name}:10: no 'image' (or 'image_path') column value",
    ]


def test_a_csv_row_with_an_unquoted_comma_and_a_padded_repeat_id_are_named(tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    lines = manifest.read_text().splitlines(keepends=True)  # header id,text,text_path,image
    first = next(csv.reader(lines[1:2]))
    cut = manifest.parent / f"cut-{tmp_path.name}.csv"
    cut.write_text(lines[0] + lines[1] + f"2,not bad, actually terrible,,{first[3]}\n", encoding="utf-8")
    rows = _read(predict_stream(tiny_run, cut, tmp_path / "o.jsonl", progress=False).out)
    assert rows[1] == {"id": "2", "error": f"{cut.name}:3: 5 fields, but the header has 4 columns (an unquoted "
                       'comma in a text?); put a text holding a comma in double quotes: "not bad, actually"'}
    padded = tmp_path / "p.csv"
    padded.write_text('id,text,image\n1,hi,a.jpg\n" 1",ho,b.jpg\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"^p\.csv:3: id '1' appears twice; ids must be unique$"):
        predict_stream(tiny_run, padded, tmp_path / "p.jsonl", progress=False)


def test_a_job_that_fails_before_any_row_leaves_nothing_behind(tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    with pytest.raises((ValueError, FileNotFoundError)):
        predict_stream(tmp_path / "not-a-run", manifest, out, progress=False)
    assert not out.exists() and not (tmp_path / "out.jsonl.mmsent.json").exists()
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        predict_stream(tiny_run, tmp_path / "no-such.csv", out, progress=False)
    assert not out.exists()


def test_resuming_with_another_run_manifest_or_shard_is_refused(tiny_run, tmp_path, monkeypatch):
    # a rerun with another run folder (or manifest, or shard) mixed two jobs' answers in one file
    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)
    marker_file = tmp_path / "out.jsonl.mmsent.json"
    marker = json.loads(marker_file.read_text())
    assert marker["run"] == str(tiny_run.resolve()) and marker["shard"] == "0/1"
    assert marker["manifest"] == str(manifest.resolve())
    assert (not (tiny_run / "checksums.sha256").is_file()) or len(marker["run_checksums"]) == 64
    before = out.read_bytes()
    _forbid_model_loading(monkeypatch)
    other = manifest.with_name("other.csv")
    other.write_bytes(manifest.read_bytes())
    with pytest.raises(ValueError, match=r"records manifest .*manifest\.csv.*other\.csv.*new --out.*delete"):
        predict_stream(tiny_run, other, out, progress=False)
    with pytest.raises(ValueError, match=r"records shard '0/1', this one has shard '0/2'"):
        predict_stream(tiny_run, manifest, out, shard=(0, 2), progress=False)
    for field, value in (("run", str(tmp_path / "another-run")), ("run_checksums", "0" * 64)):
        marker_file.write_text(json.dumps({**marker, field: value}))
        with pytest.raises(ValueError, match=f"records {field} .*another job|another job.*records {field}"):
            predict_stream(tiny_run, manifest, out, progress=False)
    assert out.read_bytes() == before
    # a marker from before these fields: unknown, so the output resumes
    marker_file.write_text(json.dumps({k: v for k, v in marker.items() if k not in ("manifest", "run_checksums")}
                                      | {"run": str(tiny_run)}))
    monkeypatch.undo()
    assert predict_stream(tiny_run, manifest, out, progress=False).skipped_done == len(ids)
    assert out.read_bytes() == before


def test_an_output_that_is_not_jsonl_is_refused_before_models_load(tiny_run, tmp_path, monkeypatch):
    manifest, _ = _manifest(tiny_run, tmp_path)
    _forbid_model_loading(monkeypatch)
    for name in ("out.csv", "out.parquet", "out"):
        with pytest.raises(ValueError, match=r"JSONL only.*\.jsonl"):
            predict_stream(tiny_run, manifest, tmp_path / name, progress=False)
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.mmsent.json").exists()


def test_a_users_file_at_the_marker_path_is_never_overwritten(tiny_run, tmp_path, monkeypatch):
    manifest, _ = _manifest(tiny_run, tmp_path)
    mine = tmp_path / "out.jsonl.mmsent.json"
    mine.write_text('{"my": "settings"}')
    _forbid_model_loading(monkeypatch)
    with pytest.raises(ValueError, match=r"out\.jsonl\.mmsent\.json.*not written by mmsent"):
        predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", progress=False)
    # a marker mmsent wrote for another kind of output (a guid,tag file) is not ours to replace either
    mine.write_text(json.dumps({"written_by": "mmsent", "kind": "guid,tag predictions", "files": {}}))
    with pytest.raises(ValueError, match=r"out\.jsonl\.mmsent\.json.*not the marker"):
        predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", progress=False)
    assert json.loads(mine.read_text())["kind"] == "guid,tag predictions"
    assert not (tmp_path / "out.jsonl").exists()


def test_text_appended_to_a_finished_output_is_never_cut(tiny_run, tmp_path, monkeypatch):
    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    committed = out.read_bytes()
    _forbid_model_loading(monkeypatch)
    appended = [
        b"my own notes about these predictions\n",  # a line that is no record
        b'{"id": "mine", "label": "positive"}\n{"note": "not a record"}\n',
        b'{"id": "%s", "label": "positive"}\n' % ids[0].encode(),  # an id already answered
        b"".join(b'{"id": "x%d", "label": "positive"}\n' % i for i in range(4)),  # more than one chunk
        b'{"id": "a", "label": "positive"}\nsome text',  # a tail that is no start of a record
    ]
    for extra in appended:
        out.write_bytes(committed + extra)
        with pytest.raises(ValueError, match=r"out\.jsonl has lines after what mmsent committed.*untouched"):
            predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
        assert out.read_bytes() == committed + extra


# --- the output file's guarantees, checked with a stand-in for the run's models (loading the real ones takes seconds
# and their answers do not matter here; the tests above check those) ---

_STAND_IN_PROBS = [2 / 3, 1 / 6, 1 / 6]  # positive, neutral, negative for every readable row


@pytest.fixture
def stand_in_models(monkeypatch):
    """The run's RunPredictor replaced: every row whose image decodes gets ``_STAND_IN_PROBS`` ("positive"); the
    chunking, error rows, output file, marker and resume are mmsent.stream's own."""
    import threading

    from mmsent import stream
    from mmsent.data.images import load_image

    class StandIn:
        labels = ("positive", "neutral", "negative")
        fail_on_call: int | None = None  # the classify call (1-based) that reports non-finite probabilities
        calls = 0
        made: ClassVar[list[tuple]] = []  # (run_dir, device, verify, cfg) of each one made
        chunks: ClassVar[list[int]] = []  # rows per classify call
        decoded_in: ClassVar[set[str]] = set()  # the names of the threads that decoded images

        def __init__(self, run_dir, device="cpu", verify=True, cfg=None):
            self.made.append((run_dir, device, verify, cfg))

        def crop(self, image, name="<upload>"):
            self.decoded_in.add(threading.current_thread().name)
            load_image(image)  # a missing or broken image is the row's error, as with the real run
            return np.zeros((4, 4, 3), np.uint8)

        def classify(self, crops, texts):
            type(self).calls += 1
            self.chunks.append(len(texts))
            if type(self).calls == type(self).fail_on_call:
                raise stream.NonFiniteError("the run's models gave non-finite probabilities")
            return np.array([_STAND_IN_PROBS] * len(texts)), ["positive"] * len(texts)

    monkeypatch.setattr(stream, "RunPredictor", StandIn)
    return StandIn


def _killed_after_writing_chunk(monkeypatch, k):
    """Patches StreamOutput so that the job dies (kill -9) once chunk ``k`` is written and synced but before its
    marker commit: the moment a kill leaves the most uncommitted lines behind."""
    from mmsent.stream import StreamOutput

    commit, calls = StreamOutput._commit, []

    def dying_commit(self):
        calls.append(1)
        if len(calls) == k + 1:  # the first commit is create()'s, of the empty file
            raise KeyboardInterrupt
        commit(self)

    monkeypatch.setattr(StreamOutput, "_commit", dying_commit)


def test_non_ascii_ids_and_errors_are_written_as_utf8_text_with_six_decimals(stand_in_models, tiny_run, tmp_path):
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "café-1", "text": "très bien", "image": str(image)}, ensure_ascii=False)
                        + "\n" + json.dumps({"id": "日本-2", "text": "hi", "image": "ñ.jpg"}, ensure_ascii=False)
                        + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, progress=False)
    data = out.read_bytes()
    assert data.decode("utf-8").splitlines()[0] == (
        '{"id": "café-1", "label": "positive", "p_positive": 0.666667, "p_neutral": 0.166667, "p_negative": 0.166667}')
    assert '"id": "日本-2", "error": "m.jsonl:2: ' in data.decode("utf-8") and "ñ.jpg" in data.decode("utf-8")
    assert b"\\u" not in data  # written as the characters, not JSON escapes: a reader sees the ids it gave
    assert predict_stream(tiny_run, manifest, out, progress=False).skipped_done == 2  # and resumes by them
    assert out.read_bytes() == data



def _refusal_leaving_out_as_it_was(run, manifest, out, **options) -> str:
    """The message ``predict_stream`` refuses ``out`` with; the file's bytes must be as they were."""
    before = out.read_bytes()
    with pytest.raises(ValueError) as refused:
        predict_stream(run, manifest, out, progress=False, **options)
    assert out.read_bytes() == before
    return str(refused.value)


def test_an_output_edited_since_mmsent_wrote_it_is_refused_with_the_fix(stand_in_models, tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)
    # every line still a record, but one label changed by hand (same length): not the file mmsent committed
    edited = out.read_bytes().replace(b'"label": "positive"', b'"label": "negative"', 1)
    assert edited != out.read_bytes()
    out.write_bytes(edited)
    assert _refusal_leaving_out_as_it_was(tiny_run, manifest, out, chunk_size=4) == (
        f"{out} has changed since mmsent wrote it (it no longer matches out.jsonl.mmsent.json), so it is not resumed;"
        " it was left untouched: choose another --out, or delete it yourself")


def test_a_resealed_output_whose_last_line_lost_its_newline_is_refused(stand_in_models, tiny_run, tmp_path):
    # a record appended after it would be glued onto its last line: refused even when the marker was made to match
    from mmsent.io import fingerprint

    manifest, _ = _manifest(tiny_run, tmp_path)
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:4]))  # the first 3 rows
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, progress=False)
    out.write_bytes(out.read_bytes().removesuffix(b"\n"))
    marker_file = tmp_path / "out.jsonl.mmsent.json"
    marker = json.loads(marker_file.read_text())
    marker["files"]["out.jsonl"] = [fingerprint(out)]
    marker_file.write_text(json.dumps(marker))
    manifest.write_text("".join(lines))  # more rows to answer
    before = out.read_bytes()
    with pytest.raises(ValueError, match="changed since mmsent wrote it"):
        predict_stream(tiny_run, manifest, out, progress=False)
    assert out.read_bytes() == before


def test_a_job_killed_with_only_a_torn_line_written_resumes_and_says_it_cut_it(stand_in_models, tiny_run, tmp_path,
                                                                                monkeypatch, caplog):
    import logging

    manifest, _ = _manifest(tiny_run, tmp_path)
    full = _read(predict_stream(tiny_run, manifest, tmp_path / "full.jsonl", chunk_size=3, progress=False).out)
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        _killed_after_writing_chunk(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    committed = b"".join(out.read_bytes().splitlines(keepends=True)[:3])  # the first chunk
    out.write_bytes(committed + b'{"id": ')  # killed as the second chunk's first line began
    with caplog.at_level(logging.INFO, logger="mmsent.stream"):
        again = predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert again.skipped_done == 3 and _read(out) == full
    assert (f"{out}: cutting what was written after its last committed chunk (a killed run); those rows are "
            "predicted again") in caplog.messages


def test_a_job_killed_after_writing_a_whole_chunk_before_committing_it_resumes(stand_in_models, tiny_run, tmp_path,
                                                                               monkeypatch):
    manifest, ids = _manifest(tiny_run, tmp_path)
    full = _read(predict_stream(tiny_run, manifest, tmp_path / "full.jsonl", chunk_size=3, progress=False).out)
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        _killed_after_writing_chunk(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert [r["id"] for r in _read(out)] == ids[:6]  # two chunks on disk, the marker covers the first
    again = predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert again.skipped_done == 3 and again.predicted + again.errors == len(ids) - 3
    assert _read(out) == full


def test_lines_after_the_commit_that_a_kill_cannot_leave_are_refused_with_the_fix(stand_in_models, tiny_run,
                                                                                    tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    # two whole records, then text that is no start of one: a user's, not a kill's
    extra = b'{"id": "a", "label": "positive"}\n{"id": "b", "label": "positive"}\nmy notes'
    out.write_bytes(out.read_bytes() + extra)
    assert _refusal_leaving_out_as_it_was(tiny_run, manifest, out, chunk_size=3) == (
        f"{out} has lines after what mmsent committed in out.jsonl.mmsent.json that are not what a killed run leaves, "
        "so it is not resumed; it was left untouched: choose another --out, or delete it yourself")


def test_an_older_marker_without_a_field_still_has_the_others_compared(stand_in_models, tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, progress=False)
    marker_file = tmp_path / "out.jsonl.mmsent.json"
    marker = json.loads(marker_file.read_text())
    marker_file.write_text(json.dumps({k: v for k, v in marker.items() if k != "manifest"}))  # before "manifest"
    before = out.read_bytes()
    with pytest.raises(ValueError) as refused:
        predict_stream(tiny_run, manifest, out, shard=(0, 2), progress=False)
    assert str(refused.value) == (
        f"{out} was written by another job: its marker out.jsonl.mmsent.json records shard '0/1', this one has shard "
        "'0/2'; resuming would mix the answers of two jobs in one file, so it was left untouched: choose a new --out, "
        f"or delete {out} and its marker yourself")
    assert out.read_bytes() == before


def test_a_marker_naming_the_run_and_manifest_by_other_paths_to_them_resumes(stand_in_models, tiny_run, tmp_path):
    # an older mmsent recorded the paths as given: the same folder and file by another spelling is the same job
    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, progress=False)
    marker_file = tmp_path / "out.jsonl.mmsent.json"
    marker = json.loads(marker_file.read_text())
    marker["run"] = str(tiny_run / ".." / tiny_run.name)
    marker["manifest"] = str(manifest.parent / ".." / manifest.parent.name / manifest.name)
    marker_file.write_text(json.dumps(marker))
    before = out.read_bytes()
    assert predict_stream(tiny_run, manifest, out, progress=False).skipped_done == len(ids)
    assert out.read_bytes() == before


def test_an_output_copied_with_its_marker_under_another_name_is_refused(stand_in_models, tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", progress=False)
    copy = tmp_path / "copy.jsonl"  # its marker speaks of out.jsonl only
    copy.write_bytes((tmp_path / "out.jsonl").read_bytes())
    (tmp_path / "copy.jsonl.mmsent.json").write_bytes((tmp_path / "out.jsonl.mmsent.json").read_bytes())
    before = copy.read_bytes()
    with pytest.raises(ValueError) as refused:
        predict_stream(tiny_run, manifest, copy, progress=False)
    assert str(refused.value) == (
        f"{copy} exists and is not a prediction file written by mmsent predict --input (no copy.jsonl.mmsent.json "
        "beside it says so); it was left untouched: choose another --out, or delete it yourself")
    assert copy.read_bytes() == before


def test_an_empty_text_file_is_an_error_row_naming_the_file(stand_in_models, tiny_run, tmp_path):
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text_path,image\nE,empty.txt,{image}\n")
    rows = _read(predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", progress=False).out)
    assert rows == [{"id": "E", "error": f"m.csv:2: {empty}: empty; write the post's text"}]


def test_non_finite_probabilities_stop_the_job_after_the_chunks_already_written(stand_in_models, tiny_run,
                                                                                 tmp_path):
    from mmsent.inference import NonFiniteError

    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    stand_in_models.fail_on_call = 2
    with pytest.raises(NonFiniteError) as stopped:
        predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert str(stopped.value) == "the run's models gave non-finite probabilities; nothing more was written"
    assert [r["id"] for r in _read(out)] == ids[:3]


def _last_bar(err: str) -> str:
    """The progress bar as last drawn: the last piece of ``err`` that is a bar line (log lines that other tests'
    logging setup sends to the same stream may come after it)."""
    return [part.rstrip() for part in re.split(r"[\r\n]", err) if part.startswith("predict:")][-1]


def test_the_progress_bar_counts_every_row_of_the_shard_and_is_silent_when_off(stand_in_models, tiny_run, tmp_path,
                                                                              capsys):
    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    n = len(ids[0::2])
    for _ in ("predicted", "resumed"):  # a resumed job counts the rows already done
        predict_stream(tiny_run, manifest, out, chunk_size=4, shard=(0, 2), progress=True)
        final = _last_bar(capsys.readouterr().err)
        assert re.fullmatch(rf"predict: 100%\|.*\| {n}/{n} \[.*row/s\]", final), final
    predict_stream(tiny_run, manifest, out, shard=(0, 2), progress=False)
    assert "predict:" not in capsys.readouterr().err  # no bar (a log line may be there, as logging is set up)


def test_a_parquet_manifest_is_answered_in_full_with_a_bar_that_counts_without_a_total(stand_in_models, tiny_run,
                                                                                      tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest, ids = _manifest(tiny_run, tmp_path)
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    parquet = manifest.with_suffix(".parquet")  # rows not counted ahead: the bar counts up without a total
    pq.write_table(pa.table({k: [r[k] or None for r in rows] for k in ("id", "text", "text_path", "image")}), parquet)
    result = predict_stream(tiny_run, parquet, tmp_path / "out.jsonl", chunk_size=4, progress=True)
    assert [r["id"] for r in _read(result.out)] == ids and (result.predicted, result.errors) == (len(ids) - 1, 1)
    final = _last_bar(capsys.readouterr().err)
    assert re.fullmatch(rf"predict: {len(ids)}row \[.*row/s\]", final), final


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_the_progress_bar_follows_the_terminal_width(stand_in_models, tiny_run, tmp_path, monkeypatch):
    import fcntl
    import select
    import struct
    import sys
    import termios

    def set_width(fd, columns):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))

    manifest, _ = _manifest(tiny_run, tmp_path)
    terminal, tty_fd = os.openpty()
    set_width(tty_fd, 100)
    tty = os.fdopen(tty_fd, "w")
    monkeypatch.setattr(sys, "stderr", tty)
    classify = stand_in_models.classify

    def narrowed(self, crops, texts):  # the user makes the window narrower while the job runs
        set_width(tty_fd, 60)
        return classify(self, crops, texts)

    monkeypatch.setattr(stand_in_models, "classify", narrowed)
    try:
        predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", chunk_size=4, progress=True)
        tty.flush()
        shown = b""
        while not shown.endswith(b"\n") and select.select([terminal], [], [], 10)[0]:  # the terminal passes
            shown += os.read(terminal, 1 << 16)  # writes on asynchronously: read up to the bar's last line end
        shown = shown.decode()
    finally:
        tty.close()
        os.close(terminal)
    final = _last_bar(shown)
    assert final.startswith("predict: 100%") and len(final) < 60  # redrawn to the new width, not wrapped


def test_the_run_is_loaded_as_the_caller_asks_verified_on_the_cpu_by_default(stand_in_models, tiny_run, tmp_path):
    manifest, _ = _manifest(tiny_run, tmp_path)
    predict_stream(tiny_run, manifest, tmp_path / "a.jsonl", progress=False)
    cfg = object()  # a user's runtime settings, passed through as they are
    predict_stream(tiny_run, manifest, tmp_path / "b.jsonl", device="cuda:1", verify=False, cfg=cfg, progress=False)
    assert stand_in_models.made == [(tiny_run, "cpu", True, None), (tiny_run, "cuda:1", False, cfg)]
    from mmsent.stream import ChunkPredictor

    ChunkPredictor(tiny_run)  # what each Ray actor holds: the same defaults
    assert stand_in_models.made[-1] == (tiny_run, "cpu", True, None)


def test_by_default_rows_go_in_chunks_of_256_with_a_bar_and_are_decoded_in_named_threads(stand_in_models, tiny_run,
                                                                                          tmp_path, capsys):
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": str(i), "text": "hi", "image": str(image)}) + "\n"
                                for i in range(257)))
    predict_stream(tiny_run, manifest, tmp_path / "out.jsonl")
    assert stand_in_models.chunks == [256, 1]
    final = _last_bar(capsys.readouterr().err)
    assert re.fullmatch(r"predict: 100%\|.*\| 257/257 \[.*row/s\]", final), final
    # what a thread dump, or a log line with %(threadName)s, shows of the decoding
    assert stand_in_models.decoded_in and all(name.startswith("mmsent-decode") for name in stand_in_models.decoded_in)


def test_a_row_naming_the_output_as_its_text_is_refused(stand_in_models, tiny_run, tmp_path):
    image = tiny_run.parent / "lab" / "data" / "130.jpg"
    out = tmp_path / "out.jsonl"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text,text_path,image\nA,hello,,{image}\nself,,{out},{image}\n")
    with pytest.raises(ValueError) as refused:
        predict_stream(tiny_run, manifest, out, progress=False)
    assert str(refused.value) == (f"m.csv:3: names --out {out} as its text; a file cannot be both an input and the "
                                  "output: choose another --out")


def test_a_shard_outside_the_count_is_refused(tiny_run, tmp_path, monkeypatch):
    manifest, _ = _manifest(tiny_run, tmp_path)
    _forbid_model_loading(monkeypatch)
    for i, n in ((2, 2), (3, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError) as refused:
            predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", shard=(i, n), progress=False)
        assert str(refused.value) == f"shard {i}/{n}: need 0 <= i < n"
    assert not (tmp_path / "out.jsonl").exists()


def test_an_output_that_is_not_jsonl_is_refused_with_the_name_to_use(tiny_run, tmp_path, monkeypatch):
    manifest, _ = _manifest(tiny_run, tmp_path)
    _forbid_model_loading(monkeypatch)
    with pytest.raises(ValueError) as refused:
        predict_stream(tiny_run, manifest, tmp_path / "out.csv", progress=False)
    assert str(refused.value) == (f"--out {tmp_path / 'out.csv'}: predict --input writes JSONL only (one record a "
                                  f"line); name the output with the .jsonl suffix, e.g. --out {tmp_path / 'out.jsonl'}")


def test_an_output_deleted_without_its_marker_is_written_anew(stand_in_models, tiny_run, tmp_path):
    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    predict_stream(tiny_run, manifest, out, progress=False)
    first = out.read_bytes()
    out.unlink()  # the marker beside it stays: it is mmsent's, for this output, and is replaced
    again = predict_stream(tiny_run, manifest, out, progress=False)
    assert (again.predicted, again.errors, again.skipped_done) == (len(ids) - 1, 1, 0)
    assert out.read_bytes() == first


def test_a_marker_of_another_kind_of_output_is_refused_with_the_fix(tiny_run, tmp_path, monkeypatch):
    manifest, _ = _manifest(tiny_run, tmp_path)
    marker = tmp_path / "out.jsonl.mmsent.json"
    marker.write_text(json.dumps({"written_by": "mmsent", "kind": "guid,tag predictions", "files": {}}))
    before = marker.read_bytes()
    _forbid_model_loading(monkeypatch)
    with pytest.raises(ValueError) as refused:
        predict_stream(tiny_run, manifest, tmp_path / "out.jsonl", progress=False)
    assert str(refused.value) == (f"{marker} exists and is not the marker of a prediction file written by mmsent "
                                  "predict --input; it was left untouched: choose another --out, or delete it yourself")
    assert marker.read_bytes() == before and not (tmp_path / "out.jsonl").exists()


def test_a_file_put_at_the_marker_path_while_the_job_takes_its_lock_is_never_overwritten(stand_in_models, tiny_run,
                                                                                          tmp_path, monkeypatch):
    import contextlib

    from mmsent import stream

    manifest, _ = _manifest(tiny_run, tmp_path)
    out, mine = tmp_path / "out.jsonl", tmp_path / "out.jsonl.mmsent.json"
    lock = stream.output_lock

    @contextlib.contextmanager
    def lock_once_a_user_wrote_there(path):
        mine.write_text('{"my": "settings"}')  # another program, between the checks and the lock
        with lock(path):
            yield

    monkeypatch.setattr(stream, "output_lock", lock_once_a_user_wrote_there)
    with pytest.raises(ValueError, match=r"out\.jsonl\.mmsent\.json exists and was not written by mmsent"):
        predict_stream(tiny_run, manifest, out, progress=False)
    assert mine.read_text() == '{"my": "settings"}' and not out.exists()


def test_the_summary_line_gives_the_counts_the_time_and_the_output(stand_in_models, tiny_run, tmp_path, caplog):
    import logging
    import time

    manifest, ids = _manifest(tiny_run, tmp_path)
    out = tmp_path / "out.jsonl"
    for predicted, errors, done in ((len(ids) - 1, 1, 0), (0, 0, len(ids))):  # then resumed: every row done
        caplog.clear()
        start = time.perf_counter()
        with caplog.at_level(logging.INFO, logger="mmsent.stream"):
            result = predict_stream(tiny_run, manifest, out, chunk_size=4, progress=False)
        assert 0 <= result.seconds <= time.perf_counter() - start
        assert caplog.messages[-1] == (f"predicted {predicted} row(s), {errors} unreadable (written with 'error'), "
                                       f"{done} already done, in {result.seconds:.1f}s -> {out}")
