"""Writes small synthetic datasets in the benchmark layouts mmsent reads: split files, TumEmo and HFM.

Nothing here comes from a real release: the layouts follow the public descriptions in ``mmsent.data.split_files``,
``mmsent.data.tumemo`` and ``mmsent.data.hfm``, and every post is generated: a 32x32 JPEG whose colour depends on
the class (with a per-post jitter and a darker square, so no two are equal) and a short text holding a word of the
class among neutral filler, so a model can learn from either modality.

Usage:
    python scripts/make_benchmark_fixtures.py OUT [--layout all|splits|tumemo|hfm] [--per-class 12] [--seed 0]

writes ``OUT/splits`` (3 classes, JSON split files), ``OUT/tumemo`` (7 emotions, with split id lists) and
``OUT/hfm`` (2 classes, the release's text/ and dataset_image/ folders). The tests import the writers::

    write_splits_fixture(root, fmt="csv")          # -> {"train": [(id, label), ...], "dev": [...], "test": [...]}
    write_tumemo_fixture(root, split_format=None)  # -> the same, plus "all"; None writes no split files
    write_hfm_fixture(root)                        # -> the same, plus "cue": the ids the cue-word filter drops
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

Rows = list[tuple[str, str]]  # (id, label)

SPLITS_CLASSES = ("negative", "neutral", "positive")
TUMEMO_CLASSES = ("angry", "bored", "calm", "fear", "happy", "love", "sad")
HFM_CLASSES = ("not_sarcastic", "sarcastic")  # the release's 0 and 1
# one word per class, so the text carries the label; unknown classes get a made-up word
CLASS_WORDS = {
    "negative": "awful", "neutral": "ordinary", "positive": "wonderful", "angry": "furious", "bored": "dull",
    "calm": "peaceful", "fear": "scared", "happy": "joyful", "love": "adore", "sad": "tearful",
    "not_sarcastic": "genuinely", "sarcastic": "yeah right",
}
FILLER = ("the", "photo", "today", "with", "friends", "at", "the", "park", "again", "this", "morning", "city")
# words the HFM release's own loader drops posts for (a sarcasm cue in the text would leak the label)
HFM_CUE_TEXT = "this is pure sarcasm"


def write_image(path: Path, class_index: int, n_classes: int, rng: random.Random) -> None:
    """A 32x32 JPEG in the class's hue (jittered), with a darker square at a random place."""
    hue = class_index / max(1, n_classes)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.9)
    base = tuple(min(255, max(0, int(c * 255) + rng.randint(-12, 12))) for c in (r, g, b))
    im = Image.new("RGB", (32, 32), base)
    x, y = rng.randint(0, 20), rng.randint(0, 20)
    im.paste(tuple(c // 2 for c in base), (x, y, x + 12, y + 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=90)


def make_text(label: str, rng: random.Random) -> str:
    """A short post: filler words around the class's word."""
    words = rng.sample(FILLER, 5)
    words.insert(rng.randint(0, len(words)), CLASS_WORDS.get(label, f"{label}ish"))
    return " ".join(words)


def plan(classes: Sequence[str], per_class: Sequence[int], rng: random.Random) -> list[Rows]:
    """Labels for each split (``per_class[i]`` rows of every class in split i), each split shuffled; ids unset."""
    return [rng.sample([("", c) for c in classes for _ in range(n)], n * len(classes)) for n in per_class]


def write_splits_fixture(root: Path, *, fmt: str = "json", classes: Sequence[str] = SPLITS_CLASSES,
                         per_class: tuple[int, int, int] = (12, 3, 3), seed: int = 0,
                         dev_name: str = "dev") -> dict[str, Rows]:
    """``train/{dev_name}/test.{fmt}`` (rows id, text, label) and ``images/{id}.jpg`` in ``root``."""
    rng = random.Random(seed)
    out: dict[str, Rows] = {}
    n = 0
    for split, labels in zip(("train", "dev", "test"), plan(classes, per_class, rng)):
        records = []
        for _, label in labels:
            n += 1
            guid = f"p{n:04d}"
            write_image(root / "images" / f"{guid}.jpg", classes.index(label), len(classes), rng)
            records.append({"id": guid, "text": make_text(label, rng), "label": label})
        out[split] = [(r["id"], r["label"]) for r in records]
        write_records(root / f"{dev_name if split == 'dev' else split}.{fmt}", records)
    return out


def write_records(path: Path, records: list[dict]) -> None:
    """Writes records as a JSON list, JSON Lines or CSV, by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]) if records else ["id", "text", "label"])
            writer.writeheader()
            writer.writerows(records)


def write_tumemo_fixture(root: Path, *, per_class: tuple[int, int, int] = (12, 2, 2), seed: int = 0,
                         split_format: str | None = "txt", data_folder: str = "data") -> dict[str, Rows]:
    """A TumEmo-layout release: ``all_data_id_and_label.txt`` (header, then ``id Label`` lines, labels
    capitalised), ``{data_folder}/{id}.jpg`` and ``{id}.txt``; with ``split_format`` (``txt``: one id per line;
    ``json``: a list of ``{"id": ...}``) also ``train``/``dev``/``test`` split files beside it."""
    rng = random.Random(seed)
    out: dict[str, Rows] = {"all": []}
    lines = ["id label"]
    n = 0
    for split, labels in zip(("train", "dev", "test"), plan(TUMEMO_CLASSES, per_class, rng)):
        out[split] = []
        for _, label in labels:
            guid = str(n)
            n += 1
            write_image(root / data_folder / f"{guid}.jpg", TUMEMO_CLASSES.index(label), 7, rng)
            (root / data_folder / f"{guid}.txt").write_text(make_text(label, rng), encoding="utf-8")
            lines.append(f"{guid} {label.capitalize()}")
            out[split].append((guid, label))
        out["all"] += out[split]
        ids = [guid for guid, _ in out[split]]
        if split_format == "txt":
            (root / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
        elif split_format == "json":
            write_records(root / f"{split}.json", [{"id": guid} for guid in ids])
    (root / "all_data_id_and_label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def write_hfm_fixture(root: Path, *, per_class: tuple[int, int, int] = (12, 3, 3), seed: int = 0,
                      cue_rows: bool = True) -> dict[str, Rows]:
    """An HFM-layout release: ``text/train.txt`` (lines ``['id', 'text', label]``), ``text/valid2.txt`` and
    ``text/test2.txt`` (lines ``['id', 'text', hashtag_label, label]``), ``dataset_image/{id}.jpg``; label 1 is
    sarcastic. With ``cue_rows`` each file also holds one post with a sarcasm cue word, which the reader drops."""
    rng = random.Random(seed)
    out: dict[str, Rows] = {"cue": []}
    files = {"train": "train.txt", "dev": "valid2.txt", "test": "test2.txt"}
    n = 0
    for split, labels in zip(("train", "dev", "test"), plan(HFM_CLASSES, per_class, rng)):
        lines, out[split] = [], []
        extra = [("cue", "sarcastic")] if cue_rows else []
        for kind, label in labels + extra:
            guid = str(682716753374351360 + n)  # tweet-like ids
            n += 1
            value = HFM_CLASSES.index(label)
            text = HFM_CUE_TEXT if kind == "cue" else make_text(label, rng)
            write_image(root / "dataset_image" / f"{guid}.jpg", value, 2, rng)
            fields = [guid, text, value] if split == "train" else [guid, text, 1 - value, value]
            lines.append(repr(fields))
            (out["cue"] if kind == "cue" else out[split]).append((guid, label))
        (root / "text").mkdir(parents=True, exist_ok=True)
        (root / "text" / files[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--layout", choices=("all", "splits", "tumemo", "hfm"), default="all")
    parser.add_argument("--per-class", type=int, default=12, help="training rows per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    writers = {
        "splits": lambda p: write_splits_fixture(p, per_class=(args.per_class, 3, 3), seed=args.seed),
        "tumemo": lambda p: write_tumemo_fixture(p, per_class=(args.per_class, 2, 2), seed=args.seed),
        "hfm": lambda p: write_hfm_fixture(p, per_class=(args.per_class, 3, 3), seed=args.seed),
    }
    for name, write in writers.items():
        if args.layout in ("all", name):
            rows = write(args.out / name)
            print(f"{args.out / name}: " + ", ".join(f"{k} {len(v)}" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
