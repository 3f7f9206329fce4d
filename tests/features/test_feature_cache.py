"""FeatureCache: layout, round trip, atomicity leftovers and damaged entries."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from mmsent.features.cache import CACHE_FORMAT, FeatureCache, rows_digest
from mmsent.features.featureset import ModalityFeatures
from mmsent.fingerprint import file_digest


def _feats(n: int = 3, t: int = 4, d: int = 5) -> ModalityFeatures:
    torch.manual_seed(0)
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[0, 2:] = False
    return ModalityFeatures(torch.randn(n, d), torch.randn(n, t, d) * 100, mask)


def test_put_get_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path)
    f = _feats()
    key = "ab" + "0" * 62
    path = cache.put("text", key, ["a", "b", "c"], f, fingerprint="enc|v1", item_ids=["x", "y", "z"])
    assert path == tmp_path / "text" / "ab" / f"{key}.safetensors" and path.exists()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["guids"] == ["a", "b", "c"] and meta["fingerprint"] == "enc|v1" and meta["created"]
    assert meta["shapes"] == {"pooled": [3, 5], "tokens": [3, 4, 5], "mask": [3, 4]}
    assert meta["dtypes"]["tokens"] == "float16" and meta["dtypes"]["pooled"] == "float32"
    assert not list(path.parent.glob("*.tmp"))  # no temp files left behind

    guids, got = cache.get("text", key)
    assert guids == ["a", "b", "c"]
    assert torch.equal(got.pooled, f.pooled)  # pooled kept in full precision
    assert got.tokens.dtype == torch.float32
    assert torch.allclose(got.tokens, f.tokens, rtol=1e-3, atol=1e-3)  # stored as float16
    assert torch.equal(got.mask, f.mask)
    assert cache.get("text", "cd" + "0" * 62) is None
    assert cache.get("image", key) is None  # modalities are separate
    assert [m["key"] for m in cache.entries("text")] == [key]
    assert cache.clear() == 1 and cache.get("text", key) is None


def test_corrupt_entry_is_dropped_not_raised(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "ff" * 32
    path = cache.put("image", key, ["a", "b", "c"], _feats(), fingerprint="x")
    path.write_bytes(path.read_bytes()[:100])  # a partial write
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("image", key) is None
    assert "damaged" in caplog.text
    assert not path.exists() and not path.with_suffix(".json").exists()


def _overwrite_floats(path, value: float) -> None:
    """Overwrites two pooled values in place (header and shapes intact), as a disk fault or a tamperer would."""
    import struct

    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    start = 8 + header_len + json.loads(data[8:8 + header_len])["pooled"]["data_offsets"][0]
    data[start:start + 8] = struct.pack("<2f", value, value)
    path.write_bytes(bytes(data))


def test_changed_bytes_with_shapes_intact_are_caught_by_the_checksum(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "fe" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    assert json.loads(path.with_suffix(".json").read_text())["sha256"]
    _overwrite_floats(path, 0.5)  # finite values: only the checksum can tell
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert "checksum" in caplog.text and not path.exists()


@pytest.mark.parametrize("checksum", ["deleted", "null", "not-hex"])
def test_a_sidecar_without_its_checksum_is_damaged_not_trusted(tmp_path, caplog, checksum):
    cache = FeatureCache(tmp_path)
    key = "fd" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if checksum == "deleted":
        del meta["sha256"]  # deleting the field must not turn verification off
    else:
        meta["sha256"] = None if checksum == "null" else "not a digest"
    meta_path.write_text(json.dumps(meta))
    _overwrite_floats(path, 0.5)  # finite values: only the checksum could tell
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert caplog.records[-1].getMessage() == (f"feature cache entry text/{key} is damaged (the sidecar holds no "
                                               "sha256 of the tensor file); removing it and recomputing")
    assert not path.exists() and not meta_path.exists()


EDITS = {
    "guids reordered": (lambda m: m.update(guids=m["guids"][::-1]),
                        "the sidecar's guids or content ids are not the rows the tensors were written for"),
    "content ids reordered": (lambda m: m.update(item_ids=m["item_ids"][::-1]),
                              "the sidecar's guids or content ids are not the rows the tensors were written for"),
    "content ids dropped": (lambda m: m.update(item_ids=None),
                            "the sidecar's guids or content ids are not the rows the tensors were written for"),
    "a guid renamed": (lambda m: m["guids"].__setitem__(0, "z"),
                       "the sidecar's guids or content ids are not the rows the tensors were written for"),
    "older format": (lambda m: m.update(format=1), "format 1, this version reads 2"),
    "format deleted": (lambda m: m.pop("format"), "format None, this version reads 2"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_row_mapping_cannot_move_features_onto_other_rows(tmp_path, caplog, edit):
    # The rows-by-content path reads the sidecar's item_ids to pick rows: an edit there would move every feature
    # onto another post while the tensor file's checksum still matched.
    cache = FeatureCache(tmp_path)
    key = "fc" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x", item_ids=["i1", "i2", "i3"])
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    change, reason = EDITS[edit]
    change(meta)
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert caplog.records[-1].getMessage() == (f"feature cache entry text/{key} is damaged ({reason}); removing it "
                                               "and recomputing")
    assert not path.exists() and not meta_path.exists()


def test_a_tensor_file_moved_under_another_key_is_damaged(tmp_path, caplog):
    # Both files of one entry copied under another key: checksum and rows agree, only the stamped key tells.
    cache = FeatureCache(tmp_path)
    first, second = "fa" * 32, "fb" * 32
    path = cache.put("text", first, ["a", "b", "c"], _feats(), fingerprint="x")
    target = cache.path_for("text", second)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    meta = json.loads(path.with_suffix(".json").read_text())
    target.with_suffix(".json").write_text(json.dumps({**meta, "key": second}))
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", second) is None
    assert f"the tensor file was written for key '{first}'" in caplog.records[-1].getMessage()
    assert cache.get("text", first) is not None


def test_the_rows_digest_covers_order_guids_and_content_ids():
    base = rows_digest(["a", "b"], ["1", "2"])
    assert base == rows_digest(["a", "b"], ["1", "2"]) and len(base) == 64
    assert len({base, rows_digest(["b", "a"], ["1", "2"]), rows_digest(["a", "b"], ["2", "1"]),
                rows_digest(["a", "b"], None), rows_digest(["a", "b", "c"], ["1", "2", ""])}) == 5


def test_nan_in_an_entry_whose_checksum_matches_is_caught(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "fd" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    _overwrite_floats(path, float("nan"))
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = file_digest(path, memo=False)  # as if the NaN had been written with the entry
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert "NaN" in caplog.text


def test_shape_mismatch_is_detected(tmp_path):
    cache = FeatureCache(tmp_path)
    key = "ee" * 32
    path = cache.put("image", key, ["a", "b", "c"], _feats(), fingerprint="x")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["guids"] = ["a", "b"]
    meta_path.write_text(json.dumps(meta))
    assert cache.get("image", key) is None


def test_entry_without_sidecar_is_incomplete(tmp_path):
    cache = FeatureCache(tmp_path)
    key = "dd" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    path.with_suffix(".json").unlink()
    assert cache.get("text", key) is None and cache.entries() == []


def test_file_digest_memo_follows_changes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"one")
    d1 = file_digest(p, "sha1")
    assert d1 == file_digest(p, "sha1")
    p.write_bytes(b"two!")
    assert file_digest(p, "sha1") != d1


# --- the sidecar's contract, and every way an entry can be damaged (each named in the warning) ---

def _write_raw(cache: FeatureCache, key: str, tensors: dict, guids: list[str], shapes=None, drop=()) -> None:
    """An entry written by hand (its checksum right), so that its tensors and sidecar can disagree in chosen ways."""
    from safetensors.torch import save_file

    tensor_path, meta_path = cache.path_for("text", key), cache.path_for("text", key).with_suffix(".json")
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tensor_path), metadata={"key": key, "rows": rows_digest(guids, None)})
    meta = {"format": CACHE_FORMAT, "modality": "text", "key": key, "guids": guids,
            "shapes": shapes if shapes is not None else {k: list(v.shape) for k, v in tensors.items()}}
    for name in drop:
        meta.pop(name) if name in meta else meta["shapes"].pop(name)
    meta["sha256"] = file_digest(tensor_path, memo=False)  # the checksum matches: the other checks must still run
    meta_path.write_text(json.dumps(meta))


def _tensors(n=2, t=3, d=4, **change):
    tensors = {"pooled": torch.zeros(n, d), "tokens": torch.zeros(n, t, d), "mask": torch.ones(n, t, dtype=torch.bool)}
    return {**tensors, **change}


DAMAGE = {
    "missing tensor": ({"tensors": {k: v for k, v in _tensors().items() if k != "mask"}}, "missing tensors ['mask']"),
    "no shapes in sidecar": ({"drop": ("shapes",)}, "pooled has shape [2, 4], sidecar says None"),
    "one shape missing": ({"drop": ("tokens",)}, "tokens has shape [2, 3, 4], sidecar says None"),
    "shape disagrees": ({"shapes": {"pooled": [2, 5], "tokens": [2, 3, 4], "mask": [2, 3]}},
                        "pooled has shape [2, 4], sidecar says [2, 5]"),
    "pooled rank": ({"tensors": _tensors(pooled=torch.zeros(2, 4, 1))}, "wrong tensor ranks"),
    "tokens rank": ({"tensors": _tensors(tokens=torch.zeros(2, 3))}, "wrong tensor ranks"),
    "mask rank": ({"tensors": _tensors(mask=torch.ones(2, 3, 1, dtype=torch.bool))}, "wrong tensor ranks"),
    "pooled rows": ({"tensors": _tensors(pooled=torch.zeros(3, 4))}, "row counts 3/2/2 != 2 guids"),
    "tokens rows": ({"tensors": _tensors(tokens=torch.zeros(3, 3, 4))}, "row counts 2/3/2 != 2 guids"),
    "mask rows": ({"tensors": _tensors(mask=torch.ones(3, 3, dtype=torch.bool))}, "row counts 2/2/3 != 2 guids"),
    "token width": ({"tensors": _tensors(tokens=torch.zeros(2, 3, 5))}, "tokens do not match pooled/mask"),
    "token count": ({"tensors": _tensors(mask=torch.ones(2, 4, dtype=torch.bool))}, "tokens do not match pooled/mask"),
    "infinite token": ({"tensors": _tensors(tokens=torch.full((2, 3, 4), float("inf")))},
                       "holds NaN or infinite values"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_kind_of_damage_is_named_in_the_warning_and_the_entry_removed(tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path)
    key = "ab" * 32
    kwargs, reason = DAMAGE[damage]
    _write_raw(cache, key, kwargs.get("tensors", _tensors()), ["a", "b"], kwargs.get("shapes"), kwargs.get("drop", ()))
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert caplog.records[-1].getMessage() == (f"feature cache entry text/{key} is damaged ({reason}); removing it "
                                               "and recomputing")
    assert not cache.path_for("text", key).exists() and not cache.path_for("text", key).with_suffix(".json").exists()


def test_the_checksum_warning_names_the_entry(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "fe" * 32
    _overwrite_floats(cache.put("image", key, ["a", "b", "c"], _feats(), fingerprint="x"), 0.5)
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("image", key) is None
    assert (f"feature cache entry image/{key} is damaged (tensor file changed since it was written (checksum "
            "mismatch)); removing it") in caplog.text


def test_a_sidecar_without_its_tensor_file_is_incomplete_not_damaged(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "dc" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="mmsent.features"):
        assert cache.get("text", key) is None
    assert caplog.text == "" and path.with_suffix(".json").exists()


@pytest.mark.parametrize(("modality", "key"), [("text", ""), ("text", "a/b"), ("text", "a\\b"), ("text", "..x"),
                                               ("te xt", "ab"), ("../text", "ab"), ("", "ab")])
def test_keys_and_modalities_that_could_leave_the_cache_folder_are_refused(tmp_path, modality, key):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"bad cache modality/key: {modality!r}/{key!r}")):
        cache.path_for(modality, key)


def test_put_refuses_rows_that_do_not_match_the_guids(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=re.escape("put: 3 feature rows, 2 guids, 0 item ids")):
        cache.put("text", "ab" * 32, ["a", "b"], _feats(), fingerprint="x")
    with pytest.raises(ValueError, match=re.escape("put: 3 feature rows, 3 guids, 2 item ids")):
        cache.put("text", "ab" * 32, ["a", "b", "c"], _feats(), fingerprint="x", item_ids=["p", "q"])
    assert cache.entries() == []


def test_put_stores_fixed_dtypes_clamped_tokens_and_the_whole_sidecar(tmp_path):
    from safetensors import safe_open

    cache = FeatureCache(tmp_path)
    key = "cd" * 32
    f = _feats()
    tokens = f.tokens.double()
    tokens[0, 0, 0], tokens[1, 0, 0] = 1e6, -1e6  # beyond float16
    wide = ModalityFeatures(f.pooled.double(), tokens, f.mask.long())
    path = cache.put("text", key, ["a", "b", "c"], wide, fingerprint="enc", config_key="cfg", item_ids=["x", "y", "z"],
                     extra={"backend": "torch"})
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == {"key": key, "rows": rows_digest(["a", "b", "c"], ["x", "y", "z"])}
        stored = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 - safe_open is not a dict
    assert {k: v.dtype for k, v in stored.items()} == {
        "pooled": torch.float32, "tokens": torch.float16, "mask": torch.bool}
    assert stored["tokens"][0, 0, 0] == 65504 and stored["tokens"][1, 0, 0] == -65504
    meta = cache.entries("text")[0]
    assert meta["config_key"] == "cfg" and meta["item_ids"] == ["x", "y", "z"] and meta["backend"] == "torch"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", meta["created"])
    assert meta["dtypes"] == {"pooled": "float32", "tokens": "float16", "mask": "bool"}


def test_entries_lists_complete_entries_of_the_modality_newest_first(tmp_path):
    cache = FeatureCache(tmp_path)
    for i, created in enumerate(["2024-01-02T00:00:00+0000", "2024-01-03T00:00:00+0000", "2024-01-01T00:00:00+0000"]):
        cache.put("text", f"{i}a" * 32, ["a", "b", "c"], _feats(), fingerprint="x", extra={"created": created})
    cache.put("image", "ee" * 32, ["a", "b", "c"], _feats(), fingerprint="x")
    # Entries that are not listed: no tensor file, a sidecar that is not JSON, not an object, or another format.
    for j, sidecar in enumerate(["{not json", "[1, 2]", json.dumps({"format": 0, "key": "old"})]):
        folder = tmp_path / "text" / f"z{j}"
        folder.mkdir()
        (folder / f"z{j}.json").write_text(sidecar)
        (folder / f"z{j}.safetensors").write_bytes(b"")
    orphan = cache.put("text", "9f" * 32, ["a", "b", "c"], _feats(), fingerprint="x")
    orphan.unlink()
    undated = cache.put("text", "8e" * 32, ["a", "b", "c"], _feats(), fingerprint="x").with_suffix(".json")
    undated.write_text(json.dumps({k: v for k, v in json.loads(undated.read_text()).items() if k != "created"}))
    listed = [m.get("created", "none")[:10] for m in cache.entries("text")]
    assert listed == ["2024-01-03", "2024-01-02", "2024-01-01", "none"]  # an undated (hand-edited) sidecar last
    assert [m["modality"] for m in cache.entries()].count("image") == 1 and len(cache.entries()) == 5
    assert cache.clear("image") == 1 and len(cache.entries()) == 4


def test_remove_drops_the_sidecar_first_and_accepts_a_missing_entry(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = "bb" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    removed: list[str] = []
    real_unlink = type(path).unlink
    monkeypatch.setattr(type(path), "unlink", lambda self, *a, **k: (removed.append(self.suffix), real_unlink(self)))
    cache.remove("text", key)
    assert removed == [".json", ".safetensors"]  # a half-removed entry is incomplete, never damaged
    cache.remove("text", key)  # nothing left: no error


def test_repr_and_path_for_show_where_the_cache_lives(tmp_path):
    cache = FeatureCache(tmp_path)
    assert repr(cache) == f"FeatureCache({str(tmp_path)!r})"
    assert cache.path_for("image", "ab12") == tmp_path / "image" / "ab" / "ab12.safetensors"
    assert cache.path_for("text", "XY") == tmp_path / "text" / "XY" / "XY.safetensors"
