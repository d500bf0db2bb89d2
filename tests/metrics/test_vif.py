"""VIF (``mlfuse.metrics.fidelity``): every reference cell of cddfuse.VIFF and tang.VIF, agreement with the
direct 2-D convolution version of benchmarks/naive_metrics.py, and properties."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import convolve2d

from mlfuse.metrics import fidelity as V

from .conftest import assert_close, reference_cases


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases("cddfuse.VIFF", "tang.VIF"))
def test_reference_columns(triple, tid, ref):
    assert ref, "no reference cells for this triple"
    # the Python Evaluator gets float32 (it works on float32 gray values), the MATLAB code float64
    for col, dt in (("cddfuse.VIFF", np.float32), ("tang.VIF", np.float64)):
        if col in ref:
            got = V.vif(*(x.astype(dt) for x in triple))
            assert isinstance(got, float), f"{col}: returned {type(got).__name__}, not float"
            assert_close(got, ref[col], rel=1e-6, what=col)


def _naive():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "naive_metrics.py"
    spec = importlib.util.spec_from_file_location("naive_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RNG = np.random.default_rng(5)
H, W = 64, 80
_Y, _X = np.mgrid[0:H, 0:W]
SMOOTH = np.round(120 + 60 * np.sin(_X / 7.0) * np.cos(_Y / 9.0))
SRC_A = np.clip(SMOOTH + RNG.integers(-15, 16, size=(H, W)), 0, 255)
SRC_B = np.where(_X < W // 2, 30.0, 200.0)  # flat halves: exercises the σ² < 1e-10 rules
FUSED = np.round((SRC_A + SRC_B) / 2)


def test_vif_equals_naive_convolve2d():
    naive = _naive()
    for f, a, b in [(FUSED, SRC_A, SRC_B), (SRC_A, FUSED, SRC_B)]:
        assert V.vif(f, a, b) == pytest.approx(naive.vif_naive(f, a, b), rel=1e-9, abs=0)


@pytest.mark.shared
@pytest.mark.parametrize("tid", ["TNO06_mean", "MRICT12_lapmax"])
def test_vif_equals_naive_on_a_crop(tid, triple):
    f, a, b = (x[60:124, 40:120].astype(np.float64) for x in triple)
    assert V.vif(f, a, b) == pytest.approx(_naive().vif_naive(f, a, b), rel=1e-9, abs=0)


def test_fspecial_rule_and_separable_window():
    for n in (17, 9, 5, 3):
        h = V.fspecial_gaussian(n, n / 5)
        assert h.sum() == pytest.approx(1.0, abs=1e-15)
        assert np.all(h > 0)  # σ = N/5: the eps·max rule never zeroes a value here
        assert np.allclose(np.outer(V._WINDOWS[(17, 9, 5, 3).index(n)], V._WINDOWS[(17, 9, 5, 3).index(n)]), h,
                           rtol=1e-13, atol=0)
    tiny = V.fspecial_gaussian(15, 0.5)  # narrow: far values fall below eps·max and are zeroed
    assert tiny[0, 0] == 0.0 and tiny.sum() == pytest.approx(1.0, abs=1e-15)


def test_separable_filter_matches_2d_valid_and_decimation():
    x = RNG.random((40, 45)) * 255
    for k in V._WINDOWS:
        full = convolve2d(x, np.outer(k, k), mode="valid")
        assert np.allclose(V._filter_valid(x, k), full, rtol=1e-13, atol=1e-11)
        # MATLAB x(1:2:end, 1:2:end) of the filtered image: 0-based even rows and columns
        assert np.allclose(V._filter_valid(x, k, step=2), full[::2, ::2], rtol=1e-13, atol=1e-11)


def test_vif_identity_symmetry_and_contrast():
    # an undistorted image: VIF(X -> X) = 1 for each source (to the 1e-10 sv² floor)
    assert V.vif(SRC_A, SRC_A, SRC_A) == pytest.approx(2.0, rel=1e-9)
    v = V.vif(FUSED, SRC_A, SRC_B)
    assert V.vif(FUSED, SRC_B, SRC_A) == pytest.approx(v, rel=1e-14)
    assert V.vif(FUSED.astype(np.float32), SRC_A.astype(np.uint8), SRC_B) == pytest.approx(v, rel=1e-14)
    # a common brightness shift leaves every variance and covariance unchanged
    assert V.vif(FUSED + 20, SRC_A + 20, SRC_B + 20) == pytest.approx(v, rel=1e-9)
    # VIF exceeds 1 for a contrast-enhanced copy and drops below 1 with added noise
    assert V.vif_pair(SRC_A, 1.5 * SRC_A) > 1.0
    assert V.vif_pair(SRC_A, SRC_A + RNG.normal(0, 10, size=SRC_A.shape)) < 1.0


def test_vif_depends_on_the_0_255_scale():
    # σn² = 2 is absolute: the same images on [0, 1] give a different value
    assert V.vif(FUSED / 255, SRC_A / 255, SRC_B / 255) != pytest.approx(V.vif(FUSED, SRC_A, SRC_B), rel=1e-3)


def test_small_images_drop_the_coarse_scales_like_matlab():
    # 30x30: scales 1 and 2 fit; at scale 3 the decimated image is 4x4, smaller than the 5x5 window.
    # MATLAB's 'valid' filter2 is then empty, so scales 3 and 4 add 0 to both sums. (scipy's
    # convolve2d, used by the Python Evaluator, swaps its inputs there instead: not reproduced.)
    f, a, b = FUSED[:30, 25:55], SRC_A[:30, 25:55], SRC_B[:30, 25:55]

    def by_hand(ref, dist):
        num = den = 0.0
        for s, k in enumerate(V._WINDOWS):
            if s > 0:
                if min(ref.shape) < k.size:
                    break
                ref, dist = V._filter_valid(ref, k, 2), V._filter_valid(dist, k, 2)
            if min(ref.shape) < k.size:
                break
            mu1, mu2 = V._filter_valid(ref, k), V._filter_valid(dist, k)
            n, d = V._vif_terms(V._filter_valid(ref * ref, k) - mu1 * mu1, V._filter_valid(dist * dist, k) - mu2 * mu2,
                                V._filter_valid(ref * dist, k) - mu1 * mu2)
            num, den = num + n, den + d
        return num / den

    assert V.vif(f, a, b) == pytest.approx(by_hand(a, f) + by_hand(b, f), rel=1e-12)
    # two scales only: a different value from the 4-scale one of a larger crop
    assert V.vif(f, a, b) != pytest.approx(V.vif(FUSED[:48, 16:64], SRC_A[:48, 16:64], SRC_B[:48, 16:64]), rel=1e-3)


def test_flat_source_gives_nan_like_the_reference():
    # a flat source has zero variance everywhere: its VIF is 0/0, NaN in MATLAB and numpy alike
    flat = np.full((H, W), 77.0)
    assert np.isnan(V.vif_pair(flat, FUSED))
    assert np.isnan(V.vif(FUSED, SRC_A, flat))


@pytest.mark.parametrize("call", [lambda: V.vif(FUSED, SRC_A[:5], SRC_B),
                                  lambda: V.vif(FUSED[:16], SRC_A[:16], SRC_B[:16]),
                                  lambda: V.vif(np.zeros((64, 64, 3)), np.zeros((64, 64, 3)), np.zeros((64, 64, 3)))])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
