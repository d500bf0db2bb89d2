"""MLFuse losses against the authors' code (ref_losses.json: their checkpoint, eval mode)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mlfuse
from mlfuse.models.mlfuse.losses import gaussian_window, mlfuse_losses, sobel_magnitude, ssim

CASES = {"full_329x500/eval": (slice(None), slice(None)), "crop_y100_x200_128/eval": (slice(100, 228), slice(200, 328))}


@pytest.fixture(scope="module")
def sample(shared):
    d = shared / "reference" / "mlfuse" / "train_sample"

    def load(name: str) -> torch.Tensor:
        a = np.asarray(Image.open(d / f"{name}.png").convert("L"), dtype=np.float32) / 255
        return torch.from_numpy(a)[None, None]

    return load("img1"), load("img2"), load("vsm_img2")


@pytest.mark.parametrize("case", list(CASES))
def test_loss_terms_match_the_authors(case, sample, shared, official_weights):
    ref = json.loads((shared / "reference" / "mlfuse" / "ref_losses.json").read_text())[case]
    rows, cols = CASES[case]
    x, y, m = (t[..., rows, cols] for t in sample)
    model = mlfuse.create_model("mlfuse", weights=official_weights)
    with torch.no_grad():
        got = {k: float(v) for k, v in mlfuse_losses(model(x, y), x, y, m).items()}
    for key in ("L_edg", "L_cmk"):
        assert got[key] == pytest.approx(ref[key], rel=1e-6), key
    # L_ssd depends on the SSD channel gate, a softmax-weighted sum over all H*W positions. The
    # reference carries its machine's float32 rounding of that sum: on the 329 x 500 image, float32
    # summation orders alone move L_ssd by -5e-6..+5e-6 relative; ours (float64 reductions, the
    # accurate value) is 1.1e-6 from the reference there and 2e-7 on the 128 x 128 crop.
    assert got["L_ssd"] == pytest.approx(ref["L_ssd"], rel=1e-6 if "crop" in case else 2e-6), "L_ssd"
    # The SSIM term is computed in float32 as E[ab] - mu_a mu_b over 11x11 windows; that cancellation
    # makes its last digits depend on the convolution's summation order (the reference's own float32
    # value is 7e-5 away from the exact float64 one), which oneDNN picks per CPU: ours was within 1e-6
    # of the reference on the machine this test was written on and 6.5e-6 on another, hence 1e-5.
    assert got["L_fus"] == pytest.approx(ref["L_fus"], rel=1e-5)
    # the total carries L_fus's (weight 1) summation-order freedom on top of its own rounding
    assert got["total"] == pytest.approx(ref["total"], rel=1e-6, abs=1e-5 * ref["L_fus"])


def test_ssim_and_sobel_properties():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 24, 20)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim(a, 1 - a)) < 0
    w = gaussian_window()
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    flat = torch.full((1, 1, 9, 9), 0.3)
    g = sobel_magnitude(flat)
    assert g[..., 1:-1, 1:-1].abs().max() == 0  # no gradient inside a constant image
    ramp = torch.arange(9.0).repeat(9, 1)[None, None]
    assert torch.allclose(sobel_magnitude(ramp)[..., 1:-1, 1:-1], torch.tensor(8.0))  # |Kx * ramp| = 8


def test_losses_are_differentiable_and_weighted():
    torch.manual_seed(0)
    model = mlfuse.create_model("mlfuse", weights=None).train()
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    m = torch.rand(2, 1, 32, 32)
    terms = mlfuse_losses(model(x, y), x, y, m)
    expected = 0.3 * terms["L_edg"] + 3 * terms["L_ssd"] + 0.5 * terms["L_cmk"] + terms["L_fus"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and "conv_dilation" not in
               next(n for n, q in model.named_parameters() if q is p))
    only_ssd = mlfuse_losses(model(x, y), x, y, m, {"edg": 0, "cmk": 0, "fus": 0, "ssd": 1})
    assert torch.allclose(only_ssd["total"], only_ssd["L_ssd"])
