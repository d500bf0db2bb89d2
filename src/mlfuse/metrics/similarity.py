"""SSIM and multi-scale SSIM of a fused image, in the conventions of the reference codes (spec ``metrics.md`` §2).

Structural similarity (Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 13(4), 2004) is

    SSIM(x, y) = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))

with local (windowed) statistics, C1 = (0.01 L)^2 and C2 = (0.03 L)^2 for a dynamic range L, averaged over a map.
The fusion codes disagree on the window, the border, L, the variance normaliser and on how the two sources are
combined, so every convention is reproduced with its quirks:

==========  ===========================================================================================  ==========
convention  reference code and its choices                                                               result
==========  ===========================================================================================  ==========
cddfuse     CDDFuse / SFDFuse ``Evaluator.SSIM``: ``skimage.metrics.structural_similarity(F, X)`` with   SSIM(F,A) +
            scikit-image 0.19.2 defaults on float32 data: 7x7 uniform window (``reflect`` border),        SSIM(F,B),
            sample covariance (x 49/48), float32 arithmetic, mean over the map cropped by 3 px, and       max 2
            data_range = 2 (the float dtype range -1..1, so C1 = 4e-4, C2 = 3.6e-3 on 0-255 data)
smfnet      SMFNet ``Evaluator.SSIM(..., data_range=255)``: the same with L = 255                       sum, max 2
tang        Linfeng-Tang/Image-Fusion: mean of two MATLAB ``ssim(F, X)`` on 0-255 doubles: Gaussian       mean, max 1
            sigma 1.5 (11x11, ``fspecial``), ``imfilter(..., 'conv', 'replicate')``, full-size map,
            population statistics, DynamicRange 1 (class double), so C1 = 1e-4, C2 = 9e-4
vifb        VIFB ``metricsSsim``: Wang's ``ssim_index``: Gaussian 11x11 sigma 1.5, ``filter2 'valid'``,   SSIM(A,F) +
            L = 255, population statistics                                                             SSIM(B,F)
==========  ===========================================================================================  ==========

Two multi-scale variants are not Wang's 2003 MS-SSIM at all:

* ``tang``: Image-Fusion's ``analysis_ms_ssim`` is MEF-SSIM (K. Ma, K. Zeng, Z. Wang, "Perceptual quality
  assessment for multi-exposure image fusion", IEEE TIP 24(11), 2015): a "desired" patch is built from the two
  sources in every 11x11 window and compared with F by the contrast-structure term; 3 scales.
* ``smfnet``: SMFNet ``Evaluator.MS_SSIM``, a 5-level MS-SSIM whose two bugs reduce it to MS-SSIM(F, A) (A = the
  "ir" slot) with ``cv2.GaussianBlur`` statistics and plain bilinear ``cv2.resize`` halving.

All functions take 2-D arrays on the 0-255 scale (uint8, float32 or float64): ``f`` fused, ``a`` the functional
source (infrared / CT, the "ir" slot), ``b`` the structural source (visible / MRI, the "vi" slot). Every window
statistic is computed with separable filters.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mlfuse.metrics._common import check_convention as _check
from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import cv2_gaussian_kernel as _cv2_gaussian_kernel
from mlfuse.metrics.filters import gaussian_window_1d

__all__ = ["filter2_valid", "gaussian_window_1d", "ms_ssim", "ssim", "ssim_formula"]

SSIM_CONVENTIONS = ("cddfuse", "smfnet", "tang", "vifb")
MS_SSIM_CONVENTIONS = ("tang", "smfnet")


# ----------------------------------------------------------------------------------------------- helpers

def filter2_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(w' * w, x, 'valid')`` along the last two axes, computed separably (float64)."""
    r = (w.size - 1) // 2
    y = ndimage.correlate1d(x, w, axis=-1, mode="constant")[..., r:x.shape[-1] - r]
    return ndimage.correlate1d(y, w, axis=-2, mode="constant")[..., r:x.shape[-2] - r, :]


