"""Safe image loading: modes, orientation, truncation, non-images, decompression-bomb limit, draft decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from data_helpers import call_unblocked, write_image
from PIL import Image, ImageFile

from mmsent.data.images import ImageLoadError, ImageTooLargeError, check_image, load_image, load_image_bytes


def truncated_copy(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.fixture
def noisy_jpeg(tmp_path: Path) -> Path:
    """A JPEG with enough entropy-coded data that cutting it in half loses pixel rows."""
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.jpg"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_plain_jpeg(tmp_path: Path) -> None:
    im = load_image(write_image(tmp_path / "a.jpg", size=(40, 30)))
    assert im.mode == "RGB" and im.size == (40, 30)
    assert check_image(tmp_path / "a.jpg") is None


@pytest.mark.parametrize("load_truncated_flag", [False, True])
def test_truncated_jpeg(noisy_jpeg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        load_truncated_flag: bool) -> None:
    # Even when some other code has told PIL to pad truncated files, the loader must refuse them.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated_flag)
    bad = truncated_copy(noisy_jpeg, tmp_path / "cut.jpg")
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(bad)
    assert info.value.path == bad and str(bad) in str(info.value)
    assert "truncated" in (check_image(bad) or "")


@pytest.mark.parametrize("load_truncated_flag", [False, True])
def test_truncated_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_truncated_flag: bool) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated_flag)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    bad = truncated_copy(tmp_path / "a.png", tmp_path / "cut.png")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(bad)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_image(tmp_path / "empty.jpg")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "page.jpg").write_bytes(b"<html><body>404 Not Found</body></html>")
    assert "not an image" in (check_image(tmp_path / "page.jpg") or "")


def test_missing_file(tmp_path: Path) -> None:
    assert check_image(tmp_path / "nope.jpg") == "file not found"


def test_png_named_jpg_loads(tmp_path: Path) -> None:
    path = write_image(tmp_path / "really_png.jpg", size=(20, 10), color=(10, 200, 30), fmt="PNG")
    assert path.read_bytes()[:4] == b"\x89PNG"
    im = load_image(path)
    assert im.mode == "RGB" and im.getpixel((15, 5)) == (10, 200, 30)


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # pure red in CMYK
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15


def test_16bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 64, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    im = load_image(tmp_path / "g16.png")
    assert [im.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (64, 64, 64), (128, 128, 128), (255, 255, 255)]


def test_32bit_int_mode(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 65535]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    im = load_image(tmp_path / "i.tif")
    assert im.getpixel((0, 0)) == (0, 0, 0) and im.getpixel((1, 0)) == (255, 255, 255)


def grey_levels(path: Path) -> list[int]:
    """The loaded image's grey level per pixel, row by row (every pixel must be grey)."""
    im = load_image(path)
    pixels = np.asarray(im)
    assert im.mode == "RGB" and (pixels == pixels[..., :1]).all()
    return pixels[..., 0].ravel().tolist()


def save_array(tmp_path: Path, values: np.ndarray, name: str = "deep.tif") -> Path:
    Image.fromarray(values).save(tmp_path / name)
    return tmp_path / name


def test_16bit_inside_the_range_keeps_its_scale(tmp_path: Path) -> None:
    # Scaled by 255/65535, not stretched to the image's own maximum; 33025/257 = 128.502 rounds up (by 65536 it
    # would be 128.4999).
    path = save_array(tmp_path, np.array([[0, 1000, 33025]], dtype=np.uint16), "g16.png")
    assert grey_levels(path) == [0, 4, 129]


def test_16bit_inside_the_range_from_a_non_zero_floor(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.array([[5, 33025, 65535]], dtype=np.uint16), "g16.png")
    assert grey_levels(path) == [0, 129, 255]


def test_float_image_in_unit_range(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.array([[0.0, 0.25, 1.0, np.nan]], dtype=np.float32))
    assert Image.open(path).mode == "F"
    assert grey_levels(path) == [0, 64, 255, 0]  # NaN is black


