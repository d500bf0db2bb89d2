"""Statistical and gradient metrics of the fused image (spec ``metrics.md`` section 2).

EN, SD, SF, AG, MSE, PSNR, RMSE, CC, SCD and edge intensity, each with the conventions of the
reference codes that disagree:

* ``cddfuse`` / ``smfnet``: the Python ``Evaluator.py`` of CDDFuse (and SMFNet's extras). It works in
  float32 on rounded gray values, so pass float32 arrays and the arithmetic below stays in float32
  exactly as numpy does it there.
* ``tang``: Linfeng-Tang/Image-Fusion "General Evaluation Metric" (MATLAB, float64, 0-255 doubles;
  MSE and PSNR divide by 255 internally).
* ``vifb``: the VIFB benchmark's MATLAB metrics (float64).

Every function takes 2-D arrays on the 0-255 scale: ``f`` fused, ``a`` the functional source
(infrared / CT, the "ir" slot), ``b`` the structural source (visible / MRI, the "vi" slot).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mlfuse.metrics._common import as_image as _arr
from mlfuse.metrics._common import check_convention as _check
from mlfuse.metrics._common import check_images

__all__ = ["ag", "cc", "edge_intensity", "en", "mse", "psnr", "rmse_vifb", "scd", "sd", "sf"]


def gray_levels(x: np.ndarray) -> np.ndarray:
    """``round(x)`` (half to even, as ``np.round``) clipped to 0..255 as a uint8 array: the 256
    histogram bins of EN / MI."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        return np.clip(x, 0, 255).astype(np.uint8)
    g = np.rint(x)
    np.clip(g, 0, 255, out=g)
    return g.astype(np.uint8)


def en(f: np.ndarray) -> float:
    """Shannon entropy EN (Roberts et al.) in bits of the 256-bin histogram of ``round(f)`` (clipped to
    0..255).

    Identical in the CDDFuse Evaluator (``bincount`` of the rounded image), Tang's ``entropy`` on
    uint8 and VIFB ``Entropy``: -sum p log2 p over the occupied grey levels.
    """
    g = gray_levels(_arr(f, np.asarray(f).dtype)).ravel()
    p = np.bincount(g, minlength=256) / g.size
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def sd(f: np.ndarray) -> float:
    """Standard deviation SD: population std of ``f`` on the 0-255 scale.

    CDDFuse ``np.std`` (float32 in, float32 arithmetic), Tang ``SD`` and VIFB ``Variance`` (which,
    despite its name, is this standard deviation) in float64.
    """
    return float(np.std(_arr(f)))


def sf(f: np.ndarray, convention: str = "standard") -> float:
    """Spatial frequency SF (Eskicioglu & Fisher) = sqrt(RF^2 + CF^2).

    ``standard`` (CDDFuse Evaluator, Tang ``SF``): RF^2 is the mean squared horizontal neighbour
    difference over the H(W-1) pairs, CF^2 the mean squared vertical difference over the (H-1)W pairs.
    ``vifb`` (VIFB ``Spatial_frequency``): both sums are divided by N = HW instead, about 0.1-0.2 %
    lower. (VIFB's colour quirk, channels side by side, does not arise for gray images.)
    """
    _check(convention, ("standard", "vifb"))
    x = _arr(f)
    dh = x[:, 1:] - x[:, :-1]
    dv = x[1:, :] - x[:-1, :]
    if convention == "standard":
        return float(np.sqrt(np.mean(dh**2) + np.mean(dv**2)))
    n = x.size
    return float(np.sqrt(np.sum(dh**2) / n + np.sum(dv**2) / n))


