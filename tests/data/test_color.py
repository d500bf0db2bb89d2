"""Colour conventions: full-range BT.601 round trips, MATLAB rgb2ycbcr values, chroma fusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlfuse.data.color import (
    colorize,
    fuse_chroma,
    matlab_uint8,
    pil_luma,
    rgb_to_ycbcr,
    rgb_to_ycbcr_matlab,
    ycbcr_to_rgb,
    ycbcr_to_rgb_matlab,
)

rgb_images = arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)))


@pytest.mark.parametrize("rgb,ycc", [
    ((255, 255, 255), (235, 128, 128)),
    ((0, 0, 0), (16, 128, 128)),
    ((255, 0, 0), (81, 90, 240)),
    ((0, 255, 0), (145, 54, 34)),
    ((0, 0, 255), (41, 240, 110)),
])
def test_matlab_rgb2ycbcr_values(rgb, ycc) -> None:
    out = rgb_to_ycbcr_matlab(np.array([[rgb]], np.uint8))
    assert tuple(int(c[0, 0]) for c in out) == ycc


def test_matlab_inverse_stretches_and_clips_like_the_authors_tool() -> None:
    y = np.array([[0, 16, 128, 235, 255]], np.float64)
    rgb = ycbcr_to_rgb_matlab(y, np.full_like(y, 128), np.full_like(y, 128))
    assert rgb[0, :, 0].tolist() == [0, 0, 130, 255, 255]  # 1.164 * (Y - 16), MATLAB-rounded


def test_matlab_rounding_is_half_away_from_zero() -> None:
    assert matlab_uint8(np.array([0.5, 1.5, 2.5, -0.5, 254.5, 300.0])).tolist() == [1, 2, 3, 0, 255, 255]


@settings(max_examples=200, deadline=None)
@given(rgb_images)
def test_full_range_round_trip_of_own_luma(rgb) -> None:
    """Fusing an image 'with itself' (its own luma back in) returns it within one level."""
    y, _, _ = rgb_to_ycbcr(rgb)
    out = colorize(np.rint(y).astype(np.uint8), [rgb], "ycbcr")
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 1


@settings(max_examples=200, deadline=None)
@given(rgb_images)
def test_full_range_inverse_is_exact_before_rounding(rgb) -> None:
    assert np.array_equal(ycbcr_to_rgb(*rgb_to_ycbcr(rgb)), rgb)


@settings(max_examples=100, deadline=None)
@given(rgb_images)
def test_pil_luma_matches_pillow(rgb) -> None:
    from PIL import Image

    assert np.array_equal(pil_luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


@given(st.floats(0, 255), st.floats(0, 255))
def test_chroma_fusion_properties(c1, c2) -> None:
    a, b = np.array([c1]), np.array([c2])
    f = fuse_chroma(a, b)
    assert f[0] == pytest.approx(fuse_chroma(b, a)[0])
    assert min(c1, c2) - 1e-9 <= f[0] <= max(c1, c2) + 1e-9
    assert fuse_chroma(a, np.array([128.0]))[0] == pytest.approx(c1)


def test_colorize_modes() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    assert colorize(y, [rgb], "gray") is y
    assert colorize(y, [], "ycbcr") is y
    paper = colorize(y, [rgb], "paper")
    _, cb, cr = rgb_to_ycbcr_matlab(rgb)
    assert np.array_equal(paper, ycbcr_to_rgb_matlab(y, cb, cr))
    gray_rgb = np.dstack([y, y, y])  # a neutral second source leaves the chroma of the first
    assert np.array_equal(colorize(y, [rgb, gray_rgb], "ycbcr"), colorize(y, [rgb], "ycbcr"))
    with pytest.raises(ValueError, match="unknown colour mode"):
        colorize(y, [rgb], "hsv")


def test_pil_luma_in_strips_matches_pillow_on_a_tall_image() -> None:
    from PIL import Image

    from mlfuse.data import gray

    rgb = np.random.default_rng(0).integers(0, 256, (2 * gray._LUMA_STRIP + 5, 7, 3), dtype=np.uint8)
    assert np.array_equal(pil_luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
