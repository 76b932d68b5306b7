"""Folders of PNG / JPEG / TIFF images as image series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isl_rt.errors import InputError
from isl_rt.io.images import discover_images, load_images, natural_key


def gray8(seed: int, shape: tuple[int, int] = (20, 30)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def only(root: Path):
    [ref] = discover_images(root)
    return ref


def test_8bit_gray_png_scaled_by_255(tmp_path):
    arrays = [gray8(i) for i in range(3)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"slice{i}.png")
    stack = load_images(only(tmp_path))
    assert stack.images.dtype == np.float32 and stack.images.flags.c_contiguous
    assert stack.images.shape == (3, 1, 20, 30)
    assert np.array_equal(stack.images[:, 0], np.stack(arrays).astype(np.float32) / 255)
    assert stack.bit_depth == 8


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_scaled_by_65535(tmp_path, suffix):
    a = np.random.default_rng(1).integers(0, 65536, (16, 12), dtype=np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    Image.fromarray(a).save(tmp_path / f"oct{suffix}")
    stack = load_images(only(tmp_path))
    assert stack.images.shape == (1, 1, 16, 12) and stack.bit_depth == 16
    assert np.allclose(stack.images[0, 0], a / 65535.0, atol=1e-7)
    assert stack.images[0, 0, 0, 0] == 0.0 and stack.images[0, 0, 0, 1] == 1.0


def test_rgb_and_rgba_give_three_channels_without_alpha(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    alpha = np.full((10, 14, 1), 7, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA").save(tmp_path / "b.png")
    stack = load_images(only(tmp_path))
    assert stack.images.shape == (2, 3, 10, 14)
    expected = np.moveaxis(rgb, -1, 0).astype(np.float32) / 255
    assert np.array_equal(stack.images[0], expected) and np.array_equal(stack.images[1], expected)


def test_jpeg_reads_in_range(tmp_path):
    Image.fromarray(gray8(3, (32, 32))).save(tmp_path / "x.jpg", quality=95)
    stack = load_images(only(tmp_path))
    assert stack.images.shape == (1, 1, 32, 32)
    assert 0.0 <= stack.images.min() and stack.images.max() <= 1.0
    assert np.abs(stack.images[0, 0] * 255 - gray8(3, (32, 32))).mean() < 20


def test_palette_images_convert_to_gray_or_rgb(tmp_path):
    gray = Image.fromarray(gray8(4)).convert("P")  # a gray palette
    gray.putpalette([v for i in range(256) for v in (i, i, i)])
    (tmp_path / "g").mkdir()
    gray.save(tmp_path / "g" / "p.png")
    colour = Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert("P")
    (tmp_path / "c").mkdir()
    colour.save(tmp_path / "c" / "p.png")
    stacks = {r.series_id: load_images(r) for r in discover_images(tmp_path)}
    assert stacks["g"].images.shape == (1, 1, 20, 30)
    assert np.array_equal(stacks["g"].images[0, 0], np.asarray(gray, dtype=np.float32) / 255)
    assert stacks["c"].images.shape == (1, 3, 20, 30)


def test_mismatched_sizes_name_the_offending_file(tmp_path):
    Image.fromarray(gray8(0, (20, 30))).save(tmp_path / "img1.png")
    Image.fromarray(gray8(1, (20, 30))).save(tmp_path / "img2.png")
    Image.fromarray(gray8(2, (21, 30))).save(tmp_path / "img10.png")
    with pytest.raises(InputError) as err:
        load_images(only(tmp_path))
    assert str(err.value) == (
        f"{tmp_path / 'img10.png'} is 30×21 with 1 channel(s) but img1.png is 30×20 with 1 channel(s); "
        "all images in a folder must share size and channel count."
    )


def test_mismatched_channels_are_an_error(tmp_path):
    Image.fromarray(gray8(0)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(InputError, match=r"b\.png is 30×20 with 3 channel"):
        load_images(only(tmp_path))


def test_unreadable_image_is_named(tmp_path):
    Image.fromarray(gray8(0)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not really a png")
    with pytest.raises(InputError, match=rf"^{tmp_path / 'b.png'} is not a readable image"):
        load_images(only(tmp_path))


def test_multipage_tiff_is_refused(tmp_path):
    pages = [Image.fromarray(gray8(i)) for i in range(2)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(InputError, match="holds 2 pages"):
        load_images(only(tmp_path))


def test_natural_order_and_series_ids(tmp_path):
    folder = tmp_path / "patient 1" / "OD scan"
    folder.mkdir(parents=True)
    for name in ["b10.png", "b2.png", "B1.png", "notes.txt", ".hidden.png"]:
        if name.endswith(".png"):
            Image.fromarray(gray8(int(name[1:-4]) if name[1:-4].isdigit() else 0)).save(folder / name)
        else:
            (folder / name).write_text("x")
    Image.fromarray(gray8(9)).save(tmp_path / "top.PNG")
    refs = discover_images(tmp_path)
    assert [r.series_id for r in refs] == [tmp_path.name, "patient_1__OD_scan"]  # root: its own name
    assert [p.name for p in refs[0].files] == ["top.PNG"]
    nested = refs[1]
    assert [p.name for p in nested.files] == ["B1.png", "b2.png", "b10.png"]
    assert load_images(nested).images[:, 0, 0, 0].tolist() == [gray8(i)[0, 0] / np.float32(255) for i in (1, 2, 10)]


def test_series_ids_that_collide_after_sanitising_stay_unique(tmp_path):
    for name in ("a b", "a_b"):
        (tmp_path / name).mkdir()
        Image.fromarray(gray8(0)).save(tmp_path / name / "x.png")
    assert [r.series_id for r in discover_images(tmp_path)] == ["a_b", "a_b-2"]


def test_natural_key_orders_digit_runs_by_value():
    names = ["s10", "s9", "s1", "t", "s01", "10", "2"]
    assert sorted(names, key=natural_key) == ["2", "10", "s01", "s1", "s9", "s10", "t"]


def test_missing_root_raises(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_images(tmp_path / "nope")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width×height 8-bit gray pixels, with one tiny IDAT (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(60000, 60000), (10000, 10000), (3000, 100)])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, width, height):
    """60000² raised Pillow's DecompressionBombError (a traceback), 10000² only warned and then
    decoded 100 megapixels into 400 MB of float32."""
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "000.png").write_bytes(_png_header_only(width, height))
    [ref] = discover_images(tmp_path)
    with pytest.raises(InputError, match="pixels"):
        load_images(ref)


def test_special_files_named_like_images_are_ignored(tmp_path):
    import os

    Image.fromarray(gray8(0)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")  # opening it would block
    assert [p.name for p in only(tmp_path).files] == ["a.png"]