def _gradient(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``gradient`` / ``np.gradient``: central differences /2 inside, one-sided at the borders
    (in the input dtype)."""
    gx = np.empty_like(x)
    gy = np.empty_like(x)
    np.subtract(x[:, 1], x[:, 0], out=gx[:, 0])
    np.subtract(x[:, -1], x[:, -2], out=gx[:, -1])
    np.subtract(x[:, 2:], x[:, :-2], out=gx[:, 1:-1])
    gx[:, 1:-1] /= 2
    np.subtract(x[1, :], x[0, :], out=gy[0, :])
    np.subtract(x[-1, :], x[-2, :], out=gy[-1, :])
    np.subtract(x[2:, :], x[:-2, :], out=gy[1:-1, :])
    gy[1:-1, :] /= 2
    return gx, gy


def ag(f: np.ndarray, convention: str = "tang") -> float:
    """Average gradient AG (Cui et al.) with MATLAB-``gradient`` style derivatives (central differences
    /2 inside, one-sided at the borders); per pixel sqrt((gx^2 + gy^2) / 2).

    ``tang`` (Tang ``AG``, also VIFB ``Avg_gradient``): sum / ((H-1)(W-1)).
    ``cddfuse`` (CDDFuse Evaluator ``AG``): mean over N = HW, i.e. ``tang`` times (H-1)(W-1)/N.
    ``smfnet`` (SMFNet Evaluator ``AG1``, the AG of SMFNet's table): ``np.gradient`` and per pixel
    sqrt(gx^2 + gy^2), *without* the /2 under the root, mean over N; about sqrt(2) times ``cddfuse``.
    Computed in the input dtype (float32 for the Python Evaluators).
    """
    _check(convention, ("tang", "cddfuse", "smfnet"))
    x = _arr(f)
    if min(x.shape) < 2:
        raise ValueError(f"AG needs an image of at least 2 x 2 pixels, got {x.shape}")
    h, w = x.shape
    g, gy = _gradient(x)
    g *= g  # g = gx^2 + gy^2, then sqrt(g / 2) (smfnet: sqrt(g)), all in place
    gy *= gy
    g += gy
    if convention != "smfnet":
        g /= 2
    np.sqrt(g, out=g)
    if convention == "tang":
        return float(np.sum(g) / ((h - 1) * (w - 1)))
    return float(np.mean(g))


def mse(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """Mean squared error MSE = (MSE(A, F) + MSE(B, F)) / 2.

    ``cddfuse`` (CDDFuse Evaluator): on the 0-255 data (float32 in, float32 arithmetic).
    ``tang`` (Tang ``MSE``): on [0, 1] data (images / 255), i.e. ``cddfuse`` / 65025.
    """
    _check(convention, ("cddfuse", "tang"))
    f, a, b = check_images(f, a, b)
    if convention == "tang":
        f, a, b = f / 255.0, a / 255.0, b / 255.0
    return float((_mean_sq(a - f) + _mean_sq(b - f)) / 2)


def _mean_sq(d: np.ndarray) -> np.floating:
    """mean(d ** 2) in d's dtype, squaring in place (d is a temporary)."""
    np.multiply(d, d, out=d)
    return np.mean(d)


def _mse_vifb(x: np.ndarray, f: np.ndarray) -> float:
    """VIFB's per-source "mse": sqrt(sum (X - F)^2) / N (not a mean squared error)."""
    d = x - f
    return float(np.sqrt(np.sum(np.multiply(d, d, out=d))) / x.size)


def rmse_vifb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIFB ``Rmse``: (m(A, F) + m(B, F)) / 2 with VIFB's m(X, F) = sqrt(sum (X - F)^2) / N.

    Reproduces VIFB's non-standard scale (it is neither an RMSE nor an MSE).
    """
    f, a, b = (x.astype(np.float64, copy=False) for x in check_images(f, a, b))
    return (_mse_vifb(a, f) + _mse_vifb(b, f)) / 2


def psnr(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """Peak signal-to-noise ratio PSNR in dB against both sources.

    ``cddfuse`` (CDDFuse Evaluator): 10 log10(max(F)^2 / MSE) with the 0-255 ``mse`` (float32).
    ``tang`` (Tang ``PSNR``): 20 log10(255 / sqrt(MSE01)) with the [0, 1] ``mse``; this mixes scales
    and equals 10 log10(255^4 / MSE255), i.e. 48.13 dB + 20 log10(255 / max F) above ``cddfuse``.
    ``vifb`` (VIFB ``Psnr``): 20 log10(255 / sqrt(``rmse_vifb``)), on VIFB's non-standard scale.
    F identical to both sources gives ``inf``, as in the reference codes. With float32 input the
    ``cddfuse`` value may differ from the reference values by 1-2 float32 ulps (<= 2e-7 relative), the
    accuracy of float32 ``log10``, which varies between numpy builds and CPUs.
    """
    _check(convention, ("cddfuse", "tang", "vifb"))
    with np.errstate(divide="ignore"):
        if convention == "cddfuse":
            x = _arr(f)
            return float(10 * np.log10(np.max(x) ** 2 / np.asarray(mse(f, a, b, "cddfuse"), dtype=x.dtype)))
        if convention == "tang":
            return float(20 * np.log10(255.0 / np.sqrt(mse(f, a, b, "tang"))))
        return float(20 * np.log10(255.0 / np.sqrt(rmse_vifb(f, a, b))))


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over all pixels, written like the reference codes (input dtype)."""
    dx = x - np.mean(x)
    dy = y - np.mean(y)
    sxy = np.sum(dx * dy)
    return sxy / np.sqrt(np.sum(np.multiply(dx, dx, out=dx)) * np.sum(np.multiply(dy, dy, out=dy)))


def cc(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Correlation coefficient CC = (rho(A, F) + rho(B, F)) / 2 (Pearson over all pixels).

    Same in the CDDFuse Evaluator (float32 arithmetic) and Tang ``CC`` (float64; its typo
    subtracting mean(A) from B cancels analytically).
    """
    f, a, b = check_images(f, a, b)
    return float((_corr(a, f) + _corr(b, f)) / 2)


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the correlations of differences SCD (Aslantas & Bendes 2015):
    rho(F - B, A) + rho(F - A, B), in [-2, 2]. Identical in the CDDFuse Evaluator and Tang ``SCD``.
    """
    f, a, b = check_images(f, a, b)
    return float(_corr(f - b, a) + _corr(f - a, b))


def edge_intensity(f: np.ndarray) -> float:
    """Edge intensity (VIFB ``Edge_intensity``): mean over all pixels of the Sobel gradient magnitude
    sqrt(gx^2 + gy^2), computed in float64 with replicated borders (MATLAB ``imfilter(...,
    'replicate')`` with ``fspecial('sobel')`` and its transpose).
    """
    x = _arr(f).astype(np.float64, copy=False)
    g = ndimage.sobel(x, axis=1, mode="nearest")
    gy = ndimage.sobel(x, axis=0, mode="nearest")
    g *= g
    gy *= gy
    g += gy
    return float(np.mean(np.sqrt(g, out=g)))
