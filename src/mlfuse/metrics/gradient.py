"""Gradient-based fusion metrics: Qabf, Nabf and Qg (spec ``metrics.md`` section 2).

All functions take ``(f, a, b)``: 2-D arrays on the 0-255 scale, ``f`` the fused image, ``a`` the
functional source (infrared / CT, the "ir" slot) and ``b`` the structural one (visible / MRI, the
"vi" slot). Any real dtype is accepted; the arithmetic is float64 (Sobel responses of integer-valued
images are exact, so float32 input from the Python Evaluator only changes the last bits) except for
SMFNet's Nabf, which is float32 like that Evaluator.

Implementation: the three images are stacked, padded once, and processed in blocks of rows (every
step after the 3x3 Sobel is per pixel). Small blocks keep the temporaries in cache and out of the
page-fault path, which at 640x480 costs more than the arithmetic of whole-image temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import sobel

__all__ = ["nabf", "qabf", "qg"]

_HALF_PI = np.pi / 2
#: pixels per image in one block of rows
_BLOCK_ELEMS = 1 << 15


def _stack(f: np.ndarray, a: np.ndarray, b: np.ndarray, dtype: type = np.float64,
           names: tuple[str, str, str] = ("fused", "A", "B")) -> np.ndarray:
    return np.stack(check_images(f, a, b, dtype=dtype, names=names))


def _padded_blocks(stack: np.ndarray, mode: str) -> Iterator[np.ndarray]:
    """Row blocks (3, r + 2, W + 2) of the stack padded by one pixel with ``np.pad`` ``mode``."""
    h, w = stack.shape[-2:]
    if mode == "reflect" and min(h, w) < 2:
        raise ValueError(f"image too small ({h}x{w}) for mirror padding")
    p = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode=mode)
    rows = max(8, _BLOCK_ELEMS // (w + 2))
    for r0 in range(0, h, rows):
        yield p[:, r0:min(r0 + rows, h) + 2]


def _accumulate(stack: np.ndarray, mode: str,
                block: Callable[[np.ndarray], tuple[float, float]]) -> tuple[float, float]:
    """Sum the (numerator, denominator) pairs that ``block`` returns over the row blocks."""
    num = den = 0.0
    for p in _padded_blocks(stack, mode):
        n, d = block(p)
        num += n
        den += d
    return num, den


# --------------------------------------------------------------------------------------------- Qabf
def _qabf_block(p: np.ndarray) -> tuple[float, float]:
    dx, dy = sobel(p)
    # MATLAB conv2 flips the kernels: conv2(x, [-1 0 1; -2 0 2; -1 0 1]) is left - right = -dx and
    # conv2(x, [1 2 1; 0 0 0; -1 -2 -1]) is bottom - top = dy. The relative sign matters because
    # α = π/2 (not -π/2) where sx = 0.
    sx = np.negative(dx, out=dx)
    g = np.sqrt(sx * sx + dy * dy)
    zero = sx == 0
    sx[zero] = 1.0
    alpha = np.arctan(dy / sx, out=dy)
    alpha[zero] = _HALF_PI
    g_x, g_f = g[1:], g[:1]
    lo, hi = np.minimum(g_x, g_f), np.maximum(g_x, g_f)
    hi[hi == 0] = 1.0
    rel = np.divide(lo, hi, out=lo)
    # G = gF/gX where gX > gF, gX/gF where gX < gF, and gF (the reference's slip for 1) where equal
    eq = g_x == g_f
    rel[eq] = np.broadcast_to(g_f, eq.shape)[eq]
    ang = np.abs(alpha[1:] - alpha[:1])
    ang /= _HALF_PI
    np.subtract(1.0, ang, out=ang)
    q = 0.9994 / (1.0 + np.exp(-15.0 * (rel - 0.5)))
    q *= 0.9879 / (1.0 + np.exp(-22.0 * (ang - 0.8)))
    return float(np.sum(q * g_x)), float(np.sum(g_x))


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Xydeas & Petrović (2000) edge-preservation metric Q^{AB/F} (L = 1), range 0..1.

    One algorithm for the CDDFuse Python Evaluator (``cddfuse``), Tang's Image-Fusion MATLAB code
    (``tang``) and VIFB (``vifb``): Sobel by ``conv2(..., 'same')`` with zero padding,
    α = atan(sy/sx) (π/2 where sx = 0), sigmoids (0.9994, -15, 0.5) and (0.9879, -22, 0.8), and the
    reference codes' slip G = gF (instead of 1) where gX == gF, reproduced. The Python Evaluator
    works in float32; this computes in float64, which differs from it by < 1e-6 absolute. NaN when
    both sources are all zero (no edges to preserve).
    """
    num, den = _accumulate(_stack(f, a, b), "constant", _qabf_block)
    return num / den if den != 0 else math.nan  # both sources all zero: 0/0, NaN as in MATLAB


