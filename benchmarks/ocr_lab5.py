"""Benchmark: does text read from the images (OCR) help? Builds a copy of a lab-format dataset whose post texts carry it.

Step 1 reads every image of ``train.txt`` and ``test_without_label.txt`` with RapidOCR (PP-OCRv4 detection and
recognition in ONNX Runtime; its models ship in the wheel), detection at most ``--side`` px on the longer side, no
angle classifier, and appends one JSON line per image to ``--ocr-file`` (a rerun resumes it). It prints the share of
images with text and the seconds per image. Step 2 writes ``--out``: the same label files, the images hard-linked,
and each post text with ``" | "`` and the image's text (lines scored >= ``--min-score``) appended when that text has
3 characters or more. Score it like any dataset::

    pip install rapidocr-onnxruntime      # not an mmsent dependency
    python benchmarks/ocr_lab5.py --out /tmp/lab5-ocr
    python benchmarks/accuracy_lab5.py --data /tmp/lab5-ocr --variant cv5-ocr-appended "--set encoders.backend=torch"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmsent.data.text import decode_text

MIN_CHARS = 3


def guids_of(root: Path) -> list[str]:
    guids = []
    for name in ("train.txt", "test_without_label.txt"):
        lines = (root / name).read_text(encoding="utf-8").splitlines()[1:]
        guids += [line.split(",")[0].strip() for line in lines if line.strip()]
    return guids


def read_images(root: Path, ocr_file: Path, side: int, limit: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """guid -> [(line, score)], OCR-ing the images not in ``ocr_file`` yet (at most ``limit`` of them)."""
    from rapidocr_onnxruntime import RapidOCR

    done: dict[str, list[tuple[str, float]]] = {}
    if ocr_file.exists():
        for line in ocr_file.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            done[rec["guid"]] = [(t, s) for t, s in rec["lines"]]
    todo = [g for g in guids_of(root) if g not in done][:limit]
    engine = RapidOCR(det_limit_side_len=side, det_limit_type="max", use_cls=False)
    t0 = time.perf_counter()
    with ocr_file.open("a", encoding="utf-8") as fh:
        for guid in todo:
            found, _ = engine(str(root / "data" / f"{guid}.jpg"))
            done[guid] = [(str(text), float(score)) for _, text, score in found or []]
            fh.write(json.dumps({"guid": guid, "lines": done[guid]}, ensure_ascii=False) + "\n")
    if todo:
        print(f"OCR: {len(todo)} images in {time.perf_counter() - t0:.0f} s "
              f"({(time.perf_counter() - t0) / len(todo):.3f} s per image)")
    return done


def image_text(lines: list[tuple[str, float]], min_score: float) -> str:
    text = " ".join(t for t, s in lines if s >= min_score).strip()
    return text if len(text) >= MIN_CHARS else ""


def write_copy(root: Path, out: Path, ocr: dict[str, list[tuple[str, float]]], min_score: float) -> int:
    """The dataset copy; returns how many texts got image text."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "test_without_label.txt"):
        (out / name).write_bytes((root / name).read_bytes())
    with_text = 0
    for guid in guids_of(root):
        src = root / "data" / f"{guid}.txt"
        post, _ = decode_text(src.read_bytes(), str(src))
        extra = image_text(ocr.get(guid, []), min_score)
        with_text += bool(extra)
        (out / "data" / f"{guid}.txt").write_text(f"{post.rstrip()} | {extra}" if extra else post, encoding="utf-8")
        target = out / "data" / f"{guid}.jpg"
        if not target.exists():
            os.link(root / "data" / f"{guid}.jpg", target)  # mmsent refuses symbolic links out of the dataset
    return with_text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "lab5")
    ap.add_argument("--out", type=Path, help="where the dataset copy goes (required without --limit)")
    ap.add_argument("--ocr-file", type=Path, default=Path("/tmp/ocr_lab5.jsonl"))
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--min-score", type=float, default=0.6)
    ap.add_argument("--limit", type=int, help="only time OCR on this many more images; no dataset copy")
    args = ap.parse_args()
    ocr = read_images(args.data, args.ocr_file, args.side, args.limit)
    if args.limit is not None:
        return 0
    if args.out is None:
        ap.error("--out is required to write the dataset copy")
    with_text = write_copy(args.data, args.out, ocr, args.min_score)
    print(f"{with_text} of {len(guids_of(args.data))} images have text ({with_text / len(guids_of(args.data)):.1%}); "
          f"dataset copy in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
