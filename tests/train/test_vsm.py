from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from mlfuse.cli.main import main
from mlfuse.data.vsm import vsm, vsm_float


def test_exact_on_the_authors_sample(shared):
    d = shared / "reference" / "mlfuse" / "train_sample"
    img2 = np.asarray(Image.open(d / "img2.png").convert("L"))
    ref = np.asarray(Image.open(d / "vsm_img2.png"))
    assert ref.ndim == 3 and (ref == ref[:, :, :1]).all()
    np.testing.assert_array_equal(vsm(img2), ref[:, :, 0])


def _vsm_direct(img: np.ndarray) -> np.ndarray:
    """Definition, pixel by pixel over the histogram: V(p) = sum_j h(j) |I(p) - j|."""
    hist = np.bincount(img.ravel(), minlength=256)
    v = np.array([[sum(hist[j] * abs(int(p) - j) for j in range(256)) for p in row] for row in img], float)
    return (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else np.zeros_like(v)


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6))))
def test_matches_the_definition(img):
    np.testing.assert_allclose(vsm_float(img), _vsm_direct(img), atol=1e-12)


def test_properties():
    assert not vsm(np.full((5, 7), 9, np.uint8)).any()  # no contrast, no saliency
    img = np.zeros((10, 10), np.uint8)
    img[4:6, 4:6] = 255  # a small bright target on a dark field is the most salient thing
    s = vsm(img)
    assert s[4, 4] == 255 and s[0, 0] == 0
    rgb = np.stack([img, 255 - img, img], 2)
    assert vsm(rgb).shape == (10, 10, 3)
    with pytest.raises(ValueError, match="8-bit"):
        vsm(img.astype(np.float32))


def test_cli_file_and_folder(tmp_path, tiny_set):
    out = tmp_path / "one.png"
    assert main(["vsm", str(tiny_set / "ir" / "0.png"), str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), vsm(np.asarray(Image.open(tiny_set / "ir" / "0.png"))))
    assert main(["vsm", str(tiny_set / "ir" / "0.png"), str(out)]) == 2  # never overwrites silently
    assert main(["vsm", str(tiny_set / "vi"), str(tmp_path / "maps"), "-q"]) == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) == 8
