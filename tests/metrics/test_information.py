"""Information-theoretic metrics (``mlfuse.metrics.information``): every reference cell of the MI,
cross-entropy and Liu Qmi / Qte / Qncie / Qsf columns, plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.metrics import information as I
from mlfuse.metrics.statistics import en

from .conftest import assert_close, reference_cases

# column -> (metric over (F, A, B), input dtype); the Python Evaluator works in float32
COLUMNS = {
    "cddfuse.MI": (lambda f, a, b: I.mi(f, a, b, "cddfuse"), np.float32),
    "tang.MI": (lambda f, a, b: I.mi(f, a, b, "tang"), np.float64),
    "vifb.Mutinf": (lambda f, a, b: I.mi(f, a, b, "vifb"), np.float64),
    "vifb.Cross_entropy": (I.cross_entropy, np.float64),
    "liu.Qmi": (I.qmi, np.float64),
    "liu.Qte": (I.qte, np.float64),
    "liu.Qncie": (I.qncie, np.float64),
    "liu.Qsf": (I.qsf, np.float64),
}


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases(*COLUMNS))
def test_reference_columns(triple, tid, ref):
    assert ref, "no reference cells for this triple"
    for col, value in ref.items():
        fn, dtype = COLUMNS[col]
        got = fn(*(x.astype(dtype) for x in triple))
        assert isinstance(got, float), f"{col}: returned {type(got).__name__}, not float"
        assert_close(got, value, rel=1e-6, what=col)


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases("vifb.Entropy"))
def test_vifb_entropy_is_en(triple, tid, ref):
    """VIFB Entropy needs no function of its own: ``statistics.en`` reproduces it."""
    assert_close(en(triple[0].astype(np.float64)), ref["vifb.Entropy"], rel=1e-12, what="vifb.Entropy")


# ----------------------------------------------------------------------------------------- properties

RNG = np.random.default_rng(11)
F = RNG.integers(0, 256, size=(40, 48)).astype(np.float64)
A = np.clip(F + RNG.normal(0, 20, F.shape), 0, 255).round()
B = RNG.integers(0, 256, size=F.shape).astype(np.float64)


@pytest.mark.parametrize("convention", ["cddfuse", "tang", "vifb"])
def test_mi_symmetric_in_sources(convention):
    assert I.mi(F, A, B, convention) == pytest.approx(I.mi(F, B, A, convention), rel=1e-13)


def test_mi_of_identical_images_is_twice_the_entropy():
    x = F.copy()
    x[x >= 254] = 100  # no 254/255 levels: the Tang merge plays no role
    h_bits = en(x)
    assert I.mi(x, x, x, "cddfuse") == pytest.approx(2 * h_bits * math.log(2), rel=1e-12)
    assert I.mi(x, x, x, "tang") == pytest.approx(2 * h_bits, rel=1e-12)


def test_tang_mi_merges_254_and_255_in_the_joint_histogram():
    x = np.full((4, 4), 254.0)
    x[:2] = 255.0  # one bit of entropy, but a single joint bin in Tang's code
    assert I.mi(x, x, x, "cddfuse") == pytest.approx(2 * math.log(2), rel=1e-14)
    assert I.mi(x, x, x, "tang") == pytest.approx(4.0, rel=1e-14)  # 2 x (1 + 1 - 0) bits
    y = x - 2  # levels 252/253: no merge, plain MI in bits
    assert I.mi(y, y, y, "tang") == pytest.approx(2.0, rel=1e-14)


def test_vifb_mi_stretch():
    assert I.mi(F, A, B, "vifb") == pytest.approx(I.mi(F, A, B, "cddfuse"), rel=1e-12)
    small = np.round(F / 4)  # 0..64: an injective affine map changes nothing after the stretch
    assert I.mi(2 * small + 30, small, B, "vifb") == pytest.approx(I.mi(small, small, B, "vifb"), rel=1e-12)


def test_float32_and_uint8_inputs_agree():
    for fn in (lambda *x: I.mi(*x, "cddfuse"), lambda *x: I.mi(*x, "tang"), I.cross_entropy, I.qmi):
        ref = fn(F, A, B)
        assert fn(*(x.astype(np.float32) for x in (F, A, B))) == pytest.approx(ref, rel=1e-13)
        assert fn(*(x.astype(np.uint8) for x in (F, A, B))) == pytest.approx(ref, rel=1e-13)


def test_cross_entropy():
    assert I.cross_entropy(F, F, F) == 0.0
    assert I.cross_entropy(F, A, B) == pytest.approx(I.cross_entropy(F, B, A), rel=1e-14)
    assert I.cross_entropy(F, A, B) > 0
    # by hand: p_A = (1/2, 1/2) on levels 0/1, p_F = (1/4, 3/4); level 2 (only in B) is skipped
    f = np.array([[0.0, 1, 1, 1]])
    a = np.array([[0.0, 0, 1, 1]])
    b = np.array([[2.0, 2, 1, 1]])
    ce_a = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    ce_b = 0.5 * math.log2(0.5 / 0.75)
    assert I.cross_entropy(f, a, b) == pytest.approx((ce_a + ce_b) / 2, rel=1e-14)


def test_liu_metrics_on_identical_images():
    assert I.qmi(F, F, F) == pytest.approx(2.0, rel=1e-14)
    assert I.qsf(F, F, F) == 0.0
    flat = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.float64)  # 8 bits: NCC = 1 everywhere
    assert I.qncie(flat, flat, flat) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("fn", [I.qmi, I.qte, I.qncie, I.qsf])
def test_liu_metrics_symmetric_in_sources(fn):
    assert fn(F, A, B) == pytest.approx(fn(F, B, A), rel=1e-12)


def test_qsf_sign():
    assert math.isfinite(I.qsf(F, A, B))
    smooth = np.full_like(F, 128.0)
    smooth[:, 24:] = 129.0
    assert I.qsf(smooth, A, B) < 0  # far less activity than the sources
    assert I.qsf(2 * A - 100, A, A) == pytest.approx(1.0, rel=1e-12)  # every difference doubled


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        I.mi(F, A, B, "liu")
    with pytest.raises(ValueError):
        I.mi(F, A[:10], B)
    with pytest.raises(ValueError):
        I.qmi(np.zeros((3, 3, 3)), A, B)


def _normalize1_by_hand(x: np.ndarray) -> np.ndarray:
    """Liu's ``normalize1`` / VIFB's stretch pixel by pixel in Python floats, in the reference's operation
    order: ``(x - min) / (max - min)``, then ``* 255``, then MATLAB ``round`` (halves away from zero)."""
    lo, hi = float(x.min()), float(x.max())
    out = [math.floor(v) + ((v - math.floor(v)) >= 0.5) for v in (((float(p) - lo) / (hi - lo)) * 255.0
                                                                   for p in x.ravel())]
    return np.array(out, dtype=np.uint8).reshape(x.shape)


def test_stretch_follows_the_reference_operation_order_at_ties():
    # a low-contrast image spanning 50 levels: 255/50 = 5.1, so levels 5 and 45 above the minimum stretch to
    # exact halves (25.5, 229.5), where the two operation orders round to different sides
    rng = np.random.default_rng(3)
    x = rng.integers(100, 151, size=(48, 64)).astype(np.float64)
    x[0, :2] = (100, 150)
    x[1:, :8] = 105  # many pixels on the tie level
    want = _normalize1_by_hand(x)
    scaled_first = np.floor((x - 100) * (255.0 / 50) + 0.5)  # the other order: differs at the ties
    assert (scaled_first != want).sum() >= 47
    assert np.array_equal(I._stretch(x), want)
    # and the metrics that stretch see it: Qte of a triple with such ties equals Qte of the stretched levels
    f, a, b = x, np.rot90(x, 2).copy(), rng.integers(0, 256, size=x.shape).astype(np.float64)
    levels = [_normalize1_by_hand(v).astype(np.float64) for v in (f, a, b)]
    for fn in (I.qte, I.qmi, I.qncie):
        assert fn(f, a, b) == pytest.approx(fn(*levels), rel=1e-14), fn.__name__
    assert I.mi(f, a, b, "vifb") == pytest.approx(I.mi(*levels, "vifb"), rel=1e-14)


def test_liu_metrics_on_constant_images_give_the_references_nan_not_an_exception():
    flat = np.full((16, 16), 77.0)
    assert math.isnan(I.qmi(flat, flat, flat)) and math.isnan(I.qte(flat, flat, flat))
    assert not math.isfinite(I.qte(F[:16, :16], flat, flat))  # constant sources: x/0 in MATLAB is Inf
