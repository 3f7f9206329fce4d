"""mmsent predict --input: a manifest streamed in chunks, resumable, shardable, every row answered once."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

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


def test_a_killed_job_resumes_without_losing_or_repeating_a_row(tiny_run, tmp_path):
    manifest, ids = _manifest(tiny_run, tmp_path, ".jsonl")
    full = _read(predict_stream(tiny_run, manifest, tmp_path / "full.jsonl", chunk_size=3, progress=False).out)
    out = tmp_path / "out.jsonl"
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:9])  # killed mid-line after 4 rows
    again = predict_stream(tiny_run, manifest, out, chunk_size=3, progress=False)
    assert again.skipped_done == 4
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
