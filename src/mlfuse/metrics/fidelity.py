"""Visual information fidelity for fusion: pixel-domain multiscale VIF (spec ``metrics.md`` section 2).

``vif(f, a, b)`` takes 2-D arrays on the 0-255 scale (``f`` fused, ``a`` the "ir" slot, ``b`` the
"vi" slot); any real dtype, computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import fspecial_gaussian, gaussian_window_1d

__all__ = ["fspecial_gaussian", "vif", "vif_pair"]

_SIGMA_NSQ = 2.0  # HVS noise variance: an absolute level, so the input must be on the 0-255 scale
_EPS = 1e-10
_SCALES = 4


def _gaussian_1d(n: int, sigma: float) -> np.ndarray:
    """1-D factor k of ``fspecial_gaussian(n, sigma)`` = outer(k, k). Exact here because, with
    σ = n/5, no value falls below eps·max (the corner is exp(-25(n-1)²/(4n²)) > 1.9e-3), so the
    eps rule never breaks separability; checked against the 2-D kernel."""
    k = gaussian_window_1d(n, sigma)
    if not np.allclose(np.outer(k, k), fspecial_gaussian(n, sigma), rtol=1e-12, atol=0.0):
        raise AssertionError(f"fspecial('gaussian', {n}, {sigma}) is not separable")  # pragma: no cover
    return k


#: (1-D window) for scales 1..4: N = 2^(5-s) + 1 = 17, 9, 5, 3 with σ = N/5
_WINDOWS = tuple(_gaussian_1d(2 ** (_SCALES - s) + 1, (2 ** (_SCALES - s) + 1) / 5.0) for s in range(_SCALES))


def _filter_pass(x: np.ndarray, k: np.ndarray, step: int = 1) -> np.ndarray:
    """One "valid" correlation pass along the last axis of a C-contiguous stack, returned transposed:
    ``out[..., j, i] = sum_t k[t] * x[..., i, step*j + t]``. The strided view keeps the window axis
    contiguous and the row axis at the row stride, so ``@`` runs as a BLAS matrix-vector product."""
    n = k.size
    rows, cols = x.shape[-2:]
    s = x.strides
    view = as_strided(x, shape=(*x.shape[:-2], (cols - n) // step + 1, rows, n),
                      strides=(*s[:-2], s[-1] * step, s[-2], s[-1]), writeable=False)
    return view @ k


def _filter_valid(x: np.ndarray, k: np.ndarray, step: int = 1) -> np.ndarray:
    """``filter2(outer(k, k), x, 'valid')`` over the last two axes of a stack, separably; ``step``
    = 2 returns only the outputs at even (0-based) rows and columns, i.e. ``[::2, ::2]``."""
    return _filter_pass(_filter_pass(np.ascontiguousarray(x), k, step), k, step)


def _vif_terms(s11: np.ndarray, s22: np.ndarray, s12: np.ndarray) -> tuple[float, float]:
    """Numerator and denominator sums of one scale, with ``vifp_mscale``'s rules in its order.
    Overwrites its arguments. The sums use the natural log: VIF is their ratio, so the 1/ln 10 of
    the reference's log10 cancels (and ``np.log`` is twice as fast)."""
    np.maximum(s11, 0.0, out=s11)
    np.maximum(s22, 0.0, out=s22)
    g = s12 / (s11 + _EPS)
    sv = s22 - g * s12
    low1 = s11 < _EPS
    low2 = s22 < _EPS
    np.copyto(sv, s22, where=low1)  # σ1² tiny: g = 0, sv² = σ2², σ1² = 0
    np.copyto(s11, 0.0, where=low1)
    np.copyto(sv, 0.0, where=low2)  # σ2² tiny: g = 0, sv² = 0
    np.copyto(g, 0.0, where=low1 | low2)
    neg = g < 0  # g < 0: sv² = σ2², g = 0
    np.copyto(sv, s22, where=neg)
    np.copyto(g, 0.0, where=neg)
    np.maximum(sv, _EPS, out=sv)  # sv² <= 1e-10 -> 1e-10
    sv += _SIGMA_NSQ
    g *= g
    g *= s11
    g /= sv
    g += 1.0
    s11 /= _SIGMA_NSQ
    s11 += 1.0
    return float(np.sum(np.log(g, out=g))), float(np.sum(np.log(s11, out=s11)))


