"""Colour -> gray, one function per convention, each named after the code it reproduces.

The weights are BT.601's everywhere; what differs (and moves results by a grey level, or by the last bit
of a float32) is the integer or float arithmetic, the order of the float32 sum and the rounding:

* ``pil`` — PIL ``convert('L')``: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, exact integer arithmetic
  (mlfuse's own reading of colour images, :meth:`mlfuse.data.io.Image.gray`).
* ``cv2`` — ``0.299 R + 0.587 G + 0.114 B`` in float32, summed R, G, B, then ``np.round`` (half to even): the
  authors' numpy/OpenCV readers on RGB data (CDDFuse/EMMA ``image_read_cv2(.., 'GRAY')``, the Python
  Evaluators); unrounded, the float32 luma of the MLFuse/DenseFuse data scripts.
* ``cv2-bgr`` — the same sum in OpenCV's own order for BGR data, B, G, R (SMFNet's float ``cvtColor``).
* ``matlab`` — MATLAB ``rgb2gray`` on uint8: the exact coefficients 0.2989.., 0.5870.., 0.1140.. in float64,
  rounded half away from zero and saturated like ``uint8()`` (Image-Fusion, VIFB, Liu's toolbox).
"""

from __future__ import annotations

import numpy as np

from mlfuse.metrics.filters import matlab_round

GRAY_CONVENTIONS = ("pil", "cv2", "cv2-bgr", "matlab")

#: MATLAB rgb2gray's coefficients (the rows of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]))
MATLAB_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
_W32 = (np.float32(0.299), np.float32(0.587), np.float32(0.114))


def pil_luma(rgb: np.ndarray) -> np.ndarray:
    """PIL's ``convert('L')`` for 8-bit RGB: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, in row
    strips so the 32-bit intermediates stay a strip's size (12+ bytes a pixel otherwise)."""
    out = np.empty(rgb.shape[:-1], np.uint8)
    for r in range(0, rgb.shape[0] if rgb.ndim == 3 else 1, _LUMA_STRIP):
        rows = slice(r, r + _LUMA_STRIP) if rgb.ndim == 3 else ...
        c = rgb[rows].astype(np.uint32)
        acc = c[..., 0] * np.uint32(19595)
        acc += c[..., 1] * np.uint32(38470)
        acc += c[..., 2] * np.uint32(7471)
        acc += np.uint32(32768)
        acc >>= np.uint32(16)
        out[rows] = acc
    return out


#: rows of :func:`pil_luma` computed at a time
_LUMA_STRIP = 256


def luma_float32(rgb: np.ndarray, order: str = "rgb") -> np.ndarray:
    """``0.299 R + 0.587 G + 0.114 B`` in float32, unrounded, on the input's own scale; ``order`` is the
    order of the sum (``"rgb"``: numpy scripts on RGB data; ``"bgr"``: OpenCV ``cvtColor`` on BGR data),
    which decides the last bit."""
    r, g, b = (np.asarray(rgb[..., i], np.float32) for i in range(3))
    if order == "rgb":
        return r * _W32[0] + g * _W32[1] + b * _W32[2]
    if order == "bgr":
        return b * _W32[2] + g * _W32[1] + r * _W32[0]
    raise ValueError(f"unknown summation order {order!r} (choose rgb or bgr)")


def matlab_rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of 8-bit RGB, as uint8."""
    x = rgb.astype(np.float64)
    g = MATLAB_WEIGHTS[0] * x[..., 0] + MATLAB_WEIGHTS[1] * x[..., 1] + MATLAB_WEIGHTS[2] * x[..., 2]
    return np.clip(matlab_round(g), 0, 255).astype(np.uint8)


def to_gray(rgb: np.ndarray, convention: str) -> np.ndarray:
    """8-bit RGB (H x W x 3) -> uint8 gray by the named convention (see the module docstring)."""
    if convention == "pil":
        return pil_luma(rgb)
    if convention in ("cv2", "cv2-bgr"):
        return np.round(luma_float32(rgb, "rgb" if convention == "cv2" else "bgr")).astype(np.uint8)
    if convention == "matlab":
        return matlab_rgb2gray(rgb)
    raise ValueError(f"unknown gray convention {convention!r} (choose from {', '.join(GRAY_CONVENTIONS)})")
