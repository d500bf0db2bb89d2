"""The shared numeric primitives of the metrics (metrics/filters.py) and the one input validator."""

from __future__ import annotations

import numpy as np
import pytest

from mlfuse.errors import InputError
from mlfuse.metrics import piella
from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import (
    cv2_gaussian_kernel,
    fspecial_gaussian,
    gaussian_window_1d,
    matlab_round,
    sobel,
)


def test_fspecial_gaussian_is_matlabs_and_separable_where_used() -> None:
    h = fspecial_gaussian(11, 1.5)
    assert h.shape == (11, 11) and h.sum() == pytest.approx(1.0, abs=1e-15)
    assert np.array_equal(h, h.T) and np.array_equal(h, h[::-1, ::-1])
    np.testing.assert_allclose(h, np.outer(gaussian_window_1d(11, 1.5), gaussian_window_1d(11, 1.5)), rtol=1e-12)
    narrow = fspecial_gaussian(11, 0.5)  # corners fall below eps * max: fspecial zeroes them
    assert narrow[0, 0] == 0.0 and narrow[5, 5] > 0.6 and narrow.sum() == pytest.approx(1.0, abs=1e-15)
    assert not np.allclose(narrow, np.outer(gaussian_window_1d(11, 0.5), gaussian_window_1d(11, 0.5)), rtol=0, atol=0)


def test_cv2_kernel_is_float32_and_piella_window_is_fspecial_renormalised() -> None:
    k = cv2_gaussian_kernel(11, 1.5)
    assert k.dtype == np.float32 and k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k, gaussian_window_1d(11, 1.5), rtol=1e-6)
    h = fspecial_gaussian(7, 1.5)
    assert np.array_equal(piella._fspecial_gaussian(7, 1.5), h / h.sum())


def test_sobel_on_ramps_and_stacks() -> None:
    x = np.tile(np.arange(6.0) * 3, (5, 1))  # horizontal ramp, slope 3
    dx, dy = sobel(np.pad(x, 1, mode="edge"))
    assert dx.shape == dy.shape == x.shape
    assert np.all(dx[:, 1:-1] == 8 * 3) and np.all(dy == 0)
    sx, sy = sobel(np.pad(np.stack([x, x.T[:5, :5].repeat(2, 1)[:, :6]]), ((0, 0), (1, 1), (1, 1))))
    ex, ey = sobel(np.pad(x, 1))
    assert np.array_equal(sx[0], ex) and np.array_equal(sy[0], ey)


def test_matlab_round_is_exact_half_away_from_zero() -> None:
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, -0.49999999999999994, 254.5])
    assert matlab_round(v).tolist() == [-3, -2, -1, 1, 2, 3, 0, 0, 255]
    assert np.floor(0.49999999999999994 + 0.5) == 1.0  # why it is not floor(x + 0.5)


def test_check_images_one_line_errors_and_dtypes() -> None:
    a = np.zeros((8, 8), np.float32)
    mismatch = r"^size mismatch: fused 8x8, A 8x8, B 9x8 \(W x H\); the images must have the same shape$"
    with pytest.raises(InputError, match=mismatch):
        check_images(a, a, np.zeros((8, 9)))
    with pytest.raises(InputError, match=r"^B: expected a 2-D gray image, got shape"):
        check_images(a, a, np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match=r"^A: unsupported pixel type complex128"):
        check_images(a, np.zeros((8, 8), complex), a)
    with pytest.raises(InputError, match=r"^8 x 8 pixels is smaller than the 11 x 11"):
        check_images(a, a, a, min_size=11)
    f, i, d = check_images(a, np.zeros((8, 8), np.uint8), np.zeros((8, 8)))
    assert (f.dtype, i.dtype, d.dtype) == (np.float32, np.float64, np.float64)
    assert all(x.dtype == np.float32 for x in check_images(a, a, dtype=np.float32, names=("ref", "dist")))
