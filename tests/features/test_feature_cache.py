"""FeatureCache: layout, round trip, atomicity leftovers and damaged entries."""

from __future__ import annotations

import json
import logging

import torch

from mmsent.features.cache import FeatureCache
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


def test_nan_in_an_entry_without_checksum_is_caught(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = "fd" * 32
    path = cache.put("text", key, ["a", "b", "c"], _feats(), fingerprint="x")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["sha256"]  # as entries written by earlier versions
    meta_path.write_text(json.dumps(meta))
    _overwrite_floats(path, float("nan"))
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
