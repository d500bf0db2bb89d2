"""Input handling shared by every metric: one validator, explicit scales, documented gray conversion.

Metric functions themselves are plain functions over 2-D arrays **on the 0-255 scale** (any real
dtype; float32 input is computed in float32 where the reference code did so). This module turns
whatever the user has (uint8, uint16, float with a declared range, colour) into such arrays and
checks that the fused image and both sources have the same size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlfuse.data import gray
from mlfuse.errors import InputError

#: the colour -> gray conventions of the reference codes (spec metrics.md section 1.2; mlfuse.data.gray):
#: ``cv2`` (Python Evaluators: float32 cvtColor then np.round), ``matlab`` (rgb2gray: Image-Fusion, VIFB, Liu)
GRAY_CONVENTIONS = ("cv2", "matlab")


def to_gray(rgb: np.ndarray, convention: str = "matlab") -> np.ndarray:
    """Gray conversion of an 8-bit RGB array the way the named reference code does it."""
    if convention not in GRAY_CONVENTIONS:
        raise ValueError(f"unknown gray convention {convention!r} (choose from {', '.join(GRAY_CONVENTIONS)})")
    return gray.to_gray(rgb, convention)


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


# --- the validator of the metric functions' own arguments (after `prepare`, or called directly)

def check_images(*images: np.ndarray, dtype: type | None = None, min_size: int = 1,
                 names: Sequence[str] | None = None) -> tuple[np.ndarray, ...]:
    """The one check of a metric's image arguments (piq's ``_validate_input`` idea): each a 2-D array of real
    numbers, all the same shape, at least ``min_size`` pixels on each side (the metric's window). Returns
    them as ``dtype``; ``None`` keeps float32 as float32 (the Python Evaluators' arithmetic) and turns
    anything else into float64. Raises :class:`~mlfuse.errors.InputError` (a ``ValueError``) in one line.
    ``names`` label the images in messages (default: fused, A, B for a triple)."""
    if names is None:
        names = ("fused", "A", "B") if len(images) == 3 else tuple(f"image {i + 1}" for i in range(len(images)))
    out = []
    for x, name in zip(images, names, strict=True):
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise InputError(f"{name}: expected a 2-D gray image, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise InputError(f"{name}: unsupported pixel type {arr.dtype}")
        want = dtype if dtype is not None else (np.float32 if arr.dtype == np.float32 else np.float64)
        out.append(arr.astype(want, copy=False))
    shapes = [o.shape for o in out]
    if len(set(shapes)) > 1:
        desc = ", ".join(f"{n} {s[1]}x{s[0]}" for n, s in zip(names, shapes, strict=True))
        raise InputError(f"size mismatch: {desc} (W x H); the images must have the same shape")
    h, w = shapes[0]
    if min(h, w) < min_size:
        raise InputError(f"{w} x {h} pixels is smaller than the {min_size} x {min_size} the metric needs")
    return tuple(out)


def as_image(x: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """:func:`check_images` of one image."""
    return check_images(x, dtype=dtype, names=("image",))[0]


def check_convention(convention: str, allowed: tuple[str, ...]) -> None:
    if convention not in allowed:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(allowed)}")
