"""SMFNet's colour round trip (``test.py``; ``shared/specs/smfnet.md`` §2, quirk 14), for ``--color paper``.

The authors read the visible image with OpenCV, convert the **float** BGR image to YCrCb and feed the
unrounded Y to the network; the infrared image is OpenCV's float grey, rounded. The fused output is
min-max normalised, stacked with the source's Cr and Cb and converted back with OpenCV's float
YCrCb->BGR, then ``cv2.imwrite`` rounds to nearest (half to even) and saturates. OpenCV's float path
uses a chroma offset of 0.5 (not 128) in both directions, so the chroma round trip is consistent:

* ``Y = 0.114 B + 0.587 G + 0.299 R`` (OpenCV's summation order for BGR input),
  ``Cr = 0.713 (R - Y) + 0.5``, ``Cb = 0.564 (B - Y) + 0.5`` (0-255 scale, float32);
* ``B = Y + 1.773 (Cb - 0.5)``, ``G = Y - 0.344 (Cb - 0.5) - 0.714 (Cr - 0.5)``, ``R = Y + 1.403 (Cr - 0.5)``.

Implemented here in numpy float32 with the coefficients as written (no OpenCV dependency); this
reproduces the reference ``__bgr_float.npy`` arrays to ~1e-5 on the 0-255 scale. Arrays here are RGB
(channel order of :class:`mlfuse.data.io.Image`); the authors' BGR files are the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlfuse.data.gray import luma_float32
from mlfuse.data.io import Image

_DELTA = np.float32(0.5)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def to_float_rgb(img: Image) -> np.ndarray:
    """float32 H x W x 3 RGB on the 0-255 scale as ``cv2.imread`` (3 channels, grey replicated) gives it.
    16-bit sources are scaled to 0-255 (OpenCV would reduce them to 8 bits)."""
    a = img.pixels.astype(np.float32)
    if img.maxval != 255:
        a = a * _f32(255.0 / img.maxval)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a


def rgb_to_ycrcb_float(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV ``cvtColor(BGR2YCrCb)`` on a float image (offset 0.5): float32 (Y, Cr, Cb), 0-255 scale."""
    r, b = np.asarray(rgb[..., 0], np.float32), np.asarray(rgb[..., 2], np.float32)
    y = luma_float32(rgb, "bgr")  # the "cv2-bgr" convention of mlfuse.data.gray
    cr = (r - y) * _f32(0.713) + _DELTA
    cb = (b - y) * _f32(0.564) + _DELTA
    return y, cr, cb


def gray_float(rgb: np.ndarray) -> np.ndarray:
    """OpenCV ``cvtColor(BGR2GRAY)`` on a float image, then ``np.round`` (the authors' ``GRAY`` reader)."""
    return np.round(luma_float32(rgb, "bgr"))  # the "cv2-bgr" convention of mlfuse.data.gray


def ycrcb_to_rgb_float(y: np.ndarray, cr: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """OpenCV ``cvtColor(YCrCb2BGR)`` on float data (offset 0.5): float32 H x W x 3 **RGB**, unclipped."""
    y, cr, cb = (np.asarray(c, np.float32) for c in (y, cr, cb))
    dcr, dcb = cr - _DELTA, cb - _DELTA
    b = y + dcb * _f32(1.773)
    g = y + dcb * _f32(-0.344) + dcr * _f32(-0.714)
    r = y + dcr * _f32(1.403)
    return np.stack([r, g, b], axis=-1)


def minmax_float(raw: np.ndarray) -> np.ndarray:
    """``(F - min F) / (max F - min F)`` in float32 (constant images give zeros)."""
    raw = np.asarray(raw, np.float32)
    lo, hi = raw.min(), raw.max()
    return (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)


def authors_color_float(raw: np.ndarray, cr: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """The float RGB image (0-255 scale) the authors pass to ``cv2.imwrite``: ``[Y', Cr, Cb] * 255`` through
    the float YCrCb inverse. ``cr``, ``cb`` are the ÷255 planes (as the authors' reader returns them)."""
    planes = [minmax_float(raw) * _f32(255), np.asarray(cr, np.float32) * _f32(255),
              np.asarray(cb, np.float32) * _f32(255)]
    return ycrcb_to_rgb_float(*planes)


def imwrite_uint8(img: np.ndarray) -> np.ndarray:
    """``cv2.imwrite`` of a float image: round half to even, saturate to 0..255."""
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def paper_inputs(structural: Image, functional: Image) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The network inputs and the chroma planes of ``test.py``: ``(VIS Y/255, IR grey/255, Cr/255, Cb/255)``,
    float32 H x W."""
    y, cr, cb = rgb_to_ycrcb_float(to_float_rgb(structural))
    ir = gray_float(to_float_rgb(functional))
    s = _f32(255)
    return y / s, ir / s, cr / s, cb / s


def paper_color(run: Callable[[np.ndarray, np.ndarray], np.ndarray], structural: Image,
                functional: Image) -> np.ndarray:
    """The pipeline's ``--color paper`` for SMFNet (``ModelCard.paper_color``): the authors' inputs,
    ``run(vis_y, ir)`` (the padded network forward), their float colour output rounded as ``cv2.imwrite``.
    Returns uint8 H x W x 3 RGB, or H x W when the visible source is grey (all channels equal)."""
    vis_y, ir, cr, cb = paper_inputs(structural, functional)
    out = imwrite_uint8(authors_color_float(run(vis_y, ir), cr, cb))
    if not structural.is_color and np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0],
                                                                                               out[..., 2]):
        return out[..., 0]
    return out
