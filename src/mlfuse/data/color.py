"""Colour conversions used around gray fusion networks (fuse the luma, restore the chroma).

Two conventions:

* ``ycbcr`` (mlfuse default): full-range BT.601 / JFIF YCbCr both ways. The network's gray input is
  PIL's full-range luma, so putting the fused luma back with the same convention keeps intensities
  consistent (a source fused "with itself" comes back unchanged up to rounding).
* ``paper``: the MLFuse authors' MATLAB tool (``fusedY2RGB.m`` / hanna-xu's
  ``YCbCr2RGB_Main_Double.m``; spec ``mlfuse.md`` section 10): MATLAB ``rgb2ycbcr`` (BT.601
  *studio* range, rounded to uint8), the full-range fused gray inserted directly as Y, and the
  studio-range inverse with 3-decimal coefficients, rounded half away from zero and saturated
  like MATLAB ``uint8()``. It stretches contrast by 1.164 and clips; use it to reproduce the
  paper's colour figures.

In both, when two sources are colour their chroma is fused per pixel as
``(c1|c1-128| + c2|c2-128|) / (|c1-128| + |c2-128|)`` (128 where both are neutral).
"""

from __future__ import annotations

import numpy as np

from mlfuse.data.gray import pil_luma

COLOR_MODES = ("ycbcr", "paper", "gray")
#: rows per strip in :func:`colorize` (large images are converted strip by strip, same result)
STRIP_ROWS = 256
__all__ = ["COLOR_MODES", "colorize", "fuse_chroma", "matlab_uint8", "pil_luma", "rgb_to_ycbcr", "rgb_to_ycbcr_matlab",
           "ycbcr_to_rgb", "ycbcr_to_rgb_matlab"]


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-range BT.601 (JFIF): Y in [0, 255], Cb/Cr centred on 128; float64, unrounded."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168735892 * r - 0.331264108 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418687589 * g - 0.081312411 * b
    return y, cb, cr


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, rounded to nearest and saturated to uint8."""
    y = np.asarray(y, np.float64)
    cb = np.asarray(cb, np.float64) - 128.0
    cr = np.asarray(cr, np.float64) - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def matlab_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB ``uint8()`` of doubles: round half away from zero, saturate to [0, 255]."""
    x = np.asarray(x, np.float64)
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def rgb_to_ycbcr_matlab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MATLAB ``rgb2ycbcr`` on uint8 (BT.601 studio range: Y in [16, 235], Cb/Cr in [16, 240])."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    return matlab_uint8(y), matlab_uint8(cb), matlab_uint8(cr)


def ycbcr_to_rgb_matlab(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The authors' ``YCbCr2rgb.m`` inverse (studio range, 3-decimal coefficients), MATLAB-rounded."""
    y = np.asarray(y, np.float64) - 16.0
    cb = np.asarray(cb, np.float64) - 128.0
    cr = np.asarray(cr, np.float64) - 128.0
    r = 1.164 * y + 1.596 * cr
    g = 1.164 * y - 0.392 * cb - 0.813 * cr
    b = 1.164 * y + 2.017 * cb
    return matlab_uint8(np.stack([r, g, b], axis=-1))


def fuse_chroma(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Saturation-weighted chroma fusion (spec section 10 step 2): each source's chroma weighted
    by its distance from neutral 128; 128 where both are neutral."""
    c1 = np.asarray(c1, np.float64)
    c2 = np.asarray(c2, np.float64)
    w1, w2 = np.abs(c1 - 128.0), np.abs(c2 - 128.0)
    den = w1 + w2
    out = np.full(np.broadcast(c1, c2).shape, 128.0)
    np.divide(c1 * w1 + c2 * w2, den, out=out, where=den > 0)
    return out


def colorize(fused_y: np.ndarray, sources: list[np.ndarray], mode: str = "ycbcr") -> np.ndarray:
    """Put the 8-bit fused luma ``fused_y`` (H x W) back into colour using the chroma of the colour
    ``sources`` (8-bit RGB, one or two); returns uint8 H x W x 3, or ``fused_y`` for ``mode='gray'``
    or when no source is colour."""
    if mode not in COLOR_MODES:
        raise ValueError(f"unknown colour mode '{mode}' (choose from {', '.join(COLOR_MODES)})")
    if mode == "gray" or not sources:
        return fused_y
    h = fused_y.shape[0]
    if h > 2 * STRIP_ROWS:  # every step is per pixel: row strips bound the float64 temporaries (~112 B/px)
        out = np.empty((*fused_y.shape, 3), np.uint8)
        for r in range(0, h, STRIP_ROWS):
            rows = slice(r, r + STRIP_ROWS)
            out[rows] = colorize(fused_y[rows], [src[rows] for src in sources], mode)
        return out
    to_ycc = rgb_to_ycbcr_matlab if mode == "paper" else rgb_to_ycbcr
    chroma = [to_ycc(s)[1:] for s in sources]
    if len(chroma) == 1:
        cb, cr = chroma[0]
    else:
        cb = fuse_chroma(chroma[0][0], chroma[1][0])
        cr = fuse_chroma(chroma[0][1], chroma[1][1])
    inverse = ycbcr_to_rgb_matlab if mode == "paper" else ycbcr_to_rgb
    return inverse(fused_y, cb, cr)
