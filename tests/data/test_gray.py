"""The named colour -> gray conventions (mlfuse.data.gray): one home for every reference's conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlfuse.data.gray import GRAY_CONVENTIONS, luma_float32, to_gray
from mlfuse.metrics._common import to_gray as metric_gray
from mlfuse.models.smfnet.color import gray_float


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8)


def test_pil_is_convert_l(rgb: np.ndarray) -> None:
    assert np.array_equal(to_gray(rgb, "pil"), np.asarray(Image.fromarray(rgb).convert("L")))


def test_conventions_are_named_and_close(rgb: np.ndarray) -> None:
    grays = {c: to_gray(rgb, c).astype(int) for c in GRAY_CONVENTIONS}
    for c, g in grays.items():
        assert g.shape == rgb.shape[:2] and np.abs(g - grays["pil"]).max() <= 1, c
    exact = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.abs(grays["cv2"] - exact).max() <= 0.5 + 1e-4
    with pytest.raises(ValueError, match="unknown gray convention 'yuv'"):
        to_gray(rgb, "yuv")


def test_summation_order_is_the_convention() -> None:
    x = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32) * 255
    rgb_sum, bgr_sum = luma_float32(x, "rgb"), luma_float32(x, "bgr")
    assert rgb_sum.dtype == np.float32 and not np.array_equal(rgb_sum, bgr_sum)  # last-bit differences
    np.testing.assert_allclose(rgb_sum, bgr_sum, rtol=1e-6)
    assert np.array_equal(gray_float(x), np.round(bgr_sum))


def test_metrics_use_the_same_conventions(rgb: np.ndarray) -> None:
    assert np.array_equal(metric_gray(rgb, "cv2"), to_gray(rgb, "cv2"))
    assert np.array_equal(metric_gray(rgb, "matlab"), to_gray(rgb, "matlab"))
    with pytest.raises(ValueError, match="unknown gray convention 'pil'"):
        metric_gray(rgb, "pil")  # no metric reference uses PIL's luma
