"""SSIM-based fusion metrics of Zheng Liu's objective-assessment toolbox (spec ``metrics.md`` §2, "Liu toolbox").

Reference code: Z. Liu et al., "Objective assessment of multiresolution image fusion algorithms for context
enhancement in night vision: a comparative study", IEEE TPAMI 34(1), 2012, and its MATLAB toolbox
(``metricPeilla.m`` with ``ssim_index.m``, ``metricYang.m``, ``metricCvejic.m``). Inputs are ``double(x)`` on
the 0-255 scale, no normalisation.

* **Qs, Qw, Qe** (G. Piella, H. Heijmans, "A new quality metric for image fusion", ICIP 2003), built on Wang's
  ``ssim_index`` maps (Gaussian 11x11, sigma 1.5, ``filter2 'valid'``, L = 255, population statistics):
  saliency lambda = sigma_A^2 / (sigma_A^2 + sigma_B^2) from the local variances of ``ssim_index(A, B)``, where
  0.5 is added to both variances at positions where their sum is exactly 0 (so lambda = 0.5 there);

  - Qs = mean(lambda SSIM(F,A) + (1 - lambda) SSIM(F,B));
  - Qw = sum(c (lambda SSIM(F,A) + (1 - lambda) SSIM(F,B))) with c = max(sigma_A^2, sigma_B^2) / sum(max(...));
  - Qe = Qw(A, B, F) * Qw(A', B', F')^alpha, alpha = 1, with edge images X' = sqrt(X_x^2 + X_y^2) from
    ``filter2`` ('same', zero padding) with [1 0 -1; 1 0 -1; 1 0 -1] and its transpose [1 1 1; 0 0 0; -1 -1 -1].
    (The toolbox's case 3 multiplies by an undefined ``Q``; the reference values, like the paper, use Qw of the
    original images for it.)

* **Qy** (C. Yang, J.-Q. Zhang, X.-R. Wang, X. Liu, "A novel similarity based quality metric for image fusion",
  Information Fusion 9(2), 2008) and **Qc** (N. Cvejic, A. Loza, D. Bull, N. Canagarajah, "A similarity metric for
  assessment of image fusion algorithms", Int. J. Signal Processing 2(3), 2005; ``metricCvejic(..., 2)``) use
  ``ssim_yang``: Gaussian 7x7, sigma 1.5, 'valid', C1 = C2 = 2e-16 (practically no stabilisation).

  - Qy: where SSIM(A,B) >= 0.75, lambda SSIM(A,F) + (1 - lambda) SSIM(B,F) with lambda from the variances of
    A and B; elsewhere max(SSIM(A,F), SSIM(B,F)); mean over the map.
  - Qc: lambda = sigma_AF / (sigma_AF + sigma_BF) (local covariances), lambda SSIM(A,F) + (1 - lambda) SSIM(B,F),
    set to 0 where lambda < 0 and to 1 where lambda > 1; mean over the map.

  Both are **NaN** whenever one window gives 0/0 in lambda: zero variance of A and B (Qy; a 7x7 patch black in
  both sources) or zero covariance of F with both sources (Qc; a 7x7 patch black in F, or in both sources).
  That is the reference code's real behaviour and is reproduced; no NaN-ignoring variant is offered here.
  Qc is **not** symmetric in A and B: swapping them maps lambda to 1 - lambda, so windows scored 0 (lambda < 0)
  become 1 and vice versa; ``a`` must be the toolbox's first image (the "ir" slot), as in the reference values.

Rounding noise: on flat patches the window statistics vanish in exact arithmetic and the reference's values
are rounding noise whose sign (lambda > 1?) or exact zero (0/0, Piella's 0.5 rule) decides the window's score.
Window statistics are computed with fast separable filters, and exactly those windows are recomputed in the
reference implementation's summation order (see ``_Moments``), which reproduces its values there.

Every function takes 2-D arrays on the 0-255 scale (any real dtype, computed in float64): ``f`` fused, ``a``
the functional source (infrared / CT), ``b`` the structural source (visible / MRI). Qs, Qw, Qe and Qy are
symmetric in ``a`` and ``b``.
"""