# --------------------------------------------------------------------------------------------- Nabf
_NABF_CONVENTIONS = ("tang", "tang_as_called", "smfnet")


def _kumar_q(g: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Q_XF for X = sources 1, 2 of the stack against F = 0: sqrt(Qg·Qα) with g_XF = min/max (0 where
    either is 0) and a_XF = ||αX−αF|−π/2|·2/π. Keeps the dtype of its inputs."""
    g_x, g_f = g[1:], g[:1]
    lo, hi = np.minimum(g_x, g_f), np.maximum(g_x, g_f)
    hi[lo == 0] = 1.0  # lo == 0 gives rel = 0 without dividing 0 by 0
    rel = np.divide(lo, hi, out=lo)
    ang = np.abs(alpha[1:] - alpha[:1])
    ang -= _HALF_PI
    ang = np.abs(ang, out=ang) * 2 / np.pi
    return np.sqrt(0.9999 / (1 + np.exp(-19 * (rel - 0.5))) * 0.9995 / (1 + np.exp(-22 * (ang - 0.5))))


def _kumar_block(p: np.ndarray) -> tuple[float, float]:
    # Kumar's sobel_fn: correlation with [-1 -2 -1; 0 0 0; 1 2 1]/8 (gv) and [-1 0 1; -2 0 2; -1 0 1]/8
    # (gh) on the mirror-extended image; exact multiples of 1/8 for integer-valued images
    gh, gv = sobel(p)
    gh /= 8.0
    gv /= 8.0
    g = np.sqrt(gh * gh + gv * gv)
    # atan(gv/gh), and π/2 wherever gh = 0, including gv = gh = 0 (the spec text says 0 there; the
    # reference values need π/2, which moves Nabf by up to 2e-4 relative on the mean-rule triples)
    zero = gh == 0
    gh[zero] = 1.0
    alpha = np.arctan(gv / gh, out=gv)
    alpha[zero] = _HALF_PI
    q = _kumar_q(g, alpha)
    w = g[1:] * np.sqrt(g[1:])  # g^1.5 (to the last bit or so; 4x faster than the power)
    w[g[1:] < 2.0] = 0.001
    art = (g[0] > g[1]) & (g[0] > g[2])
    loss = np.subtract(1.0, q, out=q)
    loss *= w
    return float(np.sum(loss[0][art]) + np.sum(loss[1][art])), float(np.sum(w))


def _smfnet_block(p: np.ndarray) -> tuple[float, float]:
    # scipy.ndimage.sobel along both axes (no /8), float32, arctan2 orientation
    gx, gy = sobel(p)
    g = np.sqrt(gx * gx + gy * gy)
    alpha = np.arctan2(gy, gx)
    q = _kumar_q(g, alpha)
    w = np.where(g[1:] >= 2, 0.001 * g[1:] ** 1.5, 0.001).astype(np.float32, copy=False)
    art = g[0] > g[1]
    loss = np.subtract(1, q, out=q)
    loss *= w
    return float(np.sum(loss[0][art]) + np.sum(loss[1][art])), float(np.sum(w))


def nabf(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "tang") -> float:
    """Fusion-artifact measure N^{AB/F} (B. K. Shreyamsha Kumar's modification of Petrović's metric);
    lower is better.

    ``convention``:

    * ``"tang"`` — Kumar's ``analysis_nabf(F, A, B)`` in its documented order: Sobel/8 on a
      mirror-extended image (reflection without repeating the edge pixel), min/max strength ratio,
      orientation atan(gv/gh) (π/2 where gh = 0, which the reference values require also where
      gv = gh = 0), orientation term ||αX−αF|−π/2|·2/π, sigmoids (0.9999, 19, 0.5) and
      (0.9995, 22, 0.5) under a square root, weights g^1.5 (g ≥ 2, else 0.001), artifact mask
      gF > gA and gF > gB.
    * ``"tang_as_called"`` — the Image-Fusion code as it runs: ``analysis_Reference`` calls
      ``analysis_nabf(ir, vi, fused)``, so the infrared image ``a`` is scored as if it were the fused
      image, against sources ``b`` and ``f``. Reproduces published Image-Fusion Nabf tables.
    * ``"smfnet"`` — SMFNet's Python ``Evaluator.Nabf``, a different algorithm: ``scipy.ndimage.sobel``
      without /8 and edge-repeating padding, ``arctan2`` orientation, weights 0.001·g^1.5 where
      g ≥ 2 (unnormalised g) and 0.001 elsewhere, artifact mask gF > gA only. Computed in float32
      like the Evaluator (float64 would differ from it by up to 6e-7 relative).
    """
    if convention == "tang":
        num, den = _accumulate(_stack(f, a, b), "reflect", _kumar_block)
    elif convention == "tang_as_called":
        num, den = _accumulate(_stack(a, b, f, names=("A", "B", "fused")), "reflect", _kumar_block)
    elif convention == "smfnet":
        num, den = _accumulate(_stack(f, a, b, np.float32), "symmetric", _smfnet_block)
    else:
        raise ValueError(f"unknown Nabf convention {convention!r}; expected one of {_NABF_CONVENTIONS}")
    return num / den


# ----------------------------------------------------------------------------------------------- Qg
def _qg_block(p: np.ndarray) -> tuple[float, float]:
    sx, sy = sobel(p)  # filter2 (correlation) with [-1 0 1; -2 0 2; -1 0 1] and [-1 -2 -1; 0 0 0; 1 2 1]
    g = np.sqrt(sx * sx + sy * sy)
    sx[sx == 0] = 1e-5
    alpha = np.arctan(sy / sx, out=sy)
    g_f = g[0]
    out = []
    wts = []
    for i in (1, 2):
        g_x = g[i]
        bigger = g_x > g_f
        g_x[g_x == 0] = 1e-5
        r1 = g_f / g_x
        g_f[g_f == 0] = 1e-5  # in place: the offset of the A pass carries over into the B pass
        rel = np.divide(g_x, g_f)
        rel[bigger] = r1[bigger]
        ang = np.abs(alpha[i] - alpha[0])
        ang -= _HALF_PI
        ang = np.abs(ang, out=ang) * 2 / np.pi
        q = 1 / (1 + np.exp(-10 * (rel - 0.5)))
        q *= 1 / (1 + np.exp(-20 * (ang - 0.75)))
        out.append(q)
        wts.append(g_x)
    val = (out[0] * wts[0] + out[1] * wts[1]) / (wts[0] + wts[1])
    return float(np.sum(val)), float(val.size)


def qg(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Gradient-based fusion metric Qg of Liu et al.'s toolbox (TPAMI 2012), after Xydeas & Petrović.

    Liu toolbox convention (``liu``): Sobel by ``filter2(..., 'same')`` (zero padding); 1e-5 is added
    where a value would be divided by 0 (sx before atan(sy/sx); g before the strength ratio);
    orientation term ||αX−αF|−π/2|·2/π; sigmoids Γ = 1 with k = -10, δ = 0.5 (strength) and
    k = -20, δ = 0.75 (orientation); the result is the per-pixel normalised mean
    ⟨(Q_AF·gA + Q_BF·gB)/(gA + gB)⟩. As in the toolbox, the 1e-5 added to gF in the A pass carries
    over into the B pass.
    """
    num, den = _accumulate(_stack(f, a, b), "constant", _qg_block)
    return num / den