def test_float_image_reaching_one_from_above_zero(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.array([[0.2, 0.6, 1.0]], dtype=np.float32))
    assert grey_levels(path) == [51, 153, 255]


def test_float_image_outside_unit_range_is_stretched(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.array([[0.0, 1.0, 3.0, 4.0]], dtype=np.float32))
    assert grey_levels(path) == [0, 64, 191, 255]


def test_negative_int_image_is_stretched(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.array([[-100, -50, 100]], dtype=np.int32))
    assert Image.open(path).mode == "I"
    assert grey_levels(path) == [0, 64, 255]


def test_constant_image_outside_the_range_is_black(tmp_path: Path) -> None:
    path = save_array(tmp_path, np.full((2, 3), -5, dtype=np.int32))
    assert grey_levels(path) == [0] * 6


def test_tall_16bit_image_is_converted_in_every_row_block(tmp_path: Path) -> None:
    # 600 rows: three blocks of 256 rows, the last one partial; every row a different level.
    rows = (np.arange(600, dtype=np.uint32) * 109 % 65536).astype(np.uint16)
    values = np.repeat(rows[:, None], 3, axis=1)
    levels = np.array(grey_levels(save_array(tmp_path, values, "tall.png"))).reshape(600, 3)
    expected = np.rint(rows.astype(np.float64) * 255 / 65535).astype(int)
    assert (levels == expected[:, None]).all()


def test_rgb_image_is_returned_without_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "a.png", fmt="PNG")
    monkeypatch.setattr(Image.Image, "convert", lambda *a, **k: pytest.fail("an RGB image was converted"))
    assert load_image(path).mode == "RGB"


def test_palette_with_transparency_on_white(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (200, 0, 0)


def test_palette_without_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    im.save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").getpixel((1, 1)) == (0, 0, 200)


@pytest.mark.parametrize(("mode", "color", "expected"), [
    ("RGBA", (255, 0, 0, 0), (255, 255, 255)),
    ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
    ("LA", (0, 128), (127, 127, 127)),  # black at alpha 128/255 over white
    ("L", 77, (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
])
def test_other_modes(tmp_path: Path, mode: str, color: object, expected: tuple[int, int, int]) -> None:
    Image.new(mode, (4, 4), color).save(tmp_path / "m.png")  # type: ignore[arg-type]
    assert load_image(tmp_path / "m.png").getpixel((2, 2)) == expected


def test_exif_rotation_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: display rotated 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50  # the left half ends up on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", size=(100, 80))
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path, max_pixels=5000)
    assert str(info.value) == (f"{path}: image has 8,000 pixels (100x80), over the decompression-bomb limit of "
                               "5,000; if the file is genuine, raise data.max_image_pixels")
    assert load_image(path, max_pixels=8000).size == (100, 80)
    assert "data.max_image_pixels" in (check_image(path, max_pixels=100) or "")


def test_raised_limit_overrides_pil_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "big.jpg", size=(100, 80))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)  # PIL's own limit (2x1000 < 8000) applies when none is given
    # PIL refuses before the size is known to us: no dimensions in the message
    assert str(info.value) == (f"{path}: image has 8,000 pixels, over the decompression-bomb limit of 1,000; if the "
                               "file is genuine, raise data.max_image_pixels")
    assert load_image(path, max_pixels=10_000).size == (100, 80)


