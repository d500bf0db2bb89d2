"""SSIM and multi-scale SSIM (``mlfuse.metrics.similarity``): every reference cell of cddfuse.SSIM,
smfnet.SSIM_dr255, smfnet.MS_SSIM, tang.SSIM, tang.MS_SSIM and vifb.Ssim, plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.errors import InputError
from mlfuse.metrics import similarity as S

from .conftest import assert_close, reference_cases

# column -> metric over (F, A, B); the Python Evaluator columns get float32 arrays (the Evaluator reads float32
# gray images), the MATLAB columns float64 arrays of integer values.
FLOAT32 = {
    "cddfuse.SSIM": lambda f, a, b: S.ssim(f, a, b, "cddfuse"),
    "smfnet.SSIM_dr255": lambda f, a, b: S.ssim(f, a, b, "smfnet"),
    "smfnet.MS_SSIM": lambda f, a, b: S.ms_ssim(f, a, b, "smfnet"),
}
FLOAT64 = {
    "tang.SSIM": lambda f, a, b: S.ssim(f, a, b, "tang"),
    "tang.MS_SSIM": lambda f, a, b: S.ms_ssim(f, a, b, "tang"),
    "vifb.Ssim": lambda f, a, b: S.ssim(f, a, b, "vifb"),
}


@pytest.mark.parametrize("tid,ref", reference_cases(*FLOAT32, *FLOAT64))
def test_reference_cells(tid, ref, triple) -> None:
    """One triple, every SSIM column: 1e-6 relative (spec tolerance)."""
    checked = 0
    for metrics, dtype in ((FLOAT32, np.float32), (FLOAT64, np.float64)):
        f, a, b = (x.astype(dtype) for x in triple)
        for column, fn in metrics.items():
            if column in ref:
                got = fn(f, a, b)
                assert isinstance(got, float), column
                assert_close(got, ref[column], rel=1e-6, what=f"{tid} {column}")
                checked += 1
    assert checked == len(ref)


# ----------------------------------------------------------------------------------------------- properties

def _textured(shape=(64, 80), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    img = 120 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 12, shape)
    return np.clip(np.round(img), 0, 255)


MAXIMUM = {"cddfuse": 2.0, "smfnet": 2.0, "tang": 1.0, "vifb": 2.0}


@pytest.mark.parametrize("convention", list(MAXIMUM))
def test_identical_images_reach_the_maximum(convention) -> None:
    x = _textured()
    dtype = np.float32 if convention in ("cddfuse", "smfnet") else np.float64
    x = x.astype(dtype)
    assert S.ssim(x, x, x, convention) == pytest.approx(MAXIMUM[convention], abs=1e-12)
    other = _textured(seed=1).astype(dtype)
    assert S.ssim(x, other, other, convention) < MAXIMUM[convention] - 0.05


@pytest.mark.parametrize("convention", list(MAXIMUM))
def test_ssim_symmetric_in_the_sources_and_dtype_independent(convention) -> None:
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    dtype = np.float32 if convention in ("cddfuse", "smfnet") else np.float64
    v = S.ssim(f.astype(dtype), a.astype(dtype), b.astype(dtype), convention)
    assert S.ssim(f.astype(dtype), b.astype(dtype), a.astype(dtype), convention) == pytest.approx(v, rel=1e-12)
    # uint8 input of the same values gives the same number (the convention fixes the arithmetic)
    u8 = [x.astype(np.uint8) for x in (f, a, b)]
    assert S.ssim(*u8, convention=convention) == pytest.approx(v, rel=1e-12)


def test_conventions_differ_as_documented() -> None:
    f, a, b = _textured(seed=0), _textured(seed=1), _textured(seed=2)
    f32 = [x.astype(np.float32) for x in (f, a, b)]
    dr2, dr255 = S.ssim(*f32, convention="cddfuse"), S.ssim(*f32, convention="smfnet")
    assert dr255 > dr2  # larger C1, C2 pull every window towards 1
    # tang is a mean of two SSIMs, vifb a sum of two
    assert 0 < S.ssim(f, a, b, "tang") < 1
    assert 0 < S.ssim(f, a, b, "vifb") < 2


def test_ms_ssim_identity_and_symmetry() -> None:
    x = _textured((96, 96))
    assert S.ms_ssim(x.astype(np.float32), x.astype(np.float32), x.astype(np.float32), "smfnet") == pytest.approx(
        1.0, abs=1e-6)
    # MEF-SSIM of identical sources and fused image: the desired patch is each patch rescaled to norm
    # ||d|| + 0.001, so the score is just below 1
    mef = S.ms_ssim(x, x, x, "tang")
    assert 0.999 < mef <= 1.0
    f, a, b = _textured((96, 96), 0), _textured((96, 96), 1), _textured((96, 96), 2)
    assert S.ms_ssim(f, a, b, "tang") == pytest.approx(S.ms_ssim(f, b, a, "tang"), rel=1e-12)


def test_smfnet_ms_ssim_depends_on_the_ir_slot_only() -> None:
    """SMFNet's two bugs leave MS-SSIM(F, A): B only enters the dead first chain (term 0 * ...)."""
    f, a, b, c = (_textured((96, 128), s).astype(np.float32) for s in range(4))
    v = S.ms_ssim(f, a, b, "smfnet")
    assert S.ms_ssim(f, a, c, "smfnet") == v
    assert S.ms_ssim(f, b, a, "smfnet") != v


def test_cv2_resize_and_blur_emulation() -> None:
    x = _textured((37, 53)).astype(np.float32)
    # exact halving is the 2x2 mean; an odd size maps pixel centres (no antialiasing)
    y = S._cv2_resize_linear(x[:36, :52], 26, 18)
    assert np.array_equal(y, (x[0:36:2, 0:52:2] + x[0:36:2, 1:52:2] + x[1:36:2, 0:52:2] + x[1:36:2, 1:52:2]) * 0.25)
    z = S._cv2_resize_linear(x, 26, 18)
    assert z.shape == (18, 26) and z.dtype == np.float32
    sx, fx = S._cv2_linear_coeffs(53, 26)
    assert sx[0] == 0 and 0 < fx[0] < 1 and sx[-1] < 52
    k = S._cv2_gaussian_kernel(11, 1.5)
    assert k.dtype == np.float32 and k.sum() == pytest.approx(1, abs=1e-6)
    blurred = S._cv2_blur(x[None], k)[0]
    # compare with a float64 reflect-101 Gaussian: float32 rounding only
    from scipy import ndimage
    ref = ndimage.correlate1d(ndimage.correlate1d(x.astype(np.float64), k.astype(np.float64), axis=1, mode="mirror"),
                              k.astype(np.float64), axis=0, mode="mirror")
    assert np.abs(blurred - ref).max() < 1e-3


def test_input_validation() -> None:
    x = _textured()
    with pytest.raises(ValueError, match="unknown convention"):
        S.ssim(x, x, x, "matlab")
    with pytest.raises(ValueError, match="unknown convention"):
        S.ms_ssim(x, x, x, "vifb")
    with pytest.raises(InputError, match="size mismatch"):
        S.ssim(x, x[:-1], x, "tang")
    with pytest.raises(InputError, match="2-D"):
        S.ssim(np.stack([x] * 3, -1), x, x, "tang")
    with pytest.raises(InputError, match="smaller"):
        S.ssim(x[:8, :8], x[:8, :8], x[:8, :8], "vifb")
    # the MEF-SSIM reference returns -Inf when the coarsest scale is smaller than the window
    small = x[:40, :40]
    assert S.ms_ssim(small, small, small, "tang") == -math.inf
