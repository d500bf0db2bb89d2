"""Information-theoretic metrics (spec ``metrics.md`` section 2): MI, VIFB cross entropy and Liu et
al.'s toolbox metrics Qmi, Qte, Qncie, plus Liu's spatial-frequency ratio Qsf.

Every function takes 2-D arrays on the 0-255 scale: ``f`` fused, ``a`` the functional source
(infrared / CT, the "ir" slot), ``b`` the structural source (visible / MRI, the "vi" slot). Grey levels
are ``round(x)`` clipped to 0..255 (or Liu's ``normalize1`` stretch where the reference code does it).
Histograms are built with one ``np.bincount`` on the combined index ``256 x + y`` per image pair; the
marginals are the joint histogram's row and column sums (the same integer counts as separate
histograms). There are no per-pixel loops.

VIFB ``Entropy`` is the same as :func:`mlfuse.metrics.statistics.en` (identical on all reference
triples), so it has no function of its own here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlfuse.metrics._common import as_image, check_images
from mlfuse.metrics.filters import matlab_round
from mlfuse.metrics.statistics import gray_levels

__all__ = ["TSALLIS_Q", "cross_entropy", "mi", "qmi", "qncie", "qsf", "qte"]

_L = 256  # grey levels

#: Tsallis entropy order of Liu's Qte (Nava et al.'s constant)
TSALLIS_Q = 0.43137


def _levels(x: np.ndarray) -> np.ndarray:
    """Grey levels round(x) in 0..255 (uint8)."""
    return gray_levels(as_image(x, np.asarray(x).dtype))


def _stretch(x: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255 rounded half away from zero, as uint8: VIFB ``Mutinf``'s int16 cast and
    Liu's ``normalize1``. A constant image (where the reference codes divide 0 by 0) maps to 0.

    The operations run in the reference codes' order, ``(x - min) / (max - min) * 255`` and then the
    rounding: ``(x - min) * (255 / (max - min))`` is mathematically equal but rounds differently in
    float64, and where the exact value is a half (frequent when 255 / (max - min) is a multiple of 1/2)
    the two land on opposite sides of .5. Qte, with p^0.43, moves by up to 0.75 % with such counts.
    """
    x = as_image(x, np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.zeros(x.shape, dtype=np.uint8)
    y = x - lo
    y /= hi - lo
    y *= 255.0
    return matlab_round(y).astype(np.uint8)


def _joint(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """256 x 256 joint probabilities of two uint8 level images: rows indexed by ``gx``, columns by ``gy``."""
    if gx.shape != gy.shape:
        raise ValueError(f"image sizes differ: {gx.shape} vs {gy.shape}")
    idx = np.multiply(gx, _L, dtype=np.intp)
    idx += gy
    return (np.bincount(idx.ravel(), minlength=_L * _L) / idx.size).reshape(_L, _L)


def _div(num: float, den: float) -> float:
    """``num / den`` with MATLAB's IEEE semantics (0/0 = NaN, x/0 = ±Inf), not Python's ZeroDivisionError:
    constant images give the reference codes' own NaN/Inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


def _entropy(p: np.ndarray, log: Callable[[np.ndarray], np.ndarray] = np.log2) -> float:
    """-sum p log p over the non-zero cells (any shape)."""
    p = p[p > 0]
    return float(-np.sum(p * log(p)))


def _mi(pxy: np.ndarray, log: Callable[[np.ndarray], np.ndarray] = np.log2) -> float:
    """H(X) + H(Y) - H(X, Y) from a joint probability table."""
    return _entropy(pxy.sum(axis=1), log) + _entropy(pxy.sum(axis=0), log) - _entropy(pxy, log)


def _merge_top(pxy: np.ndarray) -> np.ndarray:
    """The joint table with grey levels 254 and 255 in one bin on both axes (Tang's uint8 ``grey + 1``
    index saturating at 255)."""
    m = pxy[:255, :255].copy()
    m[254, :] += pxy[255, :255]
    m[:, 254] += pxy[:255, 255]
    m[254, 254] += pxy[255, 255]
    return m


def mi(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """Mutual information MI = MI(A, F) + MI(B, F) (Qu et al. 2002) over the 256 grey levels.

    ``cddfuse`` (CDDFuse Evaluator, ``sklearn.metrics.mutual_info_score`` on the grey values): exact
    256-level MI of ``round(x)`` in nats.
    ``tang`` (Tang ``MI``): in bits, H(X) + H(F) - H(X, F). Its joint histogram indexes uint8
    ``grey + 1``, which saturates at 255, so grey levels 254 and 255 share a joint bin but not a
    marginal one. Reproduced: it slightly raises MI where such pixels exist (up to 2.6 % on the
    reference triples).
    ``vifb`` (VIFB ``Mutinf``): each image min-max stretched to 0..255 and rounded, then MI in nats.
    The stretch is injective on integer images, so there it equals ``cddfuse``.
    """
    if convention == "cddfuse":
        gf, ga, gb = (_levels(x) for x in (f, a, b))
        return _mi(_joint(ga, gf), np.log) + _mi(_joint(gb, gf), np.log)
    if convention == "tang":
        gf, ga, gb = (_levels(x) for x in (f, a, b))
        total = 0.0
        for gx in (ga, gb):
            p = _joint(gx, gf)
            total += _entropy(p.sum(axis=1)) + _entropy(p.sum(axis=0)) - _entropy(_merge_top(p))
        return total
    if convention == "vifb":
        gf, ga, gb = (_stretch(x) for x in (f, a, b))
        return _mi(_joint(ga, gf), np.log) + _mi(_joint(gb, gf), np.log)
    raise ValueError(f"unknown convention {convention!r}; choose one of cddfuse, tang, vifb")


def cross_entropy(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Cross entropy (VIFB ``Cross_entropy``; lower is better): the mean over the two sources of
    sum_k p_X(k) log2(p_X(k) / p_F(k)) over the 256 grey levels, skipping levels where p_X or p_F is
    zero (VIFB's convention, which keeps the value finite)."""
    gf, ga, gb = (_levels(x) for x in (f, a, b))
    pf = np.bincount(gf.ravel(), minlength=_L) / gf.size

    def ce(gx: np.ndarray) -> float:
        px = np.bincount(gx.ravel(), minlength=_L) / gx.size
        m = (px > 0) & (pf > 0)
        return float(np.sum(px[m] * np.log2(px[m] / pf[m])))

    return (ce(ga) + ce(gb)) / 2


def qmi(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information Qmi (Hossny et al. 2008; Liu et al. toolbox ``metricMI``):
    2 [I(A;F) / (H(A) + H(F)) + I(B;F) / (H(B) + H(F))] in bits, after Liu's ``normalize1`` (min-max
    stretch to 0..255, round) of each image."""
    gf, ga, gb = (_stretch(x) for x in (f, a, b))
    total = 0.0
    for gx in (ga, gb):
        p = _joint(gx, gf)
        hx, hf = _entropy(p.sum(axis=1)), _entropy(p.sum(axis=0))
        total += _div(hx + hf - _entropy(p), hx + hf)
    return 2 * total


def _tsallis_liu(pxy: np.ndarray, q: float) -> float:
    """Liu's ``tsallis(x, y, q)`` from the joint table p (rows x, columns y):
    (1 - sum_ij p(i,j)^q / m(i,j)^(q-1)) / (1 - q) with m(i, j) = p_y(i) p_x(j), cells with m = 0
    skipped.

    Cvejic's Tsallis MI has m(i, j) = p_x(i) p_y(j); the reference code takes the column sums of p as
    the marginal of x and the row sums as that of y, so the marginals are swapped. Reproduced, since it
    changes Qte (by 6-16 % on the reference triples).
    """
    m = np.outer(pxy.sum(axis=0), pxy.sum(axis=1))  # p_y(i) p_x(j): the reference code's swap
    keep = (pxy > 0) & (m != 0)
    return float((1 - np.sum(pxy[keep] ** q / m[keep] ** (q - 1))) / (1 - q))


def qte(f: np.ndarray, a: np.ndarray, b: np.ndarray, q: float = TSALLIS_Q) -> float:
    """Tsallis-entropy metric Qte (Cvejic et al. 2006 with Nava et al.'s q = 0.43137; Liu et al.
    toolbox ``metricMI``), after ``normalize1`` of each image:
    (I_q(A;F) + I_q(B;F)) / (H(A)^q + H(B)^q + I_q(A;B)).

    As in the reference code, H is the *Shannon* entropy in bits raised to the power q, and I_q is its
    Tsallis MI with swapped marginals (see ``_tsallis_liu``).
    """
    gf, ga, gb = (_stretch(x) for x in (f, a, b))
    pab = _joint(ga, gb)
    num = _tsallis_liu(_joint(ga, gf), q) + _tsallis_liu(_joint(gb, gf), q)
    ha, hb = _entropy(pab.sum(axis=1)), _entropy(pab.sum(axis=0))
    return _div(num, ha**q + hb**q + _tsallis_liu(pab, q))


def qncie(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nonlinear correlation information entropy Qncie (Wang, Shen & Zhang 2005; Liu et al. toolbox),
    after ``normalize1`` of each image.

    NCC(X, Y) = H(X) + H(Y) - H(X, Y) with 256-bin entropies in base 256 (bits / 8); R is the 3 x 3
    matrix with unit diagonal and the pairwise NCCs of A, B, F; with its eigenvalues l_i,
    Qncie = 1 + sum_i (l_i / 3) log_256(l_i / 3).
    """
    gf, ga, gb = (_stretch(x) for x in (f, a, b))
    nab, naf, nbf = (_mi(_joint(x, y)) / 8 for x, y in ((ga, gb), (ga, gf), (gb, gf)))
    r = np.array([[1.0, nab, naf], [nab, 1.0, nbf], [naf, nbf, 1.0]])
    lam = np.linalg.eigvalsh(r) / 3
    lam = lam[lam > 0]
    return float(1 + np.sum(lam * np.log(lam)) / np.log(_L))


def qsf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Spatial-frequency ratio Qsf (Zheng et al. 2007; Liu et al. toolbox), on the raw 0-255 images
    (no ``normalize1``).

    SF^2 sums four directional first differences: row, column, main and secondary diagonal, the
    diagonal terms weighted by sqrt(2)/2, each sum of squares divided by N = HW. The reference SF_R
    uses, for every difference, the larger-magnitude one of the two sources' differences.
    Qsf = (SF_F - SF_R) / SF_R (0 when F's activity equals the reference; negative when lower).
    """
    f, a, b = check_images(f, a, b, dtype=np.float64)
    w = np.sqrt(2) / 2

    def diff(x: np.ndarray, k: int) -> np.ndarray:
        if k == 0:
            return x[:, 1:] - x[:, :-1]
        if k == 1:
            return x[1:, :] - x[:-1, :]
        if k == 2:
            return x[1:, 1:] - x[:-1, :-1]
        return x[1:, :-1] - x[:-1, 1:]

    sf_f2 = sf_r2 = 0.0
    for k, wt in enumerate((1.0, 1.0, w, w)):
        d = diff(f, k)
        sf_f2 += wt * float(np.sum(np.multiply(d, d, out=d))) / f.size
        da, db = diff(a, k), diff(b, k)
        np.multiply(da, da, out=da)
        np.multiply(db, db, out=db)
        sf_r2 += wt * float(np.sum(np.maximum(da, db, out=da))) / f.size
    sf_f, sf_r = np.sqrt(sf_f2), np.sqrt(sf_r2)
    return float((sf_f - sf_r) / sf_r)
