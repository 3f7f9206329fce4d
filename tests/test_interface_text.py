"""Interface text reads naturally for a 1-seed and a 3-seed run: the report, /docs, /health and the API describe
the predictor in words ("mean of 3 designs × 3 seeds"), mark it in the report, and never repeat a word."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from mmsent_runkit import build_tiny_run
from mmsent_testkit import repeated_words

pytestmark = pytest.mark.integration

CASES = {  # seeds, what predicts, how the predictor is described
    "one seed": ("0", "dual_stream", "one model (seed 0)"),
    "three seeds": ("0,1,2", "ensemble", "mean of 3 designs × 3 seeds"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    seeds, predict_with, description = CASES[request.param]
    run_dir = build_tiny_run(tmp_path_factory.mktemp(request.param.replace(" ", "-")), predict_with, seeds)
    return run_dir, predict_with, description


def _interface_text(page: str) -> str:
    """The words the report writes itself: scripts, styles and the posts' own texts (their tokens and quoted texts)
    dropped, each element on its own line (neighbouring cells are not one sentence)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.DOTALL)
    page = re.sub(r"<span class=\"tok\"[^>]*>[^<]*</span>", "", page)
    page = re.sub(r"<(q|blockquote)\b.*?</\1>", "", page, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", "\n", page))


def test_the_report_marks_the_predictor_and_repeats_no_word(case):
    run_dir, predict_with, _ = case
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert not repeated_words(_interface_text(page))
    marked = re.findall(r'<tr class="best"><td>([^<]*) <span class=\'predicts\'>★ predicts</span>', page)
    assert marked == [predict_with]  # the chosen design's row, or the ensemble's own row
    assert "chosen model highlighted" not in page


def test_the_api_and_docs_describe_the_predictor_in_words(case):
    import mmsent
    from mmsent.serve import create_app

    run_dir, predict_with, description = case
    clf = mmsent.load(run_dir)
    assert clf.info()["description"] == description
    with TestClient(create_app(predictor=clf)) as client:
        health = client.get("/health").json()
        docs = client.get("/openapi.json").json()["info"]["description"]
    assert health["model"]["name"] == predict_with and health["model"]["description"] == description
    assert docs.startswith(f"Multimodal tweet sentiment: `{predict_with}` ({description}) from ")
    for text in (docs, description):
        assert not repeated_words(text)
