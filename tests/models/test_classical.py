"""Classical baselines: the properties that define each method, any size, colour through the
pipeline, registry cards, and the filters checked against straightforward references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import mlfuse
from mlfuse.data.color import pil_luma
from mlfuse.data.vsm import vsm_float
from mlfuse.models.classical.base import box_mean, gaussian_kernel, guided_filter, separable_filter
from mlfuse.models.classical.pyramid import laplacian_pyramid, reconstruct
from mlfuse.models.classical.vsm_wls import rolling_guidance

METHODS = ("average", "max", "laplacian", "dwt", "gff", "vsm_wls")
SIZES = [(1, 1), (1, 9), (7, 1), (2, 3), (5, 8), (31, 47)]


_MODELS = {name: mlfuse.create_model(name) for name in METHODS}


@pytest.fixture(scope="module")
def models() -> dict:
    return _MODELS


def raw(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fusion_forward in float64 on H x W arrays (structural a, functional b)."""
    t = lambda x: torch.from_numpy(np.asarray(x, np.float64))[None, None]  # noqa: E731
    with torch.inference_mode():
        return model.fusion_forward(t(a), t(b))[0, 0].numpy()


def rand(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("shape", SIZES)
def test_fusing_an_image_with_itself_returns_it(models, name, shape):
    x = rand(shape, 1)
    out = raw(models[name], x, x)
    assert out.shape == shape
    np.testing.assert_allclose(out, x, atol=1e-9)


@settings(max_examples=12, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_identity_property_any_size(h, w, seed):
    x = rand((h, w), seed)
    for name in METHODS:
        np.testing.assert_allclose(raw(_MODELS[name], x, x), x, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (17, 30)])
def test_pipeline_any_size_gray_and_colour(models, name, shape):
    rng = np.random.default_rng(2)
    vis_rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, shape, dtype=np.uint8)
    gray = models[name].fuse(vis_rgb[..., 0], ir)
    assert gray.shape == shape and gray.dtype == np.uint8
    colour = models[name].fuse(vis_rgb, ir)
    assert colour.shape == (*shape, 3) and colour.dtype == np.uint8
    # a colour image fused with its own luma comes back (chroma restored around the same luma)
    same = models[name].fuse(vis_rgb, pil_luma(vis_rgb))
    assert np.abs(same.astype(int) - vis_rgb.astype(int)).max() <= 2


def test_average_is_the_mean(models):
    a, b = rand((9, 13), 3), rand((9, 13), 4)
    np.testing.assert_array_equal(raw(models["average"], a, b), (a + b) / 2)


def test_max_is_at_least_both_sources(models):
    a, b = rand((9, 13), 5), rand((9, 13), 6)
    out = raw(models["max"], a, b)
    assert np.all(out >= a) and np.all(out >= b)
    assert np.all((out == a) | (out == b))
    a8 = np.random.default_rng(7).integers(0, 256, (10, 12), dtype=np.uint8)
    b8 = np.random.default_rng(8).integers(0, 256, (10, 12), dtype=np.uint8)
    fused = models["max"].fuse(a8, b8)
    assert np.all(fused >= a8) and np.all(fused >= b8)


@pytest.mark.parametrize("name", ["laplacian", "dwt"])
def test_multiscale_rules_are_symmetric_in_the_sources(models, name):
    a, b = rand((33, 21), 9), rand((33, 21), 10)
    np.testing.assert_allclose(raw(models[name], a, b), raw(models[name], b, a), atol=1e-12)


@pytest.mark.parametrize("name", ["laplacian", "dwt"])
def test_zero_levels_is_the_average(name):
    model = mlfuse.create_model(name, levels=0)
    a, b = rand((12, 17), 11), rand((12, 17), 12)
    np.testing.assert_allclose(raw(model, a, b), (a + b) / 2, atol=1e-12)