def _sep_same(x: np.ndarray, w: np.ndarray, mode: str) -> np.ndarray:
    """Same-size separable correlation along the last two axes with a scipy border ``mode``."""
    return ndimage.correlate1d(ndimage.correlate1d(x, w, axis=-1, mode=mode), w, axis=-2, mode=mode)


def _moment_planes(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stack F, A, B, F^2, A^2, B^2, F*A, F*B (float64) for one pass of window filtering."""
    planes = np.empty((8, *f.shape))
    planes[0], planes[1], planes[2] = f, a, b
    np.multiply(f, f, out=planes[3])
    np.multiply(a, a, out=planes[4])
    np.multiply(b, b, out=planes[5])
    np.multiply(f, a, out=planes[6])
    np.multiply(f, b, out=planes[7])
    return planes


def ssim_formula(mu1: np.ndarray, mu2: np.ndarray, v1: np.ndarray, v2: np.ndarray, c12: np.ndarray,
                 c1: float, c2: float) -> np.ndarray:
    """Equation 13 of Wang et al., ((2 mu1 mu2 + C1)(2 s12 + C2)) / ((mu1^2 + mu2^2 + C1)(s1^2 + s2^2 + C2)),
    evaluated in the MATLAB reference's operation order from the windowed means, variances and covariance."""
    num = mu1 * mu2
    num *= 2
    num += c1
    t = c12 * 2
    t += c2
    num *= t
    den = mu1 * mu1
    np.multiply(mu2, mu2, out=t)
    den += t
    den += c1
    np.add(v1, v2, out=t)
    t += c2
    den *= t
    num /= den
    return num


def _ssim_from_moments(m: np.ndarray, c1: float, c2: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM maps (F, A) and (F, B) from filtered ``_moment_planes``."""
    mf, ma, mb, eff, eaa, ebb, efa, efb = m
    vf = eff - mf * mf
    out = []
    for mx, exx, efx in ((ma, eaa, efa), (mb, ebb, efb)):
        out.append(ssim_formula(mf, mx, vf, exx - mx * mx, efx - mf * mx, c1, c2))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------- SSIM

def _ssim_skimage(f: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """``skimage.metrics.structural_similarity(f, x, data_range=...)`` for x = a and x = b, summed, with
    scikit-image's defaults on float32 input.

    scikit-image computes in the input's float type (float32 here), in this order: ``uniform_filter`` (size 7,
    ``reflect``) of x, y, x*x, y*y, x*y; v = 49/48 (E - mu mu); A1 = 2 ux uy + C1, A2 = 2 vxy + C2,
    B1 = ux^2 + uy^2 + C1, B2 = vx + vy + C2; S = (A1 A2) / (B1 B2); mean over the map cropped by 3 px, in
    float64. F's filtered planes are shared between the two calls (same values).
    """
    win = 7
    pad = (win - 1) // 2
    cov_norm = win * win / (win * win - 1.0)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ux = ndimage.uniform_filter(f, size=win)
    uxx = ndimage.uniform_filter(f * f, size=win)
    vx = cov_norm * (uxx - ux * ux)
    ux2 = ux ** 2
    total = 0.0
    for x in (a, b):
        uy = ndimage.uniform_filter(x, size=win)
        uyy = ndimage.uniform_filter(x * x, size=win)
        uxy = ndimage.uniform_filter(f * x, size=win)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        a1 = 2 * ux * uy + c1
        a2 = 2 * vxy + c2
        b1 = ux2 + uy ** 2 + c1
        b2 = vx + vy + c2
        a1 *= a2
        b1 *= b2
        a1 /= b1
        total += float(a1[pad:-pad, pad:-pad].mean(dtype=np.float64))
    return total


def _ssim_matlab(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """MATLAB ``ssim(F, A)`` and ``ssim(F, B)`` on double data (DynamicRange 1): Gaussian sigma 1.5, 11x11,
    ``imfilter(..., 'conv', 'replicate')``, full-size map, C1 = 1e-4, C2 = 9e-4."""
    m = _sep_same(_moment_planes(f, a, b), gaussian_window_1d(11, 1.5), "nearest")
    map_a, map_b = _ssim_from_moments(m, 0.01 ** 2, 0.03 ** 2)
    return float(map_a.mean()), float(map_b.mean())


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """SSIM of the fused image ``f`` against both sources, in a reference code's convention.

    * ``cddfuse``: SSIM(F,A) + SSIM(F,B), each ``skimage.metrics.structural_similarity(F, X)`` as scikit-image
      0.19.2 runs it on the Evaluator's float32 images: 7x7 uniform window, sample covariance, data_range 2
      (float default, so C1 and C2 are practically 0 on 0-255 data), 3 px crop; computed in float32. Max 2.
    * ``smfnet``: the same with ``data_range=255`` (C1 = 6.50, C2 = 58.52). Max 2.
    * ``tang``: (SSIM(F,A) + SSIM(F,B)) / 2 with MATLAB ``ssim`` on 0-255 doubles (Gaussian sigma 1.5,
      replicate border, full map, C1 = 1e-4, C2 = 9e-4 since DynamicRange = 1 for class double). Max 1.
    * ``vifb``: SSIM(A,F) + SSIM(B,F) with Wang's ``ssim_index`` (Gaussian 11x11 sigma 1.5, 'valid', L = 255).
      Max 2.

    Inputs are 2-D arrays on the 0-255 scale; the cddfuse/smfnet conventions compute in float32 whatever the
    input type (as the Evaluators do), tang/vifb in float64.
    """
    _check(convention, SSIM_CONVENTIONS)
    if convention in ("cddfuse", "smfnet"):
        f32, a32, b32 = check_images(f, a, b, dtype=np.float32, min_size=7)
        return _ssim_skimage(f32, a32, b32, 2.0 if convention == "cddfuse" else 255.0)
    f64, a64, b64 = check_images(f, a, b, dtype=np.float64, min_size=11)
    if convention == "tang":
        sa, sb = _ssim_matlab(f64, a64, b64)
        return (sa + sb) / 2
    m = filter2_valid(_moment_planes(f64, a64, b64), gaussian_window_1d(11, 1.5))
    map_a, map_b = _ssim_from_moments(m, (0.01 * 255) ** 2, (0.03 * 255) ** 2)
    return float(map_a.mean()) + float(map_b.mean())


# ----------------------------------------------------------------------------------------------- MEF-SSIM

def _box_valid(x: np.ndarray, size: int) -> np.ndarray:
    """``filter2(ones(size)/size^2, x, 'valid')`` along the last two axes."""
    r = (size - 1) // 2
    y = ndimage.uniform_filter1d(x, size, axis=-2, mode="constant")[..., r:x.shape[-2] - r, :]
    return ndimage.uniform_filter1d(y, size, axis=-1, mode="constant")[..., r:x.shape[-1] - r]


def _mef_ssim_single(x1: np.ndarray, x2: np.ndarray, f: np.ndarray, k: float = 0.03) -> float:
    """One scale of Ma-Zeng-Wang MEF-SSIM (``mef_ssim.m``) for two sources, without per-patch loops.

    For every 11x11 window (valid positions) with centred source patches d_k = x_k - mu_k (box mean mu_k):

    * ed_k = sqrt(max(121 var_k, 0)) + 0.001 (box variance), the patch contrast;
    * R = (||d_1 + d_2|| + eps) / (||d_1|| + ||d_2|| + eps), clipped to [eps, 1 - eps]; p = min(tan(pi R / 2), 10);
    * w_k = (ed_k / 11)^p + eps, normalised; the desired patch r = sum_k w_k d_k / ed_k, rescaled to norm
      max_k ed_k when its norm is > 0;
    * q = (2 sigma_rf + C) / (sigma_r^2 + sigma_f^2 + C) with Gaussian (11, 1.5) weights, C = (0.03 * 255)^2.

    Since r = c_1 d_1 + c_2 d_2 with per-window scalars c_k, its weighted variance and covariance with F follow
    from the Gaussian-weighted (co)variances of x_1, x_2 and F; ||d_k||^2 and <d_1, d_2> come from box sums.
    """
    wsize = 11
    n = wsize * wsize
    eps = np.finfo(np.float64).eps
    # box statistics (uniform window): centred inner products of the patches
    m1, m2, e11, e22, e12 = _box_valid(np.stack([x1, x2, x1 * x1, x2 * x2, x1 * x2]), wsize)
    v11 = n * (e11 - m1 * m1)   # ||d_1||^2
    v22 = n * (e22 - m2 * m2)   # ||d_2||^2
    v12 = n * (e12 - m1 * m2)   # <d_1, d_2>
    n1 = np.sqrt(np.maximum(v11, 0.0))
    n2 = np.sqrt(np.maximum(v22, 0.0))
    ed1 = n1 + 0.001
    ed2 = n2 + 0.001
    num = np.sqrt(np.maximum(v11 + v22 + 2.0 * v12, 0.0))
    r = (num + eps) / (n1 + n2 + eps)
    r[r > 1] = 1 - eps
    r[r < 0] = eps
    p = np.minimum(np.tan(np.pi / 2 * r), 10.0)
    w1 = (ed1 / wsize) ** p + eps
    w2 = (ed2 / wsize) ** p + eps
    norm = w1 + w2
    c1 = (w1 / norm) / ed1
    c2 = (w2 / norm) / ed2
    rnorm_sq = c1 * c1 * v11 + c2 * c2 * v22 + 2.0 * c1 * c2 * v12
    rnorm = np.sqrt(np.maximum(rnorm_sq, 0.0))
    scale = np.where(rnorm > 0, np.maximum(ed1, ed2) / np.where(rnorm > 0, rnorm, 1.0), 1.0)
    c1 = c1 * scale
    c2 = c2 * scale
    # Gaussian-weighted (co)variances
    g = gaussian_window_1d(wsize, 1.5)
    gm1, gm2, gmf, g11, g22, g12, gff, g1f, g2f = filter2_valid(
        np.stack([x1, x2, f, x1 * x1, x2 * x2, x1 * x2, f * f, x1 * f, x2 * f]), g)
    s11 = g11 - gm1 * gm1
    s22 = g22 - gm2 * gm2
    s12 = g12 - gm1 * gm2
    sff = gff - gmf * gmf
    s1f = g1f - gm1 * gmf
    s2f = g2f - gm2 * gmf
    sigma_r_sq = c1 * c1 * s11 + c2 * c2 * s22 + 2.0 * c1 * c2 * s12
    sigma_rf = c1 * s1f + c2 * s2f
    cc = (k * 255) ** 2
    q = (2 * sigma_rf + cc) / (sigma_r_sq + sff + cc)
    return float(q.mean())


def _halve_symmetric(x: np.ndarray) -> np.ndarray:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``(1:2:end, 1:2:end)``: 2x2 means, last row/column
    of an odd size averaged with its mirror (itself)."""
    h, w = x.shape
    xp = np.pad(x, ((0, h % 2), (0, w % 2)), mode="symmetric")
    return 0.25 * (xp[0::2, 0::2] + xp[1::2, 0::2] + xp[0::2, 1::2] + xp[1::2, 1::2])


def _mef_ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    weights = np.array([0.0448, 0.2856, 0.3001])
    weights = weights / weights.sum()
    levels = weights.size
    if min(f.shape) / 2 ** (levels - 1) < 11:
        return -math.inf  # analysis_ms_ssim returns -Inf for images this small
    q = []
    for level in range(levels):
        q.append(_mef_ssim_single(a, b, f))
        if level < levels - 1:
            a, b, f = _halve_symmetric(a), _halve_symmetric(b), _halve_symmetric(f)
    return float(np.prod(np.asarray(q) ** weights))


# ----------------------------------------------------------------------------------------------- SMFNet MS-SSIM

def _fma32(x: np.ndarray, k: float, s: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add round32(x * k + s): the float64 product of two float32 values is exact."""
    t = x.astype(np.float64)
    t *= k
    t += s
    return t.astype(np.float32)


def _cv2_blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``cv2.GaussianBlur(x, (11, 11), 1.5)`` on float32 images (stacked along the first axis), as OpenCV's
    separable filter computes it on AVX2/FMA machines, BORDER_REFLECT_101:

    * row pass: s = x[-5] k[0], then s = fma(x[j - 5], k[j], s) for j = 1..10 (float32);
    * column pass on the row results, exploiting the kernel symmetry: s = y[0] k[5], then
      s = fma(y[+j] + y[-j], k[5 + j], s) for j = 1..5.

    On the reference triples whose sides are even at every level this reproduces SMFNet's MS_SSIM bit for bit;
    OpenCV's remainder loops (widths not a multiple of 16) may round slightly differently.
    """
    r = (k.size - 1) // 2
    n = x.shape[-1]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)], mode="reflect")  # numpy reflect = OpenCV REFLECT_101
    s = xp[..., 0:n] * k[0]
    for j in range(1, k.size):
        s = _fma32(xp[..., j:j + n], float(k[j]), s)
    m = s.shape[-2]
    yp = np.pad(s, [(0, 0)] * (s.ndim - 2) + [(r, r), (0, 0)], mode="reflect")
    out = yp[..., r:r + m, :] * k[r]
    for j in range(1, r + 1):
        out = _fma32(yp[..., r + j:r + j + m, :] + yp[..., r - j:r - j + m, :], float(k[r + j]), out)
    return out


