"""Numeric primitives the metrics share: Gaussian windows (MATLAB ``fspecial``, its separable factor,
OpenCV's kernel), the 3 x 3 Sobel responses and MATLAB rounding. One home each, so two metrics that cite
the same reference operation compute it the same way, to the bit.

Every window is sampled at t = -(n-1)/2 .. (n-1)/2 as exp(-t^2 / (2 sigma^2)); they differ only in how
they are normalised, which decides the last bits and is part of each reference's convention.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cv2_gaussian_kernel", "fspecial_gaussian", "gaussian_samples", "gaussian_window_1d", "matlab_round",
           "sobel"]


def _taps(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) - (n - 1) / 2.0


def gaussian_samples(n: int, sigma: float) -> np.ndarray:
    """exp(-t^2 / (2 sigma^2)) at the ``n`` centred taps, not normalised (float64)."""
    t = _taps(n)
    return np.exp(-(t * t) / (2.0 * sigma * sigma))


def gaussian_window_1d(n: int, sigma: float) -> np.ndarray:
    """The 1-D factor of MATLAB ``fspecial('gaussian', n, sigma)``: :func:`gaussian_samples` over their sum.

    ``fspecial`` zeroes values below eps * max before normalising, so the outer product of this factor equals
    the 2-D window (to rounding) only where no value is that small: true for every window the metrics use
    (sigma >= n / 5), and checked where a metric relies on it (:mod:`mlfuse.metrics.fidelity`).
    """
    g = gaussian_samples(n, sigma)
    return g / g.sum()


def fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', n, sigma)``: exp(-(x² + y²)/(2σ²)) on an n x n grid, values below
    eps·max set to zero, then normalised to sum 1."""
    t = _taps(n)
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def cv2_gaussian_kernel(n: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(n, sigma, CV_32F)``: the samples times 1/sum in double, cast to float32
    (OpenCV uses a float32 kernel for float32 images)."""
    g = gaussian_samples(n, sigma)
    return (g * (1.0 / g.sum())).astype(np.float32)


def sobel(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3 x 3 Sobel responses over the last two axes of an image (or stack) already padded by one pixel, as
    MATLAB ``filter2`` correlations: ``dx`` with [-1 0 1; -2 0 2; -1 0 1] (right minus left) and ``dy`` with
    [-1 -2 -1; 0 0 0; 1 2 1] (bottom minus top). Each is a difference ``a - b`` of two (1, 2, 1)-weighted sums,
    so an exact cancellation gives +0 as in the reference loops; on integer-valued images both are exact.
    The padding (zero, replicate, mirror) is the caller's: it is part of each reference's convention."""
    v = padded[..., :-2, :] + 2.0 * padded[..., 1:-1, :]
    v += padded[..., 2:, :]  # vertical (1, 2, 1) smoothing: (..., H, W + 2)
    hz = padded[..., :, :-2] + 2.0 * padded[..., :, 1:-1]
    hz += padded[..., :, 2:]  # horizontal (1, 2, 1) smoothing: (..., H + 2, W)
    return v[..., 2:] - v[..., :-2], hz[..., 2:, :] - hz[..., :-2, :]


def matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves away from zero (numpy rounds them to even), exactly: the fraction ``x - trunc(x)``
    is computed without rounding error, whereas ``floor(x + 0.5)`` rounds 0.49999999999999994 up."""
    t = np.trunc(x)
    return t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0.0)