@pytest.mark.parametrize("shape", SIZES)
def test_laplacian_pyramid_reconstructs_exactly(shape):
    x = torch.from_numpy(rand(shape, 13))[None, None]
    pyr = laplacian_pyramid(x, 6)
    assert torch.allclose(reconstruct(pyr), x, atol=1e-12)
    assert pyr[-1].shape[-2:] == tuple(-(-s // 2 ** (len(pyr) - 1)) for s in shape)  # ceil halvings
    if shape == (1, 1):
        assert len(pyr) == 1  # nothing to decompose


def test_laplacian_detail_rule_keeps_the_stronger_detail():
    """A constant has no detail at any level, so fusing with one keeps every detail of the other
    source and averages the bases."""
    a = torch.from_numpy(rand((24, 20), 14))[None, None]
    c = torch.full_like(a, 0.3)
    pc, pa = laplacian_pyramid(c, 3), laplacian_pyramid(a, 3)
    assert all(torch.allclose(d, torch.zeros_like(d), atol=1e-15) for d in pc[:-1])
    assert torch.allclose(pc[-1], torch.full_like(pc[-1], 0.3), atol=1e-15)
    fused = mlfuse.create_model("laplacian", levels=3).fuse_tensors(a, c)
    assert torch.allclose(fused, reconstruct([*pa[:-1], (pa[-1] + 0.3) / 2]), atol=1e-12)


def test_gff_with_a_flat_source_returns_the_other(models):
    x = rand((40, 36), 15)
    flat = np.full_like(x, 0.4)
    np.testing.assert_allclose(raw(models["gff"], x, flat), x, atol=1e-9)
    np.testing.assert_allclose(raw(models["gff"], flat, x), x, atol=1e-9)


def test_vsm_wls_base_rule_with_a_flat_infrared(models):
    """Flat infrared: no infrared detail, zero saliency, so F = visible details + the VSM-weighted
    base (0.5 + 0.5 V_vis) B_vis + (0.5 - 0.5 V_vis) c (Ma et al. 2017, eq. 4)."""
    vis = np.round(rand((30, 26), 16) * 255) / 255
    c = 0.6
    model = models["vsm_wls"]
    _, base = model.decompose(torch.from_numpy(vis)[None, None])
    base = base[0, 0].numpy()
    v = vsm_float(np.round(vis * 255).astype(np.uint8))
    expected = vis - base + (0.5 + 0.5 * v) * base + (0.5 - 0.5 * v) * c
    np.testing.assert_allclose(raw(model, vis, np.full_like(vis, c)), expected, atol=1e-9)


def test_vsm_wls_roles_matter(models):
    a, b = rand((20, 24), 17), rand((20, 24), 18)
    assert not np.allclose(raw(models["vsm_wls"], a, b), raw(models["vsm_wls"], b, a))


def test_box_mean_and_guided_filter_match_naive_references():
    rng = np.random.default_rng(19)
    img, src = rng.random((11, 14)), rng.random((11, 14))
    r, eps = 3, 0.01

    def naive_mean(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                out[i, j] = x[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean()
        return out

    t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    np.testing.assert_allclose(box_mean(t(img), r)[0, 0].numpy(), naive_mean(img), atol=1e-13)
    mi, mp = naive_mean(img), naive_mean(src)
    a = (naive_mean(img * src) - mi * mp) / (naive_mean(img * img) - mi * mi + eps)
    b = mp - a * mi
    expected = naive_mean(a) * img + naive_mean(b)  # He et al. Algorithm 1
    np.testing.assert_allclose(guided_filter(t(img), t(src), r, eps)[0, 0].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (23, 17)])
@pytest.mark.parametrize(("mode", "scipy_mode"), [("replicate", "nearest"), ("symmetric", "reflect")])
def test_separable_filter_matches_scipy_borders(shape, mode, scipy_mode):
    x = rand(shape, 20)
    k = gaussian_kernel(2.0, 6)
    got = separable_filter(torch.from_numpy(x)[None, None], k, mode)[0, 0].numpy()
    expected = ndimage.correlate(x, np.outer(k.numpy(), k.numpy()), mode=scipy_mode)
    np.testing.assert_allclose(got, expected, atol=1e-13)


def test_rolling_guidance_keeps_a_constant():
    c = torch.full((1, 1, 9, 12), 0.25, dtype=torch.float64)
    assert torch.allclose(rolling_guidance(c, 4.0, 0.05), c, atol=1e-12)


@pytest.mark.parametrize("name", METHODS)
def test_cards_and_no_weights(name, models):
    card = mlfuse.get_card(name)
    assert not card.needs_weights and card.output_rule == "clamp" and card.paper
    assert sum(p.numel() for p in models[name].parameters()) == 0
    assert mlfuse.create_model(name, weights=None).weights_source is None


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        mlfuse.create_model("dwt", wavelet="nope")
    with pytest.raises(ValueError):
        mlfuse.create_model("laplacian", levels=-1)
    with pytest.raises(ValueError):
        mlfuse.create_model("gff", base_size=30)


def test_cli_fuses_with_a_classical_method(tmp_path, capsys):
    from PIL import Image

    from mlfuse.cli.main import main

    rng = np.random.default_rng(21)
    Image.fromarray(rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)).save(tmp_path / "v.png")
    Image.fromarray(rng.integers(0, 256, (19, 23), dtype=np.uint8)).save(tmp_path / "i.png")
    out = tmp_path / "f.png"
    assert main(["fuse", "--model", "gff", "--vis", str(tmp_path / "v.png"), "--ir", str(tmp_path / "i.png"),
                 "-o", str(out), "-q"]) == 0
    assert np.asarray(Image.open(out)).shape == (19, 23, 3)
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name}:" in listing for name in METHODS)