def test_min_side_decodes_jpeg_at_reduced_scale(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", size=(800, 600))
    assert load_image(path, min_side=100).size == (200, 150)  # 1/4 scale keeps the shorter side >= 100
    assert load_image(path, min_side=150).size == (200, 150)
    assert load_image(path, min_side=151).size == (400, 300)
    assert load_image(path, min_side=1000).size == (800, 600)  # never upsampled


def test_min_side_ignored_for_png(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", size=(800, 600), fmt="PNG")
    assert load_image(path, min_side=100).size == (800, 600)


def test_a_path_that_cannot_be_read_is_named_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "looks.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError) as info:
        load_image(folder)
    assert (info.value.path, info.value.reason) == (folder, "not a regular file but a folder")
    assert str(info.value) == f"{folder}: not a regular file but a folder"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_device_named_as_an_image_is_refused_without_blocking(tmp_path: Path) -> None:
    # the probe: a FIFO given as an image path hung the whole job
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO (named pipe)"), (Path("/dev/zero"), "a device")):
        with pytest.raises(ImageLoadError) as info:
            call_unblocked(lambda p=path: load_image(p), [fifo])
        assert info.value.reason == f"not a regular file but {kind}"
        assert check_image(path) == f"not a regular file but {kind}"


def _png(*chunks: tuple[bytes, bytes]) -> bytes:
    import struct
    import zlib

    out = b"\x89PNG\r\n\x1a\n"
    for kind, data in chunks:
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return out


def test_broken_headers_and_undecodable_data_are_named_exactly() -> None:
    import struct

    bmp = b"BM" + b"\0" * 12 + struct.pack("<IiiHH", 40, 4, 4, 1, 99) + b"\0" * 24
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(bmp, name="up.bmp")
    assert str(info.value) == "up.bmp: broken image header: OSError: Unsupported BMP pixel depth (99)"
    assert info.value.path == Path("up.bmp")
    png = _png((b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)), (b"IDAT", b"\x78\x9c" + b"\xff" * 20),
               (b"IEND", b""))
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(png)
    assert str(info.value) == "<bytes>: cannot decode image: OSError: broken data stream when reading image file"


def test_an_image_between_pils_limit_and_twice_it_is_refused_with_its_size(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = write_image(tmp_path / "a.jpg", size=(50, 30)).read_bytes()  # 1,500 pixels: PIL only warns
    with pytest.raises(ImageTooLargeError) as info:
        load_image_bytes(data)
    assert info.value.reason == ("image has 1,500 pixels (50x30), over the decompression-bomb limit of 1,000; if "
                                 "the file is genuine, raise data.max_image_pixels")
    big = write_image(tmp_path / "b.jpg", size=(100, 80)).read_bytes()  # over twice PIL's limit: PIL refuses
    with pytest.raises(ImageTooLargeError) as info:
        load_image_bytes(big, max_pixels=500)
    assert info.value.reason.endswith("over the decompression-bomb limit of 500; if the file is genuine, raise "
                                      "data.max_image_pixels")


def test_a_raised_limit_is_raised_for_pil_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    load_image_bytes(write_image(tmp_path / "a.jpg", size=(100, 80)).read_bytes(), max_pixels=9000)
    assert Image.MAX_IMAGE_PIXELS == 9000  # raised, never removed or lowered


def test_empty_bytes_are_named_by_default_and_a_tiny_jpeg_decodes_at_its_smallest_scale(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(b"")
    assert str(info.value) == "<bytes>: empty file (0 bytes)"
    assert load_image(write_image(tmp_path / "t.jpg", size=(8, 8)), min_side=1).size == (1, 1)


def test_an_unreadable_exif_block_is_logged_and_the_image_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from PIL import ImageOps

    def broken(im):
        raise ValueError("bad EXIF block")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with caplog.at_level("WARNING", logger="mmsent.data"):
        im = load_image_bytes(write_image(tmp_path / "a.jpg").read_bytes(), name="a.jpg")
    assert im.size == (48, 32)
    assert [r.getMessage() for r in caplog.records] == ["a.jpg: ignoring unreadable EXIF orientation (bad EXIF block)"]


def test_a_mode_that_cannot_become_rgb_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    im.save(tmp_path / "p.png")
    monkeypatch.setattr(Image.Image, "convert", lambda self, *a, **k: (_ for _ in ()).throw(ValueError("no way")))
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes((tmp_path / "p.png").read_bytes(), name="p.png")
    assert str(info.value) == "p.png: cannot convert mode P to RGB: no way"
