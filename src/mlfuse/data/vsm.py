"""Visual saliency map (VSM) by histogram contrast.

Ma, Zhou, Wang, Zong, "Infrared and visible image fusion based on visual saliency map and weighted
least square optimization", Infrared Physics & Technology 82 (2017), eq. (1)-(2): the saliency of a
pixel of level i is its contrast to every other pixel, V(i) = sum_j h(j) |i - j| over the 8-bit
histogram h. MLFuse trains with these maps (spec mlfuse.md section 8); the spec's reverse-engineered
rule (min-max over the image, x255, round) reproduces the authors' shipped map exactly.

Cost is O(N + 256^2): one histogram, one 256 x 256 contrast table, one lookup per pixel.
"""

from __future__ import annotations

import numpy as np

_LEVELS = np.arange(256, dtype=np.float64)
_DIST = np.abs(_LEVELS[:, None] - _LEVELS[None, :])  # |i - j|, 256 x 256


def vsm_float(image: np.ndarray) -> np.ndarray:
    """Saliency of an 8-bit image in [0, 1] (float64): V(I(p)) min-max normalised over the image.

    ``image``: H x W uint8 (gray) or H x W x C uint8 (each channel on its own, as the authors did
    for colour images). A constant image has no contrast and gives all zeros.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"vsm needs an 8-bit image, got {a.dtype}")
    if a.ndim == 3:
        return np.stack([vsm_float(a[:, :, c]) for c in range(a.shape[2])], axis=2)
    if a.ndim != 2:
        raise ValueError(f"vsm needs an H x W or H x W x C image, got shape {a.shape}")
    hist = np.bincount(a.ravel(), minlength=256).astype(np.float64)
    table = _DIST @ hist  # V(i) for every level i
    present = hist > 0
    lo, hi = table[present].min(), table[present].max()
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float64)
    return ((table - lo) / (hi - lo))[a]


def vsm(image: np.ndarray) -> np.ndarray:
    """Saliency map as 8 bits (``round(255 * vsm_float)``), the form the authors stored and trained on."""
    return np.floor(vsm_float(image) * 255.0 + 0.5).astype(np.uint8)
