"""--engine ray: the run's predictor as a Ray Data pipeline gives the one-process path's answers, row for row."""

from __future__ import annotations

import csv
import json

import pytest

from mmsent.data.sample import sample_dataset_path

pytestmark = pytest.mark.integration  # a whole pipeline, Ray, distributed or fuzzing: not in `make test-fast`

ray = pytest.importorskip("ray")


def _manifest(folder, rowless: bool = False):
    """The bundled sample's 61 unlabelled posts and a row whose image is missing (and, with ``rowless``, a row
    without an image at all, which stops the one-process engine at its line)."""
    root = sample_dataset_path()
    guids = [line.split(",")[0] for line in (root / "test_without_label.txt").read_text().splitlines()[1:]]
    path = folder / "posts.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text_path", "image"])
        for g in guids:
            writer.writerow([g, str(root / "data" / f"{g}.txt"), str(root / "data" / f"{g}.jpg")])
        writer.writerow(["gone", str(root / "data" / f"{guids[0]}.txt"), "nowhere.jpg"])
        if rowless:
            writer.writerow(["007", str(root / "data" / f"{guids[0]}.txt"), ""])
    return path, len(guids)


def test_ray_gives_the_same_answers_as_one_process(tiny_run, tmp_path):
    import pyarrow.parquet as pq

    from mmsent.ray_engine import predict_with_ray
    from mmsent.stream import predict_stream

    manifest, n = _manifest(tmp_path)
    local = predict_stream(tiny_run, manifest, tmp_path / "local.jsonl", chunk_size=16, progress=False)
    result = predict_with_ray(tiny_run, manifest, tmp_path / "ray", actors=2, chunk_size=16)
    assert (result.predicted, result.errors, result.actors) == (n, 1, 2) and (local.predicted, local.errors) == (n, 1)
    by_ray = {r["id"]: r for r in pq.read_table(tmp_path / "ray").to_pylist()}
    by_local = {r["id"]: r for r in map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())}
    assert set(by_ray) == set(by_local) and len(by_ray) == n + 1
    assert by_ray["gone"]["label"] is None and "nowhere.jpg" in by_ray["gone"]["error"]
    for rid, want in by_local.items():
        if rid != "gone":
            got = by_ray[rid]
            assert got["label"] == want["label"] and got["error"] is None
            for key in ("p_positive", "p_neutral", "p_negative"):
                assert got[key] == pytest.approx(want[key], abs=1e-5)
    with pytest.raises(ValueError, match="is not an empty folder"):
        predict_with_ray(tiny_run, manifest, tmp_path / "ray")


def test_a_row_without_an_image_is_an_error_row_not_the_end_of_the_job(tiny_run, tmp_path):
    import pyarrow.parquet as pq

    from mmsent.ray_engine import predict_with_ray

    manifest, n = _manifest(tmp_path, rowless=True)
    result = predict_with_ray(tiny_run, manifest, tmp_path / "ray", actors=1, chunk_size=64)
    assert (result.predicted, result.errors) == (n, 2)
    by_ray = {r["id"]: r for r in pq.read_table(tmp_path / "ray").to_pylist()}
    assert by_ray["007"]["error"] == "posts.csv:id 007: no 'image' (or 'image_path') column value"  # id kept as text


def test_a_second_job_into_the_same_folder_is_refused_while_the_first_writes(tiny_run, tmp_path):
    from mmsent.io import OutputError, output_lock
    from mmsent.ray_engine import predict_with_ray

    manifest, _ = _manifest(tmp_path)
    out = tmp_path / "ray"
    with output_lock(out):  # another process writing this folder (the lock is per open file, so one suffices)
        with pytest.raises(OutputError, match="being written by another mmsent process"):
            predict_with_ray(tiny_run, manifest, out, actors=1)
    assert not out.exists() or not any(out.iterdir())
