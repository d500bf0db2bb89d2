"""Input handling shared by every metric: one validator, explicit scales, documented gray conversion.

Metric functions themselves are plain functions over 2-D arrays **on the 0-255 scale** (any real
dtype; float32 input is computed in float32 where the reference code did so). This module turns
whatever the user has (uint8, uint16, float with a declared range, colour) into such arrays and
checks that the fused image and both sources have the same size.
"""

from __future__ import annotations

import numpy as np

from mlfuse.errors import InputError

#: how each reference code turns colour into gray (spec metrics.md section 1.2)
GRAY_CONVENTIONS = {
    # cv2.cvtColor(float32 BGR -> GRAY) = 0.299 R + 0.587 G + 0.114 B, then np.round (Python Evaluators)
    "cv2": (0.299, 0.587, 0.114),
    # MATLAB rgb2gray: 0.2989 R + 0.5870 G + 0.1140 B, rounded to uint8 (Image-Fusion, VIFB, Liu)
    "matlab": (0.298936021293775, 0.587043074451121, 0.114020904255103),
}


def to_gray(rgb: np.ndarray, convention: str = "matlab") -> np.ndarray:
    """Gray conversion of an 8-bit RGB array the way the named reference code does it."""
    wr, wg, wb = GRAY_CONVENTIONS[convention]
    x = rgb.astype(np.float64) if convention == "matlab" else rgb.astype(np.float32)
    g = wr * x[..., 0] + wg * x[..., 1] + wb * x[..., 2]
    if convention == "matlab":  # MATLAB uint8(): round half away from zero
        return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)
    return np.round(g).astype(np.uint8)


def to_255(x: np.ndarray, *, data_range: float | None = None, name: str = "image",
           gray: str = "matlab") -> np.ndarray:
    """One image as a 2-D float64 array on the 0-255 scale.

    uint8 as is; uint16 scaled by 255/65535; float arrays must declare ``data_range`` (1.0 for
    [0, 1] data, 255.0 for 0-255 data) since a float range cannot be guessed safely; H x W x 3
    colour is converted with the ``gray`` convention (``cv2`` or ``matlab``).
    """
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        if a.dtype != np.uint8:
            raise InputError(f"{name}: colour input must be uint8 (got {a.dtype}); convert it to gray first")
        a = to_gray(a[:, :, :3], gray)
    if a.ndim != 2:
        raise InputError(f"{name}: expected an H x W (or H x W x 3) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64)
    if a.dtype == np.uint16:
        return a.astype(np.float64) * (255.0 / 65535.0)
    if np.issubdtype(a.dtype, np.floating):
        if data_range is None:
            raise InputError(f"{name}: float input needs data_range (1.0 for [0, 1] data, 255.0 for 0-255 data)")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name}: contains NaN or infinity")
        return a.astype(np.float64) * (255.0 / float(data_range))
    raise InputError(f"{name}: unsupported pixel type {a.dtype} (use uint8, uint16 or float with data_range)")


def prepare(fused: np.ndarray, a: np.ndarray, b: np.ndarray, *, data_range: float | None = None,
            gray: str = "matlab", names: tuple[str, str, str] = ("fused", "source A", "source B"),
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a (fused, A, B) triple and return three float64 0-255 arrays of the same size.

    A is the functional image (infrared / CT: the "ir" slot of the reference codes), B the
    structural one (visible / MRI: the "vi" slot).
    """
    out = tuple(to_255(x, data_range=data_range, name=n, gray=gray) for x, n in zip((fused, a, b), names, strict=True))
    shapes = [o.shape for o in out]
    if len(set(shapes)) != 1:
        desc = ", ".join(f"{n} {s[1]}x{s[0]}" for n, s in zip(names, shapes, strict=True))
        raise InputError(f"size mismatch: {desc} (W x H); fused image and sources must have the same size")
    return out  # type: ignore[return-value]


# --- checks used inside the metric functions (plain ValueErrors: these are programming errors;
# user-facing input goes through `prepare`, which raises InputError with file-level messages)

def as_image(x: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """A 2-D array; ``dtype=None`` keeps float32 as float32 (the Python Evaluators' arithmetic) and
    turns anything else into float64."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    return arr.astype(dtype, copy=False)


def check_triple(f: np.ndarray, a: np.ndarray, b: np.ndarray, dtype: type | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`as_image` of a (fused, A, B) triple, checking that the three sizes agree."""
    f, a, b = as_image(f, dtype), as_image(a, dtype), as_image(b, dtype)
    if not f.shape == a.shape == b.shape:
        raise ValueError(f"image shapes differ: fused {f.shape}, A {a.shape}, B {b.shape}")
    return f, a, b


def check_convention(convention: str, allowed: tuple[str, ...]) -> None:
    if convention not in allowed:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(allowed)}")
