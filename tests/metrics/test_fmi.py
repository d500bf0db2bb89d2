"""FMI (fast-FMI, ``analysis_fmi``) against the tang reference columns, a per-window loop and properties.

Tolerances: the reference columns are matched to <= 4e-14 relative for every feature (the flat
windows, whose correlation is pure round-off, take the reference's branch in every window). The
tests use 1e-11, which leaves room for last-bit differences of log2/DCT/DWT between platforms but
fails on any window-level difference (one window changes the mean by ~1e-6 on these images).
FMI_w is approximate with respect to MATLAB (PyWavelets' 62-tap dmey instead of MATLAB's 102 taps,
spec tolerance 1e-2), but the reference column was computed with PyWavelets' dmey, so it is held to
the same tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.metrics import feature_mi as fmi_mod
from mlfuse.metrics.feature_mi import fmi

from .conftest import assert_close, reference_cases

COLUMNS = {"tang.FMI_none": "none", "tang.FMI_pixel": "edge", "tang.FMI_dct": "dct", "tang.FMI_w": "wavelet"}
REL = 1e-11


@pytest.mark.shared
@pytest.mark.parametrize("tid,ref", reference_cases(*COLUMNS))
def test_fmi_matches_tang_reference(tid, ref, triple):
    f, a, b = triple
    assert ref, "no FMI reference values"
    for column, value in ref.items():
        assert_close(fmi(f, a, b, feature=COLUMNS[column]), value, rel=REL, what=f"{tid} {column}")


# ------------------------------------------------------------------ per-window loop (the spec, literally)
def _loop_nfmi(x: np.ndarray, f: np.ndarray) -> tuple[float, np.ndarray]:
    """One window pair as ``analysis_fmi`` computes it (real branch), plain Python floats; returns
    the NFMI and the (possibly normalised) F window."""
    if np.array_equal(x, f):
        return 1.0, f

    def normalise(w):
        lo, hi = w.min(), w.max()
        return np.ones_like(w) if hi == lo else (w - lo) / (hi - lo)

    x, f = normalise(x), normalise(f)
    xv, fv = list(x.ravel(order="F")), list(f.ravel(order="F"))

    def seq(vals):
        acc = 0.0
        for v in vals:
            acc += v
        return acc

    def pdf_of(w, v):
        s = seq([seq(list(w[:, k])) for k in range(3)])
        return [e / s for e in v]

    xp, fp = pdf_of(x, xv), pdf_of(f, fv)
    xc, fc = np.cumsum(xp).tolist(), np.cumsum(fp).tolist()
    xm, fm = seq(xp) / 9, seq(fp) / 9
    xt, ft = [p - xm for p in xp], [p - fm for p in fp]
    num = seq([p * q for p, q in zip(xt, ft, strict=True)])
    c = 0.0 if num == 0 else num / math.sqrt(seq([p * p for p in xt]) * seq([q * q for q in ft]))

    def sd(p):
        e = seq([(i + 1) * v for i, v in enumerate(p)])
        e2 = seq([(i + 1) ** 2 * v for i, v in enumerate(p)])
        return math.sqrt(e2 - e * e)  # real windows only in this test

    xsd, fsd = sd(xp), sd(fp)
    if c >= 0:
        cop = [[0.5 * (fc[i] + xc[j] - abs(fc[i] - xc[j])) for j in range(9)] for i in range(9)]
    else:
        cop = [[0.5 * (fc[i] + xc[j] - 1 + abs(fc[i] + xc[j] - 1)) for j in range(9)] for i in range(9)]
    if c == 0 or xsd == 0 or fsd == 0:
        phi = 0.0
    else:
        cov = seq([cop[i][j] - fc[i] * xc[j] for i in range(9) for j in range(9)])
        phi = c / (cov / (fsd * xsd))

    def g(i, j):
        return cop[i][j] if i >= 0 and j >= 0 else 0.0

    cells = [(0, 0)] + [(i, 0) for i in range(1, 9)] + [(0, j) for j in range(1, 9)]
    cells += [(i, j) for i in range(1, 9) for j in range(1, 9)]
    joint = 0.0
    for i, j in cells:
        d = g(i, j) - g(i - 1, j) - g(i, j - 1) + g(i - 1, j - 1)
        p = phi * d + (1 - phi) * fp[i] * xp[j]
        if p != 0:
            joint += -p * math.log2(abs(p))

    def ent(p):
        return seq([-v * math.log2(v) for v in p if v != 0])

    hx, hf = ent(xp), ent(fp)
    mi = hx + hf - joint
    return (0.0 if mi == 0 else 2 * mi / (hx + hf)), f


def _loop_fmi(fa: np.ndarray, fb: np.ndarray, ff: np.ndarray) -> float:
    h, w = ff.shape
    vals = []
    for r in range(h - 2):
        for q in range(w - 2):
            fsub = ff[r : r + 3, q : q + 3]
            af, fsub = _loop_nfmi(fa[r : r + 3, q : q + 3], fsub)
            bf, _ = _loop_nfmi(fb[r : r + 3, q : q + 3], fsub)  # the B pass sees the normalised F window
            vals.append((af + bf) / 2)
    return float(np.mean(vals))


def _small_triple(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Textured 9 x 11 images with flat patches (flat and identical windows, both copula branches)."""
    rng = np.random.default_rng(seed)
    f, a, b = (rng.integers(0, 256, size=(9, 11)).astype(np.float64) for _ in range(3))
    a[:4, :5] = 7.0
    f[:4, :5] = 7.0  # identical flat windows
    b[5:, 6:] = 200.0
    f[5:, 6:] = 30.0  # flat in both, different values: uniform pdfs, the round-off correlation
    a[5:, :4] = f[5:, :4]  # identical textured windows
    return f, a, b


