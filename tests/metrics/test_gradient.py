"""Gradient metrics (``mlfuse.metrics.gradient``): every reference cell of the Qabf, Nabf and Qg columns,
agreement with the per-pixel-loop Qabf of benchmarks/naive_metrics.py, and properties."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mlfuse.metrics import gradient as G

from .conftest import assert_close, reference_cases

# column -> (metric over (F, A, B), dtype the caller passes: float32 for the Python Evaluators)
COLUMNS = {
    "cddfuse.Qabf": (G.qabf, np.float32),
    "tang.Qabf": (G.qabf, np.float64),
    "vifb.Qabf": (G.qabf, np.float64),
    "tang.Nabf": (lambda f, a, b: G.nabf(f, a, b, "tang"), np.float64),
    "tang.Nabf_as_called": (lambda f, a, b: G.nabf(f, a, b, "tang_as_called"), np.float64),
    "smfnet.Nabf": (lambda f, a, b: G.nabf(f, a, b, "smfnet"), np.float32),
    "liu.Qg": (G.qg, np.float64),
}
# spec "Suggested tolerances": 1e-6 relative; the float32 Evaluator's Qabf also gets 1e-6 absolute
ABS = {"cddfuse.Qabf": 1e-6}


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases(*COLUMNS))
def test_reference_columns(triple, tid, ref):
    assert ref, "no reference cells for this triple"
    inputs = {dt: tuple(x.astype(dt) for x in triple) for dt in (np.float32, np.float64)}
    cache: dict = {}  # tang.Qabf and vifb.Qabf are one computation
    for col, value in ref.items():
        fn, dt = COLUMNS[col]
        key = (fn, dt)
        if key not in cache:
            cache[key] = fn(*inputs[dt])
        got = cache[key]
        assert isinstance(got, float), f"{col}: returned {type(got).__name__}, not float"
        assert_close(got, value, rel=1e-6, abs_=ABS.get(col, 0.0), what=col)


# ------------------------------------------------------------------------------------ naive agreement
def _naive():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "naive_metrics.py"
    spec = importlib.util.spec_from_file_location("naive_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _scene(seed: int, h: int = 64, w: int = 80) -> np.ndarray:
    """Integer-valued test image with flat patches (zero gradients, equal strengths), ramps and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.where((x // 16 + y // 16) % 2 == 0, 40.0 + 30 * seed, 180.0)
    img[:, w // 2:] += np.round(2.5 * x[:, w // 2:])
    img[h // 2:, : w // 2] += rng.integers(-20, 21, size=(h - h // 2, w // 2))
    return np.clip(img, 0, 255)


SCENE_F, SCENE_A, SCENE_B = _scene(0), _scene(1), _scene(2)
SCENE_F[10:20, 10:20] = SCENE_A[10:20, 10:20]  # F equal to a source on a patch: gX == gF cases


def test_qabf_equals_naive_per_pixel_loops():
    naive = _naive()
    for f, a, b in [(SCENE_F, SCENE_A, SCENE_B), (SCENE_B, SCENE_F, SCENE_A)]:
        assert G.qabf(f, a, b) == pytest.approx(naive.qabf_naive(f, a, b), rel=1e-9, abs=0)


@pytest.mark.shared
@pytest.mark.parametrize("tid", ["TNO04_mean", "MRICT11_max"])
def test_qabf_equals_naive_on_a_crop(tid, triple):
    f, a, b = (x[100:164, 200:280].astype(np.float64) for x in triple)
    assert G.qabf(f, a, b) == pytest.approx(_naive().qabf_naive(f, a, b), rel=1e-9, abs=0)


# ------------------------------------------------------------------------------------------ properties
RNG = np.random.default_rng(11)
IMG = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)
SRC_A = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)
SRC_B = RNG.integers(0, 256, size=(37, 53)).astype(np.float64)


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def test_qabf_identical_images_closed_form():
    # F = A = B: orientation term A = 1 and, by the reference's slip, G = gF where gX == gF, so each
    # pixel scores 0.9994 s(15(g - 0.5)) 0.9879 s(22(1 - 0.8)); Sobel with zero padding via scipy
    x = SCENE_A
    g = np.hypot(ndimage.sobel(x, axis=0, mode="constant"), ndimage.sobel(x, axis=1, mode="constant"))
    q = 0.9994 / (1 + np.exp(-15 * (g - 0.5))) * 0.9879 * _sigmoid(22 * 0.2)
    assert G.qabf(x, x, x) == pytest.approx(np.sum(q * g) / np.sum(g), rel=1e-12)
    # the slip is visible: with G = 1 the value would be lower by ~5e-4
    assert G.qabf(x, x, x) > 0.9994 * _sigmoid(7.5) * 0.9879 * _sigmoid(4.4) + 1e-4


def test_qabf_symmetric_bounded_and_dtype_independent():
    v = G.qabf(IMG, SRC_A, SRC_B)
    assert 0.0 < v < 1.0
    assert G.qabf(IMG, SRC_B, SRC_A) == pytest.approx(v, rel=1e-14)
    assert G.qabf(IMG.astype(np.uint8), SRC_A.astype(np.float32), SRC_B) == pytest.approx(v, rel=1e-14)
    # a flat fused image preserves almost no edges (only its zero-padding border)
    assert G.qabf(np.full_like(IMG, 128.0), SRC_A, SRC_B) < 0.1
    # no source edges at all (zero images, so no zero-padding border either): 0/0
    z = np.zeros((6, 7))
    assert math.isnan(G.qabf(IMG[:6, :7], z, z))


@pytest.mark.parametrize("convention", ["tang", "tang_as_called", "smfnet"])
def test_nabf_zero_when_fused_equals_the_first_source(convention):
    # the artifact mask needs gF > gA (and > gB): never true when F = A; for tang_as_called the
    # "fused" slot is A, so F = A again empties it
    assert G.nabf(SRC_A, SRC_A, SRC_B, convention) == 0.0
    assert G.nabf(IMG, SRC_A, SRC_B, convention) > 0.0


def test_nabf_conventions_relations():
    v = G.nabf(IMG, SRC_A, SRC_B)
    assert 0.0 < v < 1.0
    assert G.nabf(IMG, SRC_B, SRC_A) == pytest.approx(v, rel=1e-14)  # Kumar's Nabf is symmetric
    assert G.nabf(SRC_B, SRC_B, SRC_A) == 0.0  # F = B also empties the mask
    # the as-called bug scores A as the fused image against (B, F)
    assert G.nabf(IMG, SRC_A, SRC_B, "tang_as_called") == pytest.approx(G.nabf(SRC_A, SRC_B, IMG), rel=1e-14)
    # SMFNet's artifact mask uses A only: F = B is not artifact-free there, and A/B order matters
    assert G.nabf(SRC_B, SRC_A, SRC_B, "smfnet") > 0.0
    assert G.nabf(IMG, SRC_A, SRC_B, "smfnet") != G.nabf(IMG, SRC_B, SRC_A, "smfnet")


def test_nabf_angle_where_gh_is_zero():
    # a horizontal edge gives gh = 0 on the edge rows and gv = gh = 0 elsewhere; the reference values
    # need α = π/2 in both cases (the spec text says 0 for gv = gh = 0). With B flat, the B term at
    # the artifact pixels then has orientation term 1; with α_B = 0 it would be 0.
    a = np.zeros((12, 14))
    a[6:] = 100.0  # horizontal edge: gh = 0 everywhere
    f = a * 1.5  # stronger edge, same orientation: artifacts only through strength
    b = np.zeros_like(a)
    q_g = 0.9999 * _sigmoid(19 * (1 / 1.5 - 0.5))
    q_a = 0.9995 * _sigmoid(22 * 0.5)
    g_a = 100 * 4 / 8  # Sobel/8 response of a 100 step
    expected = (1 - math.sqrt(q_g * q_a)) * g_a**1.5 * 2 * 14 / ((2 * 14 * g_a**1.5) + 0.001 * (2 * 12 * 14 - 2 * 14))
    # B is flat: its term adds (1 - Q_BF) * 0.001 at the artifact pixels, with g_BF = 0
    q_b = math.sqrt(0.9999 * _sigmoid(19 * (0 - 0.5)) * 0.9995 * _sigmoid(22 * 0.5))
    expected += (1 - q_b) * 0.001 * 2 * 14 / ((2 * 14 * g_a**1.5) + 0.001 * (2 * 12 * 14 - 2 * 14))
    assert G.nabf(f, a, b) == pytest.approx(expected, rel=1e-12)


def test_qg_identical_images_and_near_symmetry():
    # F = A = B: relative strength 1 and orientation term 1 everywhere (also in flat areas via the
    # 1e-5 offsets), so every pixel scores s(5) * s(5)
    for x in (SCENE_A, IMG, np.full((9, 11), 3.0)):
        assert G.qg(x, x, x) == pytest.approx(_sigmoid(5) ** 2, rel=1e-12)
    v = G.qg(IMG, SRC_A, SRC_B)
    assert 0.0 < v < 1.0
    # not exactly symmetric: the 1e-5 offset on gF made in the A pass carries over into the B pass
    assert G.qg(IMG, SRC_B, SRC_A) == pytest.approx(v, abs=1e-6)


@pytest.mark.parametrize("call", [lambda: G.nabf(IMG, SRC_A, SRC_B, "matlab"), lambda: G.qabf(IMG, SRC_A[:5], SRC_B),
                                  lambda: G.qg(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4, 3))),
                                  lambda: G.nabf(IMG[:1], SRC_A[:1], SRC_B[:1])])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