#: pixels per image in one block of output rows: the work is done in row blocks so that temporaries
#: stay small (cache- and allocator-friendly: whole-image temporaries cost more in page faults than
#: in arithmetic); each block recomputes the N - 1 halo rows of the first filter pass
_BLOCK_ELEMS = 1 << 16


def _vif_many(dist: np.ndarray, refs: list[np.ndarray]) -> list[float]:
    """VIF(ref -> dist) for several references against one distorted image, sharing its filtering."""
    m = len(refs)
    imgs = np.stack([dist, *refs])  # (1 + m, H, W)
    num = np.zeros(m)
    den = np.zeros(m)
    for s, k in enumerate(_WINDOWS):
        n = k.size
        if min(imgs.shape[-2:]) < n:
            # MATLAB's filter2(..., 'valid') is empty here: this scale and the coarser ones add nothing
            if s == 0:
                raise ValueError(f"image too small for VIF: needs at least {n}x{n} pixels, got "
                                 f"{imgs.shape[-2]}x{imgs.shape[-1]}")
            break
        if s > 0:
            imgs = _filter_valid(imgs, k, step=2)
            if min(imgs.shape[-2:]) < n:
                break
        h, w = imgs.shape[-2:]
        rows = max(4 * n, _BLOCK_ELEMS // w)
        for r0 in range(0, h - n + 1, rows):
            blk = imgs[:, r0:r0 + rows + n - 1]
            d, r = blk[0], blk[1:]
            stats = _filter_valid(np.concatenate([blk, blk * blk, r * d]), k)
            mu_d, mu_r = stats[0], stats[1:1 + m]
            sq_d, sq_r = stats[1 + m], stats[2 + m:2 + 2 * m]
            cross = stats[2 + 2 * m:]
            s22 = sq_d - mu_d * mu_d
            for i in range(m):
                s11 = sq_r[i] - mu_r[i] * mu_r[i]
                s12 = cross[i] - mu_r[i] * mu_d
                n_i, d_i = _vif_terms(s11, s22.copy() if i < m - 1 else s22, s12)
                num[i] += n_i
                den[i] += d_i
    # a flat reference gives 0/0: NaN, as in the reference codes (without numpy's warning)
    return [float(a / b) if b != 0 else math.nan for a, b in zip(num, den, strict=True)]


def vif_pair(ref: np.ndarray, dist: np.ndarray) -> float:
    """Sheikh & Bovik's pixel-domain multiscale VIF of one reference/distorted pair (``vifp_mscale``)."""
    ref, dist = check_images(ref, dist, dtype=np.float64, names=("ref", "dist"))
    return _vif_many(dist, [ref])[0]


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF for fusion = VIF(A -> F) + VIF(B -> F) (Sheikh & Bovik 2006, pixel-domain ``vifp_mscale``),
    each source the reference and the fused image the distorted one; can exceed 1.

    Identical in the CDDFuse Python Evaluator (``cddfuse``, its VIFF) and Tang's Image-Fusion code
    (``tang``): 4 scales with Gaussian windows N = 17, 9, 5, 3 and σ = N/5 (``fspecial``), "valid"
    filtering, for scales > 1 filtering then keeping the odd (1-based) rows and columns, σn² = 2 and
    the 1e-10 guards of ``vifp_mscale``. Uses separable filtering (equal to the 2-D window to
    rounding). Inputs must be on the 0-255 scale because σn² is absolute. On images too small for
    the coarse scales (below about 41 px) those scales add nothing, as MATLAB's empty "valid"
    filter output does; images smaller than 17x17 raise ``ValueError``. A flat source makes its
    term 0/0, so the result is NaN, as in the reference codes.
    """
    f, a, b = check_images(f, a, b, dtype=np.float64)
    v_a, v_b = _vif_many(f, [a, b])
    return v_a + v_b
