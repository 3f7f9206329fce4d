"""Stratified, deterministic splits; CSV round trip; checks against the dataset."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from mmsent.data.records import Example
from mmsent.data.splits import Split, SplitError, check_split, kfold_splits, load_split, make_split, save_split


def examples(n_pos: int = 60, n_neg: int = 30, n_neu: int = 10) -> list[Example]:
    labels = ["positive"] * n_pos + ["negative"] * n_neg + ["neutral"] * n_neu
    # Interleave so that dataset order and label order differ.
    labels = labels[::2] + labels[1::2]
    return [Example(str(1000 + i), label, "", "utf-8", Path(f"{i}.jpg"), Path(f"{i}.txt")) for i, label in
            enumerate(labels)]


def label_counts(guids: list[str], data: list[Example]) -> Counter[str]:
    by_guid = {ex.guid: ex.label for ex in data}
    return Counter(by_guid[g] for g in guids)


def test_make_split_is_stratified_disjoint_and_complete() -> None:
    data = examples()
    split = make_split(data, val_fraction=0.2, seed=13)
    assert label_counts(split.val, data) == {"positive": 12, "negative": 6, "neutral": 2}
    assert len(split.train) == 80 and not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == sorted(ex.guid for ex in data)
    order = {ex.guid: i for i, ex in enumerate(data)}
    assert split.train == sorted(split.train, key=order.__getitem__)  # dataset order kept
    check_split(split, data)


def test_make_split_is_deterministic() -> None:
    data = examples()
    assert make_split(data, 0.2, seed=1) == make_split(list(data), 0.2, seed=1)
    assert make_split(data, 0.2, seed=1).val != make_split(data, 0.2, seed=2).val


def test_make_split_needs_labels_and_sane_fraction() -> None:
    data = examples()
    with pytest.raises(SplitError, match="no label"):
        make_split(data + [Example("x", None, "", "utf-8", Path("x.jpg"), Path("x.txt"))], 0.2, 0)
    with pytest.raises(SplitError, match="val_fraction"):
        make_split(data, 1.0, 0)
    with pytest.raises(SplitError, match="cannot stratify"):
        make_split(examples(5, 5, 1), 0.2, 0)


def test_kfold_partitions_the_data() -> None:
    data = examples()
    folds = kfold_splits(data, k=5, seed=0)
    assert [f.fold for f in folds] == [0, 1, 2, 3, 4] and all(f.val_fraction == 0.2 for f in folds)
    all_val = [g for f in folds for g in f.val]
    assert sorted(all_val) == sorted(ex.guid for ex in data)
    for fold in folds:
        check_split(fold, data)
        assert label_counts(fold.val, data) == {"positive": 12, "negative": 6, "neutral": 2}
    assert kfold_splits(data, k=5, seed=0) == folds
    with pytest.raises(SplitError, match="k >= 2"):
        kfold_splits(data, k=1, seed=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    split = make_split(examples(), 0.15, seed=7)
    save_split(split, tmp_path / "split.csv")
    lines = (tmp_path / "split.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# mmsent split: seed=7 val_fraction=0.15"
    assert lines[2] == "guid,split" and lines[3].endswith(",train") and lines[-1].endswith(",val")
    assert load_split(tmp_path / "split.csv") == split
    fold = kfold_splits(examples(), 4, seed=3)[2]
    save_split(fold, tmp_path / "fold.csv")
    assert load_split(tmp_path / "fold.csv") == fold


def test_load_split_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("# mmsent split: seed=1 val_fraction=0.2\nguid,split\n1,train\n2,test\n", encoding="utf-8")
    with pytest.raises(SplitError, match=r"split\.csv:4: expected 'guid,train' or 'guid,val'"):
        load_split(path)
    path.write_text("guid,split\n1,train\n", encoding="utf-8")
    with pytest.raises(SplitError, match="seed=... val_fraction"):
        load_split(path)


def test_check_split_reports_each_problem() -> None:
    data = examples()
    good = make_split(data, 0.2, seed=0)
    overlap = Split(train=good.train + good.val[:1], val=good.val, seed=0, val_fraction=0.2)
    with pytest.raises(SplitError, match=f"1 guid\\(s\\) in both train and val: {good.val[0]}"):
        check_split(overlap, data)
    unknown = Split(train=good.train + ["nope"], val=good.val, seed=0, val_fraction=0.2)
    with pytest.raises(SplitError, match="not in the dataset: nope"):
        check_split(unknown, data)
    missing = Split(train=good.train[1:], val=good.val, seed=0, val_fraction=0.2)
    with pytest.raises(SplitError, match=f"not in the split: {good.train[0]}"):
        check_split(missing, data)


def test_kfold_uses_k_and_names_the_counts_when_it_cannot_stratify() -> None:
    assert len(kfold_splits(examples(), k=2, seed=0)) == 2 and len(kfold_splits(examples(), k=3, seed=0)) == 3
    with pytest.raises(SplitError, match=r"^cannot stratify 14 rows into 5 part\(s\) with label counts "
                                         r"\{'negative': 5, 'neutral': 1, 'positive': 8\}: fewer rows than folds for "
                                         r"\{'neutral': 1\}; use fewer folds$"):
        kfold_splits(examples(8, 5, 1), k=5, seed=0)


def test_load_split_reads_a_bom_spaces_and_comments_around_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("\ufeff# mmsent split: seed=3 val_fraction=0.25 fold=1 note=a=b\n#another comment\n\n"
                    " guid , split \n a , train\nb,val\n", encoding="utf-8")
    assert load_split(path) == Split(train=["a"], val=["b"], seed=3, val_fraction=0.25, fold=1)


@pytest.mark.parametrize(("text", "line", "found"), [
    ("id,split\na,train\n", 2, "'id,split'"),
    ("guid,split\na,train,extra\n", 3, "'a,train,extra'"),
    ("guid,split\n,train\n", 3, "',train'"),
    ("guid,split\na,\n", 3, "'a,'"),
])
def test_load_split_names_the_line_and_what_it_found(tmp_path: Path, text, line, found) -> None:
    path = tmp_path / "split.csv"
    path.write_text("# mmsent split: seed=1 val_fraction=0.2\n" + text, encoding="utf-8")
    expected = "expected the header 'guid,split'" if "id,split" in found else "expected 'guid,train' or 'guid,val'"
    with pytest.raises(SplitError, match=f"^{re.escape(f'{path}:{line}: {expected}, found {found}')}$"):
        load_split(path)


def test_rows_without_label_or_with_a_repeated_guid_are_named() -> None:
    data = examples(6, 3, 3)
    unlabelled = [Example(g, None, "", "utf-8", Path("x.jpg"), Path("x.txt")) for g in ("u1", "u2")]
    with pytest.raises(SplitError, match=r"^cannot stratify: 2 row\(s\) have no label, e\.g\. u1, u2$"):
        make_split(data + unlabelled, 0.2, 0)
    twice = data + [data[0], data[1]]  # exactly two of each: still repeated
    with pytest.raises(SplitError, match=r"^2 guid\(s\) appear more than once in the dataset: 1000, 1001$"):
        make_split(twice, 0.2, 0)
    with pytest.raises(SplitError, match=r"^2 guid\(s\) appear more than once in the dataset: 1000, 1001$"):
        kfold_splits(twice, 2, 0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_make_split_names_a_fraction_outside_zero_and_one(fraction) -> None:
    with pytest.raises(SplitError, match=f"^val_fraction must be between 0 and 1 \\(exclusive\\), got {fraction}$"):
        make_split(examples(), fraction, 0)


def test_make_split_names_the_counts_when_it_cannot_stratify() -> None:
    with pytest.raises(SplitError, match=r"^cannot stratify 11 rows into 2 part\(s\) with label counts \{'negative': "
                                         r"5, 'neutral': 1, 'positive': 5\}: The least populated class.* 1 member"):
        make_split(examples(5, 5, 1), 0.2, 0)


def test_save_split_creates_its_folders(tmp_path: Path) -> None:
    split = make_split(examples(), 0.2, seed=1)
    save_split(split, tmp_path / "a" / "b" / "split.csv")
    assert load_split(tmp_path / "a" / "b" / "split.csv") == split


def test_check_split_message_lists_every_problem_then_the_fix() -> None:
    data = examples(6, 3, 3)
    good = make_split(data, 0.25, seed=0)
    bad = Split(train=good.train + good.train[:1] + ["x"], val=good.val + good.val[:1], seed=0, val_fraction=0.25)
    with pytest.raises(SplitError) as info:
        check_split(bad, data)
    assert str(info.value) == (
        "the split does not match the dataset:\n"
        f"  1 guid(s) repeated in train: {good.train[0]}\n"
        f"  1 guid(s) repeated in val: {good.val[0]}\n"
        "  1 guid(s) not in the dataset: x\n"
        "The split was probably made for other data: delete the split file to make a new one.")
    many = Split(train=good.train, val=[], seed=0, val_fraction=0.25)
    with pytest.raises(SplitError, match=f"^the split does not match the dataset:\n  3 dataset guid\\(s\\) not in the "
                                         f"split: {', '.join(good.val)}\n"):
        check_split(many, data)


def test_load_split_reads_a_comment_without_a_space_after_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("#seed=3 val_fraction=0.25\nguid,split\na,train\nb,val\n", encoding="utf-8")
    assert load_split(path) == Split(train=["a"], val=["b"], seed=3, val_fraction=0.25, fold=None)


def test_load_split_names_a_bad_value_that_holds_an_equals_sign(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("# mmsent split: seed=3=4 val_fraction=0.25\nguid,split\na,train\n", encoding="utf-8")
    with pytest.raises(SplitError, match=re.escape("invalid literal for int() with base 10: '3=4'")):
        load_split(path)
