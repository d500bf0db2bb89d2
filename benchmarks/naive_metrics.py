"""Straightforward Qabf and VIF, written the way the reference codes are, for speed-up ratios only.

``qabf_naive`` follows the MATLAB ``analysis_Qabf`` structure: Sobel by 2-D convolution, then
per-pixel Python loops for the orientation and for Q. ``vif_naive`` follows the Python Evaluator's
``vifp_mscale``: direct 2-D ``scipy.signal.convolve2d`` with the full 2-D Gaussian window. Both give
the values of ``mlfuse.metrics.gradient.qabf`` / ``mlfuse.metrics.fidelity.vif`` (to ~1e-12 relative;
tests/metrics/test_gradient.py and test_vif.py check it). Not part of the package.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import convolve2d


def _qabf_edges_naive(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
    h3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    sx = convolve2d(img, h3, mode="same")
    sy = convolve2d(img, h1, mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    rows, cols = img.shape
    alpha = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            if sx[i, j] == 0:
                alpha[i, j] = math.pi / 2
            else:
                alpha[i, j] = math.atan(sy[i, j] / sx[i, j])
    return g, alpha


def _qabf_q_naive(g_x: np.ndarray, a_x: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    rows, cols = g_x.shape
    q = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            gx, gf = g_x[i, j], g_f[i, j]
            if gx > gf:
                rel = gf / gx
            elif gx == gf:
                rel = gf  # the reference's slip (should be 1), reproduced
            else:
                rel = gx / gf
            ang = 1 - abs(a_x[i, j] - a_f[i, j]) / (math.pi / 2)
            q_g = 0.9994 / (1 + math.exp(-15 * (rel - 0.5)))
            q_a = 0.9879 / (1 + math.exp(-22 * (ang - 0.8)))
            q[i, j] = q_g * q_a
    return q


def qabf_naive(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf (Xydeas & Petrović 2000) with per-pixel Python loops, as the MATLAB code does."""
    f, a, b = (np.asarray(x, dtype=np.float64) for x in (f, a, b))
    g_a, a_a = _qabf_edges_naive(a)
    g_b, a_b = _qabf_edges_naive(b)
    g_f, a_f = _qabf_edges_naive(f)
    q_af = _qabf_q_naive(g_a, a_a, g_f, a_f)
    q_bf = _qabf_q_naive(g_b, a_b, g_f, a_f)
    return float(np.sum(q_af * g_a + q_bf * g_b) / np.sum(g_a + g_b))


def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    t = np.arange(n) - (n - 1) / 2
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def _vifp_mscale_naive(ref: np.ndarray, dist: np.ndarray) -> float:
    sigma_nsq = 2.0
    eps = 1e-10
    num = 0.0
    den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _fspecial_gaussian(n, n / 5)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1 = convolve2d(ref, win, mode="valid")
        mu2 = convolve2d(dist, win, mode="valid")
        sigma1_sq = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        sigma2_sq = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        sigma12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        sigma1_sq[sigma1_sq < 0] = 0
        sigma2_sq[sigma2_sq < 0] = 0
        g = sigma12 / (sigma1_sq + eps)
        sv_sq = sigma2_sq - g * sigma12
        g[sigma1_sq < eps] = 0
        sv_sq[sigma1_sq < eps] = sigma2_sq[sigma1_sq < eps]
        sigma1_sq[sigma1_sq < eps] = 0
        g[sigma2_sq < eps] = 0
        sv_sq[sigma2_sq < eps] = 0
        sv_sq[g < 0] = sigma2_sq[g < 0]
        g[g < 0] = 0
        sv_sq[sv_sq <= eps] = eps
        num += np.sum(np.log10(1 + g * g * sigma1_sq / (sv_sq + sigma_nsq)))
        den += np.sum(np.log10(1 + sigma1_sq / sigma_nsq))
    return float(num / den)


def vif_naive(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF(A->F) + VIF(B->F) (Sheikh & Bovik 2006, vifp_mscale) with direct 2-D convolutions."""
    f, a, b = (np.asarray(x, dtype=np.float64) for x in (f, a, b))
    return _vifp_mscale_naive(a, f) + _vifp_mscale_naive(b, f)