def _cv2_linear_coeffs(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index and weight of ``cv2.resize(..., INTER_LINEAR)`` along one axis (no antialiasing):
    fx = float32((d + 0.5) / (dst / src) - 0.5), sx = floor(fx), fx -= sx, clamped at the borders."""
    scale = 1.0 / (dst / src)
    fx = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx = fx - sx.astype(np.float32)
    low = sx < 0
    fx[low] = 0
    sx[low] = 0
    high = sx >= src - 1
    fx[high] = 0
    sx[high] = src - 1
    return sx, fx


def _cv2_resize_linear(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(x, (width, height), interpolation=cv2.INTER_LINEAR)`` for float32 gray images.

    Exact 2x reductions are 2x2 means (OpenCV switches them to INTER_AREA; exact for the dyadic values met
    here). Other sizes use OpenCV's pixel-centre bilinear mapping, evaluated in float64 and rounded once
    (OpenCV hands float32 linear resizes to IPP, whose last-bit rounding is not reproduced; on the reference
    triples with odd sizes MS-SSIM stays within 3e-7 relative).
    """
    h, w = x.shape
    if w == 2 * width and h == 2 * height:
        return (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) * np.float32(0.25)
    sx, fx = _cv2_linear_coeffs(w, width)
    sy, fy = _cv2_linear_coeffs(h, height)
    sx1 = np.minimum(sx + 1, w - 1)
    sy1 = np.minimum(sy + 1, h - 1)
    x64 = x.astype(np.float64)
    fx64 = fx.astype(np.float64)
    fy64 = fy.astype(np.float64)[:, None]
    rows = x64[:, sx] * (1.0 - fx64) + x64[:, sx1] * fx64
    return (rows[sy, :] * (1.0 - fy64) + rows[sy1, :] * fy64).astype(np.float32)


def _smfnet_ssim_maps(img1: np.ndarray, img2: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    """Means of SMFNet ``Evaluator.ssim``'s SSIM and contrast-structure maps (float32, L = 255)."""
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    mu1, mu2, e11, e22, e12 = _cv2_blur(np.stack([img1, img2, img1 * img1, img2 * img2, img1 * img2]), k)
    mu1_sq = mu1 ** 2
    mu2_sq = mu2 ** 2
    mu1_mu2 = mu1 * mu2
    s1 = e11 - mu1_sq
    s2 = e22 - mu2_sq
    s12 = e12 - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    return float(np.mean(ssim_map)), float(np.mean(cs_map))


def _smfnet_ms_ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    levels = weights.size
    k = _cv2_gaussian_kernel(11, 1.5)
    # chain 2 (the one that counts): F and A halved together
    mssim = np.zeros(levels)
    mcs = np.zeros(levels)
    img1, img2 = f, a
    for i in range(levels):
        mssim[i], mcs[i] = _smfnet_ssim_maps(img1, img2, k)
        if i < levels - 1:
            img1 = _cv2_resize_linear(img1, img1.shape[1] // 2, img1.shape[0] // 2)
            img2 = _cv2_resize_linear(img2, img2.shape[1] // 2, img2.shape[0] // 2)
    with np.errstate(invalid="ignore"):  # a negative mean gives NaN, as in numpy there
        second = float(np.prod(mcs[:-1] ** weights[:-1]) * mssim[-1] ** weights[-1])
    # chain 1 stores its cs means into the map variable (mcs stays 0) and resizes the full-size A to the size
    # of the running B image, so its term is 0 * mssim_last ** 0.1333: 0, or NaN when that SSIM is negative.
    h, w = a.shape
    for _ in range(levels - 1):
        h, w = h // 2, w // 2
    a_last = _cv2_resize_linear(a, w, h)
    first_last, _ = _smfnet_ssim_maps(img1, a_last, k)
    first = 0.0 * first_last ** weights[-1] if first_last >= 0 else math.nan
    return first + second


def ms_ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "tang") -> float:
    """Multi-scale SSIM of ``f`` in one of the two fusion conventions (neither is Wang's 2003 MS-SSIM).

    * ``tang``: Image-Fusion ``analysis_ms_ssim(imgSeq=[A, B], F)`` = MEF-SSIM (Ma, Zeng, Wang 2015): 3 scales,
      weights [0.0448, 0.2856, 0.3001] normalised, 2x2 box averaging (symmetric border) and decimation between
      scales, per-window desired patch from A and B compared with F; result prod Q_l^w_l (float64).
      Images whose short side / 4 is below 11 give -inf, as the reference does.
    * ``smfnet``: SMFNet ``Evaluator.MS_SSIM(F, A, B)``: because of its two bugs this is MS-SSIM(F, A) only:
      5 levels, weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333] (not normalised), prod_{l<5} cs_l^w_l *
      ssim_5^w_5, statistics from ``cv2.GaussianBlur(11x11, sigma 1.5)`` (BORDER_REFLECT_101), L = 255, levels
      made by ``cv2.resize(INTER_LINEAR)`` to (W // 2, H // 2) without anti-aliasing; float32 arithmetic. B only
      enters through the dead first chain, whose term is 0 (NaN if its last SSIM is negative). OpenCV's float32
      arithmetic is emulated (FMA-based separable blur, pixel-centre resize): bit-exact on even-sized pyramids,
      within 3e-7 relative otherwise.
    """
    _check(convention, MS_SSIM_CONVENTIONS)
    if convention == "tang":
        f64, a64, b64 = check_images(f, a, b, dtype=np.float64, min_size=11)
        return _mef_ssim(f64, a64, b64)
    f32, a32, b32 = check_images(f, a, b, dtype=np.float32, min_size=16)
    return _smfnet_ms_ssim(f32, a32, b32)
