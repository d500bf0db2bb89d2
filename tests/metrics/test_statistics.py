"""Statistical and gradient metrics (``mlfuse.metrics.statistics``): every reference cell of the EN,
SD, SF, AG, MSE, PSNR, RMSE, CC, SCD and edge-intensity columns, plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.metrics import statistics as S

from .conftest import assert_close, reference_cases

# column -> metric over (F, A, B). The Python Evaluator columns get float32 arrays (it works in float32
# on rounded gray values), the MATLAB columns float64 arrays of integer values.
FLOAT32 = {
    "cddfuse.EN": lambda f, a, b: S.en(f),
    "cddfuse.SD": lambda f, a, b: S.sd(f),
    "cddfuse.SF": lambda f, a, b: S.sf(f),
    "cddfuse.AG": lambda f, a, b: S.ag(f, "cddfuse"),
    "cddfuse.MSE": lambda f, a, b: S.mse(f, a, b, "cddfuse"),
    "cddfuse.CC": S.cc,
    "cddfuse.PSNR": lambda f, a, b: S.psnr(f, a, b, "cddfuse"),
    "cddfuse.SCD": S.scd,
    "smfnet.AG1": lambda f, a, b: S.ag(f, "smfnet"),
}
FLOAT64 = {
    "tang.EN": lambda f, a, b: S.en(f),
    "tang.PSNR": lambda f, a, b: S.psnr(f, a, b, "tang"),
    "tang.MSE": lambda f, a, b: S.mse(f, a, b, "tang"),
    "tang.SF": lambda f, a, b: S.sf(f),
    "tang.SD": lambda f, a, b: S.sd(f),
    "tang.AG": lambda f, a, b: S.ag(f, "tang"),
    "tang.CC": S.cc,
    "tang.SCD": S.scd,
    "vifb.Avg_gradient": lambda f, a, b: S.ag(f, "tang"),
    "vifb.Edge_intensity": lambda f, a, b: S.edge_intensity(f),
    "vifb.Entropy": lambda f, a, b: S.en(f),
    "vifb.Psnr": lambda f, a, b: S.psnr(f, a, b, "vifb"),
    "vifb.Rmse": S.rmse_vifb,
    "vifb.Spatial_frequency": lambda f, a, b: S.sf(f, "vifb"),
    "vifb.Variance": lambda f, a, b: S.sd(f),
}
# spec "Suggested tolerances": 1e-6 relative; the float32 Evaluator also gets 1e-6 absolute on SD/SF/CC/SCD
ABS = {"cddfuse.SD": 1e-6, "cddfuse.SF": 1e-6, "cddfuse.CC": 1e-6, "cddfuse.SCD": 1e-6}


def _check_columns(triple, ref, metrics, dtype):
    f, a, b = (x.astype(dtype) for x in triple)
    assert ref, "no reference cells for this triple"
    for col, value in ref.items():
        got = metrics[col](f, a, b)
        assert isinstance(got, float), f"{col}: returned {type(got).__name__}, not float"
        assert_close(got, value, rel=1e-6, abs_=ABS.get(col, 0.0), what=col)


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases(*FLOAT32))
def test_python_evaluator_columns(triple, tid, ref):
    _check_columns(triple, ref, FLOAT32, np.float32)


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases(*FLOAT64))
def test_matlab_columns(triple, tid, ref):
    _check_columns(triple, ref, FLOAT64, np.float64)


# ----------------------------------------------------------------------------------------- properties

RNG = np.random.default_rng(7)
IMG = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)
SRC_A = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)
SRC_B = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)


def test_en_constant_and_two_levels():
    assert S.en(np.full((10, 12), 77.0)) == 0.0
    two = np.zeros((8, 8))
    two[:4] = 200
    assert S.en(two) == pytest.approx(1.0, abs=1e-15)
    # the 256 levels equally often: 8 bits; dtype does not matter
    flat = np.arange(256 * 4).reshape(32, 32) % 256
    for dt in (np.uint8, np.float32, np.float64):
        assert S.en(flat.astype(dt)) == pytest.approx(8.0, abs=1e-12)


def test_sd_shift_invariant_and_population():
    assert S.sd(IMG + 17.0) == pytest.approx(S.sd(IMG), rel=1e-12)
    assert S.sd(np.array([[0.0, 2.0]])) == 1.0  # population (ddof=0), not sample std


def test_sf_conventions_by_hand():
    x = np.array([[0.0, 3.0, 3.0], [4.0, 4.0, 0.0]])
    sh = 9 + 0 + 0 + 16  # horizontal squared differences, H(W-1) = 4 pairs
    sv = 16 + 1 + 9  # vertical, (H-1)W = 3 pairs
    assert S.sf(x) == pytest.approx(math.sqrt(sh / 4 + sv / 3), rel=1e-15)
    assert S.sf(x, "vifb") == pytest.approx(math.sqrt(sh / 6 + sv / 6), rel=1e-15)
    assert S.sf(np.full((5, 5), 9.0)) == 0.0


def test_ag_conventions_on_a_ramp():
    h, w = 6, 9
    ramp = np.tile(np.arange(w, dtype=np.float64) * 3, (h, 1))  # gx = 3 everywhere, gy = 0
    per_pixel = math.sqrt(9 / 2)
    assert S.ag(ramp, "cddfuse") == pytest.approx(per_pixel, rel=1e-15)
    assert S.ag(ramp, "tang") == pytest.approx(per_pixel * h * w / ((h - 1) * (w - 1)), rel=1e-15)
    assert S.ag(ramp, "smfnet") == pytest.approx(3.0, rel=1e-15)  # no /2 under the root
    assert S.ag(np.full((4, 4), 5.0)) == 0.0


def test_mse_psnr_scales():
    f = IMG.copy()
    f[0, 0] = 255.0
    m255 = S.mse(f, SRC_A, SRC_B, "cddfuse")
    assert S.mse(f, SRC_A, SRC_B, "tang") == pytest.approx(m255 / 65025, rel=1e-12)
    assert m255 == pytest.approx((np.mean((SRC_A - f) ** 2) + np.mean((SRC_B - f) ** 2)) / 2, rel=1e-12)
    # with max F = 255 the Tang PSNR is exactly 10 log10(255^2) = 48.13 dB above CDDFuse's
    diff = S.psnr(f, SRC_A, SRC_B, "tang") - S.psnr(f, SRC_A, SRC_B, "cddfuse")
    assert diff == pytest.approx(20 * math.log10(255), rel=1e-12)
    g = f * 0.5  # max F = 127.5: the gap grows by 20 log10(255 / max F)
    diff = S.psnr(g, SRC_A, SRC_B, "tang") - S.psnr(g, SRC_A, SRC_B, "cddfuse")
    assert diff == pytest.approx(20 * math.log10(255) + 20 * math.log10(255 / 127.5), rel=1e-12)


def test_psnr_of_a_perfect_fusion_is_inf():
    for convention in ("cddfuse", "tang", "vifb"):
        assert S.psnr(IMG, IMG, IMG, convention) == math.inf


def test_vifb_rmse_and_psnr_scale():
    n = IMG.size
    m = (math.sqrt(np.sum((SRC_A - IMG) ** 2)) / n + math.sqrt(np.sum((SRC_B - IMG) ** 2)) / n) / 2
    assert S.rmse_vifb(IMG, SRC_A, SRC_B) == pytest.approx(m, rel=1e-12)
    assert S.psnr(IMG, SRC_A, SRC_B, "vifb") == pytest.approx(20 * math.log10(255 / math.sqrt(m)), rel=1e-12)


def test_cc_scd_properties():
    f = 2 * SRC_A + 3
    assert S.cc(f, SRC_A, SRC_A) == pytest.approx(1.0, abs=1e-12)
    assert S.cc(IMG, SRC_A, SRC_B) == pytest.approx(S.cc(IMG, SRC_B, SRC_A), abs=1e-15)
    assert S.scd(IMG, SRC_A, SRC_B) == pytest.approx(S.scd(IMG, SRC_B, SRC_A), abs=1e-15)
    # F = A + B: F - B = A and F - A = B, so both correlations are 1
    assert S.scd(SRC_A + SRC_B, SRC_A, SRC_B) == pytest.approx(2.0, abs=1e-12)


def test_edge_intensity_simple_images():
    assert S.edge_intensity(np.full((7, 9), 100.0)) == 0.0
    w = 9
    ramp = np.tile(np.arange(w, dtype=np.float64), (5, 1))
    # Sobel x response of a unit ramp: 8 inside; 4 in the border columns (replicated edge)
    expected = (8 * (w - 2) + 4 * 2) / w
    assert S.edge_intensity(ramp) == pytest.approx(expected, rel=1e-15)


def test_float32_input_is_computed_in_float32():
    x32 = IMG.astype(np.float32) / 3  # non-integer float32 values: float32 and float64 std differ
    assert S.sd(x32) == float(np.std(x32))
    assert S.sd(x32) == pytest.approx(S.sd(x32.astype(np.float64)), rel=1e-6)


@pytest.mark.parametrize("call", [lambda: S.sf(IMG, "matlab"), lambda: S.ag(IMG, "vifb"),
                                  lambda: S.mse(IMG, SRC_A, SRC_B, "vifb"), lambda: S.psnr(IMG, SRC_A, SRC_B, "x"),
                                  lambda: S.sd(np.zeros((2, 2, 3))), lambda: S.edge_intensity(np.zeros((4, 4, 3))),
                                  lambda: S.cc(IMG, SRC_A[:5], SRC_B), lambda: S.mse(IMG, SRC_A, SRC_B[:, :4])])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