@pytest.mark.parametrize("feature", ["none", "edge", "dct", "wavelet"])
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_equals_window_loop(feature, seed):
    f, a, b = _small_triple(seed)
    ff, fa, fb = (fmi_mod._feature(x, feature) for x in (f, a, b))
    assert fmi(f, a, b, feature=feature) == pytest.approx(_loop_fmi(fa, fb, ff), rel=1e-13, abs=1e-15)


def test_flat_windows_take_the_reference_branch():
    """A flat F window (normalised to ones in the A pass) against a flat B window: both pdfs are
    uniform, their Pearson numerator is round-off only. Summed left to right as in the reference, the
    mean of nine fl(1/9) is not fl(1/9), so c = 1 and the B-F window scores 1; a pairwise sum would
    give c = 0 and a score of 0."""
    f = np.full((3, 3), 30.0)
    a = np.zeros((3, 3))
    a[1, 1] = 255.0  # A differs from F: the A pass normalises F's window to ones
    b = np.full((3, 3), 200.0)
    # A-F: spike vs uniform, zero variance of the spike -> independence -> NFMI 0; B-F: 1
    assert fmi(f, a, b, feature="none") == pytest.approx(0.5, abs=1e-14)
    # edge feature: all three edge maps are zero, F's window becomes ones only because of the A pass
    assert fmi(f, f, b, feature="none") == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("feature", ["none", "edge", "dct", "wavelet"])
def test_identical_images_give_one(feature):
    x = np.random.default_rng(3).integers(0, 256, size=(20, 23)).astype(np.uint8)
    assert fmi(x, x, x, feature=feature) == 1.0


def test_edge_feature_is_thinned_binary_sobel_map():
    x = np.zeros((12, 12))
    x[:, 6] = 255.0  # a bright line: the Sobel strength peaks on both sides of it
    e = fmi_mod._edge(x)
    assert e.dtype == np.float64 and set(np.unique(e)) == {0.0, 1.0}
    assert e[:, 5].all() and e[:, 7].all()
    assert not np.delete(e, [5, 7], axis=1).any()
    # a perfect step gives two equal columns, neither strictly larger: "simple thinning" keeps none
    x = np.zeros((12, 12))
    x[:, 6:] = 255.0
    assert not fmi_mod._edge(x).any()


def test_bad_input():
    x = np.zeros((8, 8))
    with pytest.raises(ValueError, match="feature"):
        fmi(x, x, x, feature="gradient")
    with pytest.raises(ValueError, match="shape"):
        fmi(x, x, np.zeros((8, 9)))
    with pytest.raises(ValueError, match="3 x 3"):
        fmi(np.zeros((2, 8)), np.zeros((2, 8)), np.zeros((2, 8)))
