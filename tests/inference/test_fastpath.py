"""The optimised inference path (mlfuse.inference.fastpath): each generic transform is exact to float
rounding, and the optimised MLFuse (and every registered network) matches its plain forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

import mlfuse
from mlfuse.cli.main import main
from mlfuse.inference.fastpath import (
    ConvAct,
    FastModel,
    PointwiseConv2d,
    fold_batchnorm,
    fuse_conv_activations,
    optimize_for_inference,
    use_pointwise_gemm,
)
from tests._common import NETWORKS, one_thread_fixture, randomise_bn

TOL = 1e-5  # the bound for the fast path

_one_intra_op_thread = one_thread_fixture()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm_is_exact(bias) -> None:
    torch.manual_seed(0)
    seq = randomise_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.ReLU())).eval()
    x = torch.randn(2, 3, 17, 19)
    with torch.inference_mode():
        ref = seq(x)
    folded = nn.Sequential(*[m for m in seq])  # same modules, folded in place below
    assert fold_batchnorm(folded) == 1
    assert isinstance(folded[1], nn.Identity) and folded[0].bias is not None
    with torch.inference_mode():
        assert _max_diff(folded(x), ref) <= 1e-5


@pytest.mark.parametrize("act", [nn.ReLU(), nn.PReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.SiLU(),
                                 nn.GELU(), nn.ReLU6()], ids=lambda a: type(a).__name__)
def test_conv_activation_fusion_is_exact(act) -> None:
    torch.manual_seed(1)
    if isinstance(act, nn.PReLU):
        act.weight.data.fill_(0.21)
    seq = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), act).eval()
    x = torch.randn(1, 16, 23, 29).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = act(seq[0](x))
        assert fuse_conv_activations(seq) == 1 and isinstance(seq[0], ConvAct)
        assert _max_diff(seq(x), ref) <= 1e-5
    y = seq(x)  # with autograd on, the fused op is not used: the eager pair runs
    assert y.requires_grad


@pytest.mark.parametrize("native", [True, False], ids=["onednn-bf16", "no-bf16"])
def test_conv_activation_under_bf16_autocast(native, monkeypatch) -> None:
    """Under bf16 CPU autocast the fused op runs in bf16 (activation before the rounding) where oneDNN has
    bf16, else the eager pair runs as autocast would; either way a bf16 map within bf16 rounding."""
    from mlfuse.inference import fastpath

    if native and not fastpath._onednn_bf16():
        pytest.skip("oneDNN has no bf16 convolution on this CPU (needs AVX-512 BW/VL/DQ)")
    torch.manual_seed(3)
    seq = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.GELU()).eval()
    x = torch.randn(1, 16, 23, 29).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        exact = seq[1](seq[0](x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            eager = seq[1](seq[0](x))
        assert fuse_conv_activations(seq) == 1
        monkeypatch.setattr(seq[0], "_bf16", native)
        calls = []
        monkeypatch.setattr(seq[0], "_op", lambda *a: calls.append(a) or fastpath._onednn_pointwise()(*a))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = seq(x)
    assert out.dtype == torch.bfloat16 and len(calls) == int(native)
    if native:
        assert calls[0][0].dtype == calls[0][1].dtype == torch.bfloat16
        assert _max_diff(out.float(), exact) <= _max_diff(eager.float(), exact) + 1e-2
    else:
        assert torch.equal(out, eager)


def test_per_image_products_equal_the_batched_one() -> None:
    from mlfuse.inference.fastpath import _per_image_mm

    torch.manual_seed(4)
    x = torch.randn(2, 50, 24)
    q, k = x[..., :8], x[..., 8:16]  # strided slices, as in the attention
    for a, b in ((q[:1].transpose(1, 2), k[:1]), (q.transpose(1, 2), k), (q, torch.randn(2, 8, 5)),
                 (q[:1], torch.randn(3, 8, 5))):  # the last broadcasts, as matmul does
        assert _per_image_mm(a, b).shape == torch.matmul(a, b).shape
        assert _max_diff(_per_image_mm(a, b), torch.matmul(a, b)) <= 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _max_diff(_per_image_mm(q.transpose(1, 2), k).float(), torch.matmul(q.transpose(1, 2), k)) < 0.5


def test_fast_model_built_in_inference_mode_runs_under_bf16_autocast() -> None:
    """Weights created inside inference_mode are inference tensors; the bf16 path must not need their
    version counters, and must see a weight changed after a first call."""
    torch.manual_seed(5)
    seq = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()
    x = torch.randn(1, 8, 17, 19).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()
        fast.load_state_dict(seq.state_dict())
        fuse_conv_activations(fast)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first = fast(x)
            fast[0].conv.weight.mul_(-1)  # an in-place edit after a first bf16 call
            second = fast(x)
            seq[0].weight.data.mul_(-1)
            expected = seq(x)
    assert first.dtype == torch.bfloat16 and not torch.equal(first, second)
    assert _max_diff(second.float(), expected.float()) <= 0.05


def test_multi_slope_prelu_is_not_fused() -> None:
    seq = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4))
    assert fuse_conv_activations(seq) == 0


@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_conv_as_gemm(channels_last) -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(32, 16, 1)
    ref_conv = nn.Conv2d(32, 16, 1)
    ref_conv.load_state_dict(conv.state_dict())
    assert use_pointwise_gemm(conv) == 1 and isinstance(conv, PointwiseConv2d)
    x = torch.randn(2, 32, 13, 21)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = conv(x)
        assert _max_diff(y, ref_conv(x)) <= 1e-5
    assert y.shape == (2, 16, 13, 21)
    assert conv.state_dict().keys() == ref_conv.state_dict().keys()


@pytest.fixture(scope="module")
def mlfuse_pair() -> tuple[nn.Module, FastModel]:
    torch.manual_seed(0)
    model = randomise_bn(mlfuse.create_model("mlfuse", weights=None))
    return model, optimize_for_inference(model, block=32, workers=2)


@pytest.mark.parametrize(("b", "h", "w"), [(1, 48, 64), (2, 96, 112)])  # whole image, then cache-blocked tiles
def test_mlfuse_fast_path_equals_plain(mlfuse_pair, b, h, w) -> None:
    model, fast = mlfuse_pair
    g = torch.Generator().manual_seed(3)
    s, f = torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g)
    torch.set_num_threads(2)  # two tiles at once in the blocked case
    try:
        with torch.inference_mode():
            assert _max_diff(fast.fusion_forward(s, f), model.fusion_forward(s, f)) <= TOL
    finally:
        torch.set_num_threads(1)


def test_fast_copy_leaves_the_model_alone(mlfuse_pair) -> None:
    model, fast = mlfuse_pair
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fast.card is model.card and fast.workers == 2 and fast.block == 32
    assert torch.get_num_threads() >= 1


def test_official_weights_fast_path(shared, official_weights) -> None:
    from mlfuse.data.io import read_image

    model = mlfuse.create_model("mlfuse", weights=official_weights)
    fast = optimize_for_inference(model)
    ref_dir = shared / "reference" / "mlfuse"
    vis = read_image(ref_dir / "inputs" / "TNO" / "35_img1.png").gray()
    ir = read_image(ref_dir / "inputs" / "TNO" / "35_img2.png").gray()
    s, f = torch.from_numpy(vis)[None, None], torch.from_numpy(ir)[None, None]
    with torch.inference_mode():
        out = fast.fusion_forward(s, f)[0, 0].numpy()
    np.testing.assert_allclose(out, np.load(ref_dir / "TNO" / "35.npy"), rtol=0, atol=TOL)
    ours = fast.fuse(np.rint(vis * 255).astype(np.uint8), np.rint(ir * 255).astype(np.uint8), color="gray")
    ref = np.asarray(PILImage.open(ref_dir / "TNO" / "35.png")).astype(int)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("name", NETWORKS)  # classical methods have nothing to tile or optimise
def test_every_network_fast_path(name) -> None:
    torch.manual_seed(0)
    model = mlfuse.create_model(name, weights=None)
    randomise_bn(model)
    fast = optimize_for_inference(model, check=False)
    card = model.card
    m = card.size_multiple
    h, w = (-(-max(card.min_size[0], 16) // m) * m, -(-max(card.min_size[1], 20) // m) * m)
    g = torch.Generator().manual_seed(4)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    with torch.inference_mode():
        assert _max_diff(fast.fusion_forward(s, f), model.fusion_forward(s, f)) <= TOL


def test_cli_fast_flag(tmp_path, sample_pair, random_weights) -> None:
    vis, ir = sample_pair
    v, i = tmp_path / "v.png", tmp_path / "i.png"
    PILImage.fromarray(vis[:64, :72]).save(v)
    PILImage.fromarray(ir[:64, :72]).save(i)
    outs = []
    for extra in ([], ["--fast"]):
        out = tmp_path / f"f{len(extra)}.png"
        assert main(["fuse", "--vis", str(v), "--ir", str(i), "-o", str(out), "--weights", str(random_weights),
                     "-q", *extra]) == 0
        outs.append(np.asarray(PILImage.open(out)).astype(int))
    diff = np.abs(outs[0] - outs[1])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2


def test_cddfuse_fast_path_equals_the_authors_arithmetic() -> None:
    """The CDDFuse-family fast path (Lite qkv1 composed into qkv2, attention projection merged, split gated
    feed-forwards) equals the authors' arithmetic (explicit LayerNorm) to float rounding, untiled and
    tiled (the merged modules stream their sums like the plain ones)."""
    from mlfuse.inference.fastpath import FastDetailNode, FastGatedFFN, FastLiteAttention, FastMDTA
    from mlfuse.inference.tiling import tiled_forward
    from mlfuse.models.blocks.norm import LayerNorm
    from mlfuse.models.cddfuse.network import CDDFuse
    from mlfuse.registry import get_card

    torch.manual_seed(0)
    model = CDDFuse(dim=16, heads=2).eval()
    model.card = get_card("cddfuse")
    fast = optimize_for_inference(model)
    kinds = {type(m) for m in fast.modules()}
    assert {FastDetailNode, FastGatedFFN, FastLiteAttention, FastMDTA} <= kinds
    for m in model.modules():
        if isinstance(m, LayerNorm):
            m.fused = False  # the authors' explicit formula
    g = torch.Generator().manual_seed(5)
    s, f = torch.rand(1, 1, 37, 83, generator=g), torch.rand(1, 1, 37, 83, generator=g)
    with torch.inference_mode():
        ref = model.fusion_forward(s, f)
        assert ref.std() > 1e-3
        assert _max_diff(fast.fusion_forward(s, f), ref) <= 1e-5
        assert _max_diff(tiled_forward(fast, s, f, 48), ref) <= 1e-5
