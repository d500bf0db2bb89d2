"""Bad and unusual inputs: each gives one clear line naming the file, or is read correctly."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mlfuse.data.io import from_array, read_image, write_image
from mlfuse.errors import InputError, OutputError


def _png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _one_line_naming(err: pytest.ExceptionInfo, path: Path, words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    assert words in msg, msg


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "nope.png")
    _one_line_naming(err, tmp_path / "nope.png", "no such file")


def test_zero_byte_file(tmp_path) -> None:
    p = tmp_path / "empty.png"
    p.touch()
    with pytest.raises(InputError) as err:
        read_image(p)
    _one_line_naming(err, p, "empty file (0 bytes)")


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_images(tmp_path, rgb, fmt, ext) -> None:
    data = _png_bytes(rgb, fmt)
    p = tmp_path / f"cut.{ext}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_image(p)
    _one_line_naming(err, p, "truncated or corrupt")


def test_text_file_named_png(tmp_path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    with pytest.raises(InputError) as err:
        read_image(p)
    _one_line_naming(err, p, "not an image file")


def test_folder_given_as_image(tmp_path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_gray_is_scaled_by_dtype_max_not_clipped(tmp_path, ext) -> None:
    arr = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16).repeat(3, axis=0)
    p = tmp_path / f"deep.{ext}"
    PILImage.fromarray(arr).save(p)
    im = read_image(p)
    assert im.maxval == 65535 and im.pixels.dtype == np.uint16
    np.testing.assert_allclose(im.gray()[0], arr[0] / 65535, rtol=0, atol=1e-7)
    assert 0.6 < im.gray()[0, 2] < 0.62  # 40000/65535, not clipped to 1


def test_rgba_drops_alpha(tmp_path, rgb) -> None:
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    p = tmp_path / "a.png"
    PILImage.fromarray(rgba, "RGBA").save(p)
    im = read_image(p)
    assert im.is_color and np.array_equal(im.pixels, rgb)


def test_palette_image(tmp_path, rgb) -> None:
    p = tmp_path / "pal.png"
    PILImage.fromarray(rgb).quantize(16).save(p)
    im = read_image(p)
    expected = np.asarray(PILImage.open(p).convert("RGB"))
    assert np.array_equal(im.pixels, expected)


def test_gray_content_rgb_is_gray(tmp_path) -> None:
    g = np.arange(60, dtype=np.uint8).reshape(6, 10)
    p = tmp_path / "g.png"
    PILImage.fromarray(np.dstack([g, g, g])).save(p)
    im = read_image(p)
    assert not im.is_color and np.array_equal(im.pixels, g)


def test_rgb_luma_is_pil_convert_L(tmp_path, rgb) -> None:
    p = tmp_path / "c.png"
    PILImage.fromarray(rgb).save(p)
    expected = np.asarray(PILImage.open(p).convert("L"), dtype=np.float32) / 255
    assert np.array_equal(read_image(p).gray(), expected)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
def test_tiny_images_read(tmp_path, shape) -> None:
    p = tmp_path / "tiny.png"
    PILImage.fromarray(np.full(shape, 9, np.uint8)).save(p)
    assert read_image(p).size == shape


def test_float_arrays_must_declare_range() -> None:
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        from_array(np.full((4, 4), 200.0))
    with pytest.raises(InputError, match="NaN"):
        from_array(np.full((4, 4), np.nan))
    with pytest.raises(InputError, match="unsupported pixel type int64"):
        from_array(np.zeros((4, 4), np.int64))
    with pytest.raises(InputError, match="expected an H x W"):
        from_array(np.zeros((4, 4, 2), np.uint8))
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(from_array(k / 255.0).gray(), from_array(k).gray())


def test_write_refuses_existing_and_is_atomic(tmp_path) -> None:
    p = tmp_path / "out.png"
    p.write_bytes(b"precious")
    with pytest.raises(OutputError) as err:
        write_image(np.zeros((4, 4), np.uint8), p)
    _one_line_naming(err, p, "already exists (pass --overwrite")
    assert p.read_bytes() == b"precious"
    write_image(np.full((4, 4), 3, np.uint8), p, overwrite=True)
    assert np.asarray(PILImage.open(p)).max() == 3
    assert [q.name for q in tmp_path.iterdir()] == ["out.png"], "no temp file left behind"
    mode = p.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def _unwritable_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    if not os.access(d, os.W_OK):
        return d
    return Path("/sys")  # root ignores permission bits; sysfs refuses new files even to root


def test_unwritable_output_dir(tmp_path) -> None:
    d = _unwritable_dir(tmp_path)
    with pytest.raises(OutputError) as err:
        write_image(np.zeros((4, 4), np.uint8), d / "out.png")
    _one_line_naming(err, d, "cannot")


def test_output_under_a_file(tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        write_image(np.zeros((4, 4), np.uint8), f / "sub" / "out.png")


def test_unknown_output_format(tmp_path) -> None:
    with pytest.raises(OutputError, match=r"unknown output image format '\.xyz'"):
        write_image(np.zeros((4, 4), np.uint8), tmp_path / "out.xyz")
