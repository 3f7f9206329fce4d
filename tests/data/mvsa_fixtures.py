"""Writes small MVSA-Single and MVSA-Multiple releases with every kind of annotator (dis)agreement.

Built from the published format description only (no real release file is used). Run as a script to write them to
a folder: ``python tests/data/mvsa_fixtures.py OUT``; the tests call :func:`write_release`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# id -> annotators' (text, image) pairs, and the expected (label or None, outcome) under the fusion rule
SINGLE = {
    "1": ([("positive", "positive")], ("positive", "agree")),
    "2": ([("negative", "negative")], ("negative", "agree")),
    "3": ([("neutral", "neutral")], ("neutral", "agree")),
    "4": ([("neutral", "negative")], ("negative", "one_neutral")),
    "5": ([("positive", "neutral")], ("positive", "one_neutral")),
    "6": ([("positive", "negative")], (None, "conflict")),
    "7": ([("negative", "positive")], (None, "conflict")),
}
MULTIPLE = {
    "11": ([("positive", "positive")] * 3, ("positive", "agree")),
    "12": ([("positive", "neutral"), ("positive", "neutral"), ("neutral", "neutral")], ("positive", "one_neutral")),
    "13": ([("negative", "negative"), ("neutral", "negative"), ("negative", "positive")], ("negative", "agree")),
    "14": ([("neutral", "negative"), ("neutral", "negative"), ("positive", "neutral")], ("negative", "one_neutral")),
    "15": ([("positive", "negative"), ("positive", "negative"), ("neutral", "negative")], (None, "conflict")),
    "16": ([("positive", "positive"), ("neutral", "positive"), ("negative", "positive")], (None, "no_majority")),
    "17": ([("neutral", "positive"), ("neutral", "negative"), ("neutral", "neutral")], (None, "no_majority")),
    "18": ([("neutral", "neutral"), ("neutral", "neutral"), ("negative", "positive")], ("neutral", "agree")),
}


def write_release(root: Path, variant: str) -> dict[str, tuple[str | None, str]]:
    """Writes ``labelResultAll.txt`` and ``data/`` for ``single`` or ``multiple``; returns the expected outcomes."""
    table = SINGLE if variant == "single" else MULTIPLE
    n = len(next(iter(table.values()))[0])
    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = ["ID\t" + "\t".join(["text,image"] * n)]
    rng = np.random.default_rng(0)
    for guid, (pairs, _) in table.items():
        lines.append(guid + "\t" + "\t".join(f"{t},{i}" for t, i in pairs))
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "data" / f"{guid}.jpg")
        (root / "data" / f"{guid}.txt").write_text(f"post {guid} #mvsa", encoding="utf-8")
    (root / "labelResultAll.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return {g: expected for g, (_, expected) in table.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "mvsa-fixtures")
    for v in ("single", "multiple"):
        write_release(out / f"MVSA-{v.capitalize()}", v)
    print(f"wrote {out}/MVSA-Single and {out}/MVSA-Multiple")
