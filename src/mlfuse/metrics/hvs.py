"""Human-visual-system fusion metrics: Qcb (Chen-Blum) and Qcv (Chen-Varshney) (spec ``metrics.md`` section 2).

* Y. Chen, R.S. Blum, "A new automated quality assessment algorithm for image fusion", Image and
  Vision Computing 27(10), 2009 (Qcb; higher is better).
* H. Chen, P.K. Varshney, "A human perception inspired quality metric for image fusion based on
  regional information", Information Fusion 8(2), 2007 (Qcv; lower is better).

Reference code: Zheng Liu's toolbox (``metricChenBlum.m``, ``metricChen.m``; ``liu`` profile) and
VIFB's ``metricsQcb.m`` / ``metricsQcv.m`` (``vifb`` profile), which are the same algorithm; both
columns of the reference table agree. Reproduced details: ``normalize1`` (min-max stretch to 0-255,
MATLAB rounding) on every image, for Qcb after ``im2double`` of the 8-bit image (x/255: at the
rounding ties of the stretch this differs from stretching 0-255 data, e.g. 1.7e-5 on TNO08_mean, and
the reference values follow it in both profiles), for Qcv on the 0-255 data; the CSFs applied in
the centred ``freqspace`` frequency grid; Qcb's unnormalised 31x31 Gaussians applied with
``filter2(..., 'same')`` (zero padding, separably); Qcv's ``blkproc`` 16x16 blocks zero-padded at
the right and bottom borders (so a partial block's mean still divides by 256). A flat image
(``normalize1`` 0/0) and Qcb's ``0/0`` and ``inf*0`` cells give NaN as in MATLAB.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from mlfuse.metrics._common import check_images
from mlfuse.metrics.filters import matlab_round as _matlab_round
from mlfuse.metrics.filters import sobel

__all__ = ["qcb", "qcv"]


def _normalize1(x: np.ndarray) -> np.ndarray:
    """Liu's ``normalize1``: stretch to 0-255 and round (unchanged if max = min = 0; NaN if flat)."""
    hi, lo = x.max(), x.min()
    if hi == 0 and lo == 0:
        return x.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return _matlab_round((x - lo) / (hi - lo) * 255.0)


def _freqspace_radius(shape: tuple[int, int], scale: float) -> np.ndarray:
    """r = sqrt(u² + v²) on MATLAB's ``freqspace(shape, 'meshgrid')`` grid with u scaled by W/scale
    and v by H/scale, rearranged by ``ifftshift`` into FFT order (zero frequency first)."""

    def axis(n: int) -> np.ndarray:  # [-n+1:2:n-1]/n for odd n, [-n:2:n-2]/n for even n
        return np.arange(-n + (n % 2), n, 2, dtype=np.float64)[:n] / n

    h, w = shape
    u = (w / scale) * axis(w)[None, :]
    v = (h / scale) * axis(h)[:, None]
    return np.fft.ifftshift(np.sqrt(u * u + v * v))


