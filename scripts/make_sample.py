"""Builds the bundled sample dataset (src/mmsent/sample_data/lab) from a full lab-format dataset.

Usage:
    python scripts/make_sample.py /work/shared/datasets/lab5 src/mmsent/sample_data/lab

Takes a label-stratified sample of the training rows (seed fixed, label proportions kept, chosen guids always in)
and the first rows of the test file (plus any chosen guids found further down), both in their original order.
Images are re-encoded as JPEG with the longer side at most ``--max-side`` pixels and no metadata (EXIF orientation
is applied first); texts are copied byte for byte.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image

from mmsent.data.images import load_image
from mmsent.data.lab_format import load_lab_dataset
from mmsent.data.records import Example

# The two texts of the lab copy that only decode as cp1252 (824 is a test row, 5084 a training row): always kept so
# the sample exercises that path.
DEFAULT_INCLUDE = ("824", "5084")


def quotas(counts: Counter[str], n: int) -> dict[str, int]:
    """Splits n over the labels in proportion to their counts (largest remainder, ties by label name)."""
    total = sum(counts.values())
    exact = {label: n * c / total for label, c in counts.items()}
    out = {label: int(v) for label, v in exact.items()}
    by_remainder = sorted(exact, key=lambda label: (-(exact[label] - out[label]), label))
    for label in by_remainder[: n - sum(out.values())]:
        out[label] += 1
    return out


def sample_train(train: list[Example], n: int, seed: int, include: tuple[str, ...]) -> list[Example]:
    """A label-stratified sample of n rows that contains every guid of ``include`` present in ``train``."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in train:
        by_label[ex.label or ""].append(ex)
    forced = {ex.guid for ex in train if ex.guid in include}
    rng = random.Random(seed)
    chosen = set(forced)
    for label, quota in quotas(Counter(ex.label or "" for ex in train), n).items():
        pool = [ex.guid for ex in by_label[label] if ex.guid not in forced]
        need = max(0, quota - sum(1 for ex in by_label[label] if ex.guid in forced))
        chosen.update(rng.sample(pool, min(need, len(pool))))
    return [ex for ex in train if ex.guid in chosen]  # original file order


def shrink_image(src: Path, dst: Path, max_side: int, quality: int) -> None:
    """Re-encodes an image as an RGB JPEG whose longer side is at most max_side; never upsamples."""
    im = load_image(src, min_side=max_side)  # draft decoding: only the needed scale
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # No exif=/icc_profile= arguments: metadata is dropped. Progressive saves a few percent at the same quality.
    im.save(dst, "JPEG", quality=quality, optimize=True, progressive=True)


def write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("guid,tag\n" + "".join(f"{guid},{tag}\n" for guid, tag in rows), encoding="utf-8")


def make_sample(
    source: Path, dest: Path, *, n_train: int = 360, n_test: int = 60, seed: int = 0, max_side: int = 320,
    quality: int = 80, include: tuple[str, ...] = DEFAULT_INCLUDE,
) -> dict[str, int]:
    """Writes the sample into ``dest`` (replacing its label files and data/); returns counts for the log."""
    full = load_lab_dataset(source, on_error="raise", check_images=False)
    train = sample_train(full.train, n_train, seed, include)
    test = [ex for i, ex in enumerate(full.test) if i < n_test or ex.guid in include]
    data_dir = dest / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    for ex in train + test:
        shutil.copyfile(ex.text_path, data_dir / f"{ex.guid}.txt")
        shrink_image(ex.image_path, data_dir / f"{ex.guid}.jpg", max_side, quality)
    write_labels(dest / "train.txt", [(ex.guid, ex.label or "") for ex in train])
    write_labels(dest / "test_without_label.txt", [(ex.guid, "null") for ex in test])
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    stats: dict[str, int] = {"train": len(train), "test": len(test), "bytes": size}
    stats.update({f"label_{k}": v for k, v in Counter(ex.label for ex in train).items()})
    stats.update({f"encoding_{k}": v for k, v in Counter(ex.text_encoding for ex in train + test).items()})
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="full dataset in lab format")
    parser.add_argument("dest", type=Path, help="output folder, e.g. src/mmsent/sample_data/lab")
    parser.add_argument("--n-train", type=int, default=360)
    parser.add_argument("--n-test", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args(argv)
    stats = make_sample(
        args.source, args.dest, n_train=args.n_train, n_test=args.n_test, seed=args.seed, max_side=args.max_side,
        quality=args.quality,
    )
    for key, value in sorted(stats.items()):
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
