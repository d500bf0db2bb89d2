"""Liu-toolbox SSIM-based metrics (``mlfuse.metrics.piella``): every reference cell of liu.Qs, liu.Qw,
liu.Qe, liu.Qc and liu.Qy (NaN cells included), plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.errors import InputError
from mlfuse.metrics import piella as P

from .conftest import assert_close, reference_cases

COLUMNS = {"liu.Qs": P.qs, "liu.Qw": P.qw, "liu.Qe": P.qe, "liu.Qc": P.qc, "liu.Qy": P.qy}


@pytest.mark.parametrize("tid,ref", reference_cases(*COLUMNS))
def test_reference_cells(tid, ref, triple) -> None:
    """One triple, every column: 1e-6 relative; NaN exactly where the reference is NaN."""
    f, a, b = (x.astype(np.float64) for x in triple)
    for column, fn in COLUMNS.items():
        if column in ref:
            got = fn(f, a, b)
            assert isinstance(got, float), column
            assert_close(got, ref[column], rel=1e-6, what=f"{tid} {column}")


# ----------------------------------------------------------------------------------------------- properties

def _textured(shape=(64, 80), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    img = 120 + 60 * np.sin(x / 5.0 + seed) * np.cos(y / 7.0) + rng.normal(0, 12, shape)
    return np.clip(np.round(img), 0, 255)


@pytest.mark.parametrize("name", list(COLUMNS))
def test_identical_images_score_one(name) -> None:
    x = _textured()
    assert COLUMNS[name](x, x, x) == pytest.approx(1.0, abs=1e-12)
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    assert COLUMNS[name](f, a, b) < 0.99


@pytest.mark.parametrize("name", list(COLUMNS))
def test_source_order_and_dtype(name) -> None:
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    v = COLUMNS[name](f, a, b)
    if name == "liu.Qc":
        # not symmetric: windows with lambda = sigma_AF / (sigma_AF + sigma_BF) < 0 score 0, > 1 score 1, and
        # swapping A and B maps lambda to 1 - lambda
        assert abs(v - P.qc(f, b, a)) > 1e-3
    else:
        assert COLUMNS[name](f, b, a) == pytest.approx(v, rel=1e-12)
    # uint8 input of the same values gives the same number
    assert COLUMNS[name](*(x.astype(np.uint8) for x in (f, a, b))) == v


def test_flat_black_windows_give_nan_for_qy_and_qc_only() -> None:
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    f[10:30, 20:40] = 0  # black fused patch: sigma_AF = sigma_BF = 0 exactly, Qc's lambda is 0/0
    assert math.isnan(P.qc(f, a, b))
    assert math.isfinite(P.qy(f, a, b))  # Qy's lambda comes from A and B
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    a[10:30, 20:40] = 0  # black in both sources: sigma_A^2 = sigma_B^2 = 0 (Qy's lambda is 0/0) and
    b[10:30, 20:40] = 0  # sigma_AF = sigma_BF = 0 (Qc's lambda is 0/0)
    assert math.isnan(P.qy(f, a, b))
    assert math.isnan(P.qc(f, a, b))
    for fn in (P.qs, P.qw, P.qe):  # Piella's lambda is 0.5 where both variances are exactly 0
        assert math.isfinite(fn(f, a, b))
    a = _textured(seed=1)  # black in only one source: lambda = 1 there, no 0/0
    assert math.isfinite(P.qy(f, a, b))


def test_flat_grey_windows_follow_the_reference_summation() -> None:
    """On a flat non-zero patch the statistics are rounding noise; those windows are recomputed in the
    reference's summation order, so the value does not depend on the separable fast path."""
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    b[5:40, 10:50] = 255  # saturated source: sigma_BF is 0 up to rounding, lambda ~ 1 +- noise
    fast = P._Moments(f, a, b, 7, lambda m, t: [])
    exact = P._Moments(f, a, b, 7, P._qc_sensitive)
    flat = slice(5, 40 - 6), slice(10, 50 - 6)  # valid windows inside the patch
    assert np.all(np.abs(fast.cfb[flat]) < 1e-9) and np.all(np.abs(exact.cfb[flat]) < 1e-9)
    # the recomputed moments are the reference-order sums at those windows, the others untouched
    h = P._fspecial_gaussian(7, 1.5)
    rows, cols = np.nonzero(np.abs(fast.cfb) < 1e-6)
    assert rows.size >= (40 - 6 - 5) * (50 - 6 - 10)
    for p in (0, 2, 7):  # F, B, F*B: the planes of sigma_BF
        plane = np.stack([f, a, b, f * f, a * a, b * b, f * a, f * b])[p]
        assert np.array_equal(exact.raw[p, rows, cols], P._correlate_valid_at(plane, h, rows, cols))
    untouched = np.ones(fast.cfb.shape, bool)
    untouched[rows, cols] = False
    assert np.array_equal(exact.raw[:, untouched], fast.raw[:, untouched])
    assert np.isfinite(P.qc(f, a, b))


def test_correlate_valid_at_order() -> None:
    """Reference order: kernel rows in turn; in a row ((t0 + t1) + t2) + t3, then one by one."""
    rng = np.random.default_rng(3)
    x = rng.random((20, 24)) * 1e3
    h = P._fspecial_gaussian(11, 1.5)
    rows, cols = np.array([0, 3, 9]), np.array([0, 13, 5])
    expected = []
    for r, c in zip(rows, cols, strict=True):
        s = 0.0
        for j in range(11):
            t = [h[j, k] * x[r + j, c + k] for k in range(11)]
            s += ((t[0] + t[1]) + t[2]) + t[3]
            s += ((t[4] + t[5]) + t[6]) + t[7]
            for k in (8, 9, 10):
                s += t[k]
        expected.append(s)
    assert P._correlate_valid_at(x, h, rows, cols).tolist() == expected


def test_input_validation() -> None:
    x = _textured()
    with pytest.raises(InputError, match="size mismatch"):
        P.qs(x, x[:, :-1], x)
    with pytest.raises(InputError, match="smaller"):
        P.qy(x[:10, :10], x[:10, :10], x[:10, :10])