from __future__ import annotations

import numpy as np

from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import fspecial_gaussian, gaussian_window_1d
from mlfuse.metrics.similarity import filter2_valid, ssim_formula

__all__ = ["qc", "qe", "qs", "qw", "qy"]

_C_WANG = ((0.01 * 255) ** 2, (0.03 * 255) ** 2)  # ssim_index defaults, L = 255
_C_YANG = (2e-16, 2e-16)  # ssim_yang
_EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------------------------- window moments

def _fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """The 2-D window of ``ssim_index`` / ``ssim_yang``: MATLAB ``fspecial('gaussian', size, sigma)`` (values
    below eps * max zeroed, normalised), normalised once more by ``window / sum(sum(window))``."""
    h = fspecial_gaussian(size, sigma)
    return h / h.sum()


def _correlate_valid_at(plane: np.ndarray, h: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``filter2(h, plane, 'valid')[rows, cols]`` summed in the order of the reference implementation, whose
    values follow ``scipy.signal.correlate2d`` as compiled in the SciPy 1.17 x86-64 wheels: kernel rows in turn,
    each row's products accumulated in groups of four, ((t0 + t1) + t2) + t3, then one by one. Vectorised over
    the positions, one kernel tap at a time."""
    n = h.shape[0]
    width = plane.shape[-1]
    flat = plane.reshape(-1)
    base = rows * width + cols
    out = np.zeros(rows.size)
    group = np.empty(rows.size)
    term = np.empty(rows.size)

    def tap(j: int, k: int, dst: np.ndarray) -> None:
        np.take(flat, base + (j * width + k), out=dst)
        dst *= h[j, k]

    for j in range(n):
        k = 0
        while k + 4 <= n:
            tap(j, k, group)
            for kk in (k + 1, k + 2, k + 3):
                tap(j, kk, term)
                group += term
            out += group
            k += 4
        for kk in range(k, n):
            tap(j, kk, term)
            out += term
    return out


#: which moment planes (f, a, b, ff, aa, bb, fa, fb, ab) each second-order statistic is computed from
_PLANES = {"vf": (0, 3), "va": (1, 4), "vb": (2, 5), "cfa": (0, 1, 6), "cfb": (0, 2, 7), "cab": (1, 2, 8)}


class _Moments:
    """Gaussian-window ('valid') moments of F, A, B: means ``mf, ma, mb``, variances ``vf, va, vb`` and
    covariances ``cfa, cfb`` (``cab`` with ``ab=True``), each E[xy] - mu_x mu_y as the MATLAB code computes it.

    They are computed with separable filters. Where a statistic that decides the metric vanishes to rounding
    level (``sensitive`` returns (mask, statistics) pairs; "vanishes" = within 1024 * taps * eps * max|x|^2 of
    0, as on flat patches), the reference's value is rounding noise, and its sign or a 0/0 decides the result
    (lambda > 1, NaN). There the moments behind those statistics are recomputed with the reference
    implementation's own summation order (``_correlate_valid_at``), so the noise comes out as in the reference.
    Windows where a non-negative plane is all zero are exact either way and are skipped.
    """

    def __init__(self, f: np.ndarray, a: np.ndarray, b: np.ndarray, size: int, sensitive, *,
                 ab: bool = False) -> None:
        planes = np.empty((9 if ab else 8, *f.shape))
        planes[0], planes[1], planes[2] = f, a, b
        for i, (x, y) in enumerate(((f, f), (a, a), (b, b), (f, a), (f, b)) + (((a, b),) if ab else ()), start=3):
            np.multiply(x, y, out=planes[i])
        self._set(filter2_valid(planes, gaussian_window_1d(size, 1.5)))
        scale = max(float(np.abs(planes[:3]).max()), 1.0)
        need = {}
        for mask, stats in sensitive(self, 1024 * size * size * _EPS * scale * scale):
            for stat in stats:
                for p in _PLANES[stat]:
                    need[p] = need[p] | mask if p in need else mask
        if not any(m.any() for m in need.values()):
            return
        nonneg = [bool(planes[i].min() >= 0) for i in range(3)]
        nonneg += [True, True, True, nonneg[0] and nonneg[1], nonneg[0] and nonneg[2], nonneg[1] and nonneg[2]]
        raw = self.raw.copy()
        h = _fspecial_gaussian(size, 1.5)
        for p, mask in need.items():
            if nonneg[p]:
                mask = mask & (raw[p] != 0)
            rows, cols = np.nonzero(mask)
            if rows.size:
                raw[p, rows, cols] = _correlate_valid_at(planes[p], h, rows, cols)
        self._set(raw)

    def _set(self, raw: np.ndarray) -> None:
        self.raw = raw
        self.mf, self.ma, self.mb = raw[0], raw[1], raw[2]
        self.vf = raw[3] - self.mf * self.mf
        self.va = raw[4] - self.ma * self.ma
        self.vb = raw[5] - self.mb * self.mb
        self.cfa = raw[6] - self.ma * self.mf
        self.cfb = raw[7] - self.mb * self.mf
        self.cab = raw[8] - self.ma * self.mb if raw.shape[0] > 8 else None


# ----------------------------------------------------------------------------------------------- Piella

def _piella_sensitive(m: _Moments, t: float) -> list:
    # lambda = sigma_A^2 / (sigma_A^2 + sigma_B^2) and its exact-zero test; the SSIM maps have C1, C2 >> noise
    return [(np.abs(m.va + m.vb) < t, ("va", "vb"))]


def _piella_parts(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window lambda SSIM(F,A) + (1 - lambda) SSIM(F,B) and max(sigma_A^2, sigma_B^2) of ``metricPeilla``."""
    m = _Moments(f, a, b, 11, _piella_sensitive)
    c1, c2 = _C_WANG
    q = ssim_formula(m.mf, m.ma, m.vf, m.va, m.cfa, c1, c2)  # ssim_index(F, A)
    map_fb = ssim_formula(m.mf, m.mb, m.vf, m.vb, m.cfb, c1, c2)
    # variances of ssim_index(A, B) (the same moments); 0.5 added to both where their sum is exactly 0
    sa, sb = m.va, m.vb
    zero = sa + sb == 0
    if zero.any():
        sa = sa + zero * 0.5
        sb = sb + zero * 0.5
    lam = sa / (sa + sb)
    # lam * map_fa + (1 - lam) * map_fb
    q *= lam
    np.subtract(1, lam, out=lam)
    map_fb *= lam
    q += map_fb
    return q, np.maximum(sa, sb)


def _qw(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    q, cw = _piella_parts(f, a, b)
    cw /= np.sum(cw)
    cw *= q
    return float(np.sum(cw))


def _edges(x: np.ndarray) -> np.ndarray:
    """sqrt(filter2([1 0 -1]x3, x, 'same')^2 + filter2([1 1 1; 0 0 0; -1 -1 -1], x, 'same')^2), zero padding."""
    xp = np.pad(x, 1)
    cols = xp[:-2] + xp[1:-1] + xp[2:]  # 3-row sums, (H, W + 2)
    gx = cols[:, :-2] - cols[:, 2:]
    rows = xp[:, :-2] + xp[:, 1:-1] + xp[:, 2:]  # 3-column sums, (H + 2, W)
    gy = rows[:-2] - rows[2:]
    gx *= gx
    gy *= gy
    gx += gy
    return np.sqrt(gx, out=gx)


def qs(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Piella's fusion quality index Qs (Liu toolbox ``metricPeilla(A, B, F, 1)``); 1 is best."""
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=11)
    q, _ = _piella_parts(f, a, b)
    return float(q.mean())


def qw(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Piella's weighted fusion quality index Qw (``metricPeilla(A, B, F, 2)``): windows weighted by
    max(sigma_A^2, sigma_B^2); 1 is best."""
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=11)
    return _qw(f, a, b)


def qe(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Piella's edge-dependent fusion quality index Qe = Qw(A, B, F) * Qw(A', B', F') (``metricPeilla(.., 3)``),
    X' the 3x3 Prewitt-like gradient magnitude ('same', zero border); 1 is best."""
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=11)
    return _qw(f, a, b) * _qw(_edges(f), _edges(a), _edges(b))


# ----------------------------------------------------------------------------------------------- Yang, Cvejic

def _qy_sensitive(m: _Moments, t: float) -> list:
    """Where Qy depends on rounding noise: a vanishing variance pair (lambda, and an SSIM map whose
    denominator is then noise, together with the covariance in its numerator)."""
    return [(m.va + m.vb < t, ("va", "vb", "cab")),
            (m.va + m.vf < t, ("va", "vf", "cfa")),
            (m.vb + m.vf < t, ("vb", "vf", "cfb"))]


def _qc_sensitive(m: _Moments, t: float) -> list:
    """Where Qc depends on rounding noise: vanishing variance pairs (SSIM maps) or vanishing covariances
    (lambda = sigma_AF / (sigma_AF + sigma_BF) and its < 0 / > 1 tests)."""
    return [(m.va + m.vf < t, ("va", "vf", "cfa")),
            (m.vb + m.vf < t, ("vb", "vf", "cfb")),
            (np.abs(m.cfa) < t, ("cfa",)),
            (np.abs(m.cfb) < t, ("cfb",)),
            (np.abs(m.cfa + m.cfb) < t, ("cfa", "cfb"))]


def qy(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Yang et al.'s SSIM-based fusion metric Qy (Liu toolbox ``metricYang``); 1 is best.

    NaN when some 7x7 window has zero variance in both sources (0/0 in lambda), as in the reference code.
    """
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=11)
    m = _Moments(f, a, b, 7, _qy_sensitive, ab=True)
    c1, c2 = _C_YANG
    with np.errstate(divide="ignore", invalid="ignore"):
        map_ab = ssim_formula(m.ma, m.mb, m.va, m.vb, m.cab, c1, c2)
        map_af = ssim_formula(m.ma, m.mf, m.va, m.vf, m.cfa, c1, c2)
        map_bf = ssim_formula(m.mb, m.mf, m.vb, m.vf, m.cfb, c1, c2)
        lam = m.va / (m.va + m.vb)
        binary = map_ab >= 0.75
        q1 = (lam * map_af + (1 - lam) * map_bf) * binary
        q2 = np.fmax(map_af, map_bf) * ~binary  # MATLAB max ignores NaN
        return float(np.mean(q1 + q2))


def qc(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Cvejic et al.'s similarity metric Qc (Liu toolbox ``metricCvejic(A, B, F, 2)``); 1 is best.

    NaN when some 7x7 window has zero covariance of F with both sources (0/0 in lambda), as in the reference.
    """
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=11)
    m = _Moments(f, a, b, 7, _qc_sensitive)
    c1, c2 = _C_YANG
    with np.errstate(divide="ignore", invalid="ignore"):
        map_af = ssim_formula(m.ma, m.mf, m.va, m.vf, m.cfa, c1, c2)
        map_bf = ssim_formula(m.mb, m.mf, m.vb, m.vf, m.cfb, c1, c2)
        lam = m.cfa / (m.cfa + m.cfb)
        q = lam * map_af + (1 - lam) * map_bf
    q[lam < 0] = 0
    q[lam > 1] = 1
    return float(np.mean(q))