def _csf_filter(x: np.ndarray, s_shifted: np.ndarray) -> np.ndarray:
    """``ifft2(ifftshift(fftshift(fft2(x)) .* S))`` (real part): S is even, so the result is real."""
    w = x.shape[1]
    spec = sfft.rfft2(x) * s_shifted[:, : w // 2 + 1]
    return sfft.irfft2(spec, s=x.shape)


# ---------------------------------------------------------------------------------------------- Qcb
_F0, _F1, _A = 15.3870, 1.3456, 0.7622  # CSF (DoG) parameters of the reference
_Z = 1e-4  # masking constant: C' = |C|^3 / (|C|^2 + Z)


def _gaussian_same(x: np.ndarray, sigma: float) -> np.ndarray:
    """``filter2(G, x, 'same')`` for the reference's unnormalised 31x31 Gaussian
    G = exp(-(x²+y²)/(2σ²)) / (2πσ²), applied separably with zero padding."""
    t = np.arange(-15.0, 16.0)
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    y = ndimage.correlate1d(x, g, axis=0, mode="constant", cval=0.0)
    y = ndimage.correlate1d(y, g, axis=1, mode="constant", cval=0.0)
    return y / (2.0 * np.pi * sigma * sigma)


def _masked_contrast(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.abs(_gaussian_same(x, 2.0) / _gaussian_same(x, 4.0) - 1.0)
        return (c * c * c) / (c * c + _Z)


def qcb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Chen-Blum Qcb (Chen & Blum 2009) of fused ``f`` against sources ``a`` and ``b``; higher is better.

    Inputs: 2-D arrays on the 0-255 scale, same size. Each image is ``normalize1``d, filtered with
    the DoG contrast-sensitivity function S(r) = exp(-(r/15.387)²) - 0.7622·exp(-(r/1.3456)²)
    (frequencies scaled by W/30, H/30), local contrast C = (G₂∗I)/(G₄∗I) - 1 with unnormalised
    31x31 Gaussians, masked as C' = |C|³/(|C|²+1e-4); Qcb = ⟨λ_A·Q_AF + λ_B·Q_BF⟩ with
    Q_XF = min/max(C'_X, C'_F) and λ_X = C'_X²/(C'_A²+C'_B²). Liu toolbox / VIFB ``metricsQcb``.
    """
    f, a, b = check_images(f, a, b, dtype=np.float64)
    r = _freqspace_radius(f.shape, 30.0)
    s = np.exp(-((r / _F0) ** 2)) - _A * np.exp(-((r / _F1) ** 2))
    # im2double(uint8) then normalize1: the stretch of x/255 rounds its ties like the reference
    ca, cb, cf = (_masked_contrast(_csf_filter(_normalize1(x / 255.0), s)) for x in (a, b, f))
    with np.errstate(divide="ignore", invalid="ignore"):
        # Q_XF written as the reference's mask arithmetic, so 0/0 and inf*0 give NaN as in MATLAB
        mask = (ca < cf).astype(np.float64)
        q_af = (ca / cf) * mask + (cf / ca) * (1.0 - mask)
        mask = (cb < cf).astype(np.float64)
        q_bf = (cb / cf) * mask + (cf / cb) * (1.0 - mask)
        den = ca * ca + cb * cb
        q = (ca * ca) / den * q_af + (cb * cb) / den * q_bf
    return float(np.mean(q))


# ---------------------------------------------------------------------------------------------- Qcv
_BLOCK = 16
_ALPHA = 5  # saliency exponent: λ = Σ g^5 over a block


def _sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """sqrt(gx² + gy²) of ``filter2`` Sobel responses with zero padding (exact on integer data)."""
    gx, gy = sobel(np.pad(x, 1))
    return np.sqrt(gx * gx + gy * gy)


def _block_sums(x: np.ndarray) -> np.ndarray:
    """Sums over the ``blkproc`` 16x16 blocks, the image zero-padded to whole blocks."""
    h, w = x.shape
    hb, wb = -(-h // _BLOCK), -(-w // _BLOCK)
    p = np.zeros((hb * _BLOCK, wb * _BLOCK))
    p[:h, :w] = x
    return p.reshape(hb, _BLOCK, wb, _BLOCK).sum(axis=(1, 3))


def qcv(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Chen-Varshney Qcv (Chen & Varshney 2007) of fused ``f`` against ``a`` and ``b``; lower is better.

    Inputs: 2-D arrays on the 0-255 scale, same size. Each image is ``normalize1``d. Region saliency
    λ_X = Σ g_X⁵ over 16x16 blocks (g = Sobel magnitude); the differences X - F are filtered with the
    Mannos-Sakrison CSF 2.6(0.0192+0.144r)·exp(-(0.144r)^1.1) (frequencies scaled by W/8, H/8) and
    D_X is the block mean of the squared result; Qcv = Σ(λ_A·D_A + λ_B·D_B) / Σ(λ_A + λ_B).
    Liu toolbox ``metricChen`` / VIFB ``metricsQcv``.
    """
    f, a, b = check_images(f, a, b, dtype=np.float64)
    f, a, b = _normalize1(f), _normalize1(a), _normalize1(b)
    lam_a = _block_sums(_sobel_magnitude(a) ** _ALPHA)
    lam_b = _block_sums(_sobel_magnitude(b) ** _ALPHA)
    r = _freqspace_radius(f.shape, 8.0)
    theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    d_a = _block_sums(_csf_filter(a - f, theta) ** 2) / (_BLOCK * _BLOCK)
    d_b = _block_sums(_csf_filter(b - f, theta) ** 2) / (_BLOCK * _BLOCK)
    return float(np.sum(lam_a * d_a + lam_b * d_b) / np.sum(lam_a + lam_b))
