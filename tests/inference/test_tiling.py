"""Exact tiled inference (mlfuse.inference.tiling): tiles reproduce the untiled raw output, global
operations stay global, windows stay bounded, and the pipeline / CLI options behave."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from torch import nn

import mlfuse
import mlfuse.models.mlfuse.network as mlf_net
from mlfuse.cli.main import main
from mlfuse.inference.fuse import run_network, to_uint8
from mlfuse.inference.tiling import (
    Tiler,
    TileSpec,
    TilingError,
    choose_tile,
    plan_windows,
    resolve_tile,
    tile_spec,
    tiled_forward,
)
from tests._common import NETWORKS, load_script, one_thread_fixture, randomise_bn

TOL = 1e-5  # the issue asks 1e-4; tiles agree to ~1e-7

_one_intra_op_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(mlfuse.create_model("mlfuse", weights=None), bias=False)


def _pair(b: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), tile=st.integers(1, 40), halo=st.integers(0, 13),
       align=st.sampled_from([1, 2, 6, 8]), mh=st.integers(1, 20))
def test_windows_partition_the_image(h, w, tile, halo, align, mh) -> None:
    wins = plan_windows(h, w, tile, halo, align, (mh, mh))
    cover = np.zeros((h, w), int)
    for win in wins:
        cover[win.core] += 1
        assert win.top % align == 0 and win.left % align == 0  # on the down-sampling grid
        assert win.top <= max(0, win.core_top - halo) and win.left <= max(0, win.core_left - halo)
        assert win.bottom >= min(h, win.core_bottom + halo) and win.right >= min(w, win.core_right + halo)
        assert win.bottom - win.top >= min(h, mh) and win.right - win.left >= min(w, mh)
        # one window size wherever the image allows (border windows move inward; + < align off-grid)
        full = max(-(-tile // align) * align + 2 * (-(-halo // align) * align), -(-mh // align) * align)
        assert min(h, full) <= win.bottom - win.top <= min(h, full) + align - 1
        assert min(w, full) <= win.right - win.left <= min(w, full) + align - 1
        assert 0 <= win.top and win.bottom <= h and 0 <= win.left and win.right <= w
    assert (cover == 1).all()  # every output pixel comes from exactly one core


@pytest.mark.parametrize(("b", "h", "w", "tile", "per_window_resize"), [
    (2, 64, 80, 16, False), (1, 97, 61, 7, True), (1, 15, 15, 4, False), (1, 130, 47, (48, 20), True)])
def test_mlfuse_tiled_equals_untiled(net, b, h, w, tile, per_window_resize, monkeypatch) -> None:
    if per_window_resize:  # the edge map resized window by window, as for huge images
        monkeypatch.setattr(mlf_net, "FULL_RESIZE_BYTES", 0)
    s, f = _pair(b, h, w)
    with torch.inference_mode():
        ref = net.fusion_forward(s, f)
        out = tiled_forward(net, s, f, tile)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= TOL


def test_global_ops_are_not_per_tile(net) -> None:
    """The SSD softmax over all positions and the edge map's resize scale depend on the whole image:
    fusing a tile's window alone differs from the same pixels of the whole-image result, while the
    tiled result does not."""
    s, f = _pair(1, 96, 96, seed=3)
    with torch.inference_mode():
        ref = net.fusion_forward(s, f)
        alone = net.fusion_forward(s[..., :48, :48], f[..., :48, :48])[..., :42, :42]
        tiled = tiled_forward(net, s, f, 48)
    assert (alone - ref[..., :42, :42]).abs().max().item() > 1e-4
    assert (tiled - ref).abs().max().item() <= TOL


def test_windows_are_bounded(net, monkeypatch) -> None:
    """Bounded memory: no pass ever loads a window larger than tile + 2 x halo (rounded to the grid)."""
    seen = []
    load = Tiler.load

    def spy(self, image, window):
        seen.append((window.bottom - window.top, window.right - window.left))
        return load(self, image, window)

    monkeypatch.setattr(Tiler, "load", spy)
    s, f = _pair(1, 150, 170, seed=4)
    with torch.inference_mode():
        tiled_forward(net, s, f, 24)
    # pass 1 has the largest windows: halo 12 on the stride-6 grid, + up to 5 where the border is off-grid
    assert seen and max(max(hw) for hw in seen) <= 24 + 2 * 12 + 5


def test_parallel_tiles_match_serial(net) -> None:
    s, f = _pair(1, 90, 100, seed=5)
    with torch.inference_mode():
        one = tiled_forward(net, s, f, 32)
        torch.set_num_threads(2)
        try:
            two = tiled_forward(net, s, f, 32, workers=2)
            assert torch.get_num_threads() == 2  # restored after the workers ran single-threaded
        finally:
            torch.set_num_threads(1)
    # ops run single-threaded in the workers, so kernels may round differently than with 2 threads
    assert (one - two).abs().max().item() <= TOL


def test_official_weights_on_a_real_pair(shared, official_weights) -> None:
    from mlfuse.data.io import read_image

    model = mlfuse.create_model("mlfuse", weights=official_weights)
    ref_dir = shared / "reference" / "mlfuse"
    vis = read_image(ref_dir / "inputs" / "TNO" / "08_img1.png").gray()
    ir = read_image(ref_dir / "inputs" / "TNO" / "08_img2.png").gray()
    raw = run_network(model, vis, ir, tile="off")
    tiled = run_network(model, vis, ir, tile=64)
    np.testing.assert_allclose(tiled, raw, rtol=0, atol=TOL)
    np.testing.assert_allclose(raw, np.load(ref_dir / "TNO" / "08.npy"), rtol=0, atol=1e-5)
    diff = np.abs(to_uint8(tiled).astype(int) - to_uint8(raw).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # min-max is per image, never per tile


@pytest.mark.parametrize("name", NETWORKS)  # classical methods have nothing to tile or optimise
def test_every_network_tiles_exactly_or_says_it_cannot(name) -> None:
    torch.manual_seed(0)
    model = mlfuse.create_model(name, weights=None)
    spec = tile_spec(model)
    if spec is None:  # no declaration: an explicit tile size is refused, auto runs untiled
        with pytest.raises(TilingError, match="declares no tiling"):
            resolve_tile(16, model, 64, 64)
        assert resolve_tile("auto", model, 4096, 4096, budget_bytes=1 << 20) is None
        return
    if spec.streaming:  # one forward per level and window: tested on small networks of the method
        assert name in FAMILY
        return
    randomise_bn(model, bias=False)
    card = model.card
    m = card.size_multiple
    h = -(-max(card.min_size[0], 44) // m) * m
    w = -(-max(card.min_size[1], 52) // m) * m
    s, f = _pair(1, h, w, seed=6)
    tile = max(spec.align, m, 16)
    with torch.inference_mode():
        ref = model.fusion_forward(s, f)
        out = tiled_forward(model, s, f, tile)
    assert (out - ref).abs().max().item() <= TOL


def test_local_network_tiles_without_hooks() -> None:
    """A network with only local ops needs nothing but a TileSpec (here: halo of two 3x3 convs)."""

    class Local(mlfuse.models.base.FusionModel):
        TILE_SPEC = TileSpec(halo=2, align=1)

        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1)

        def fusion_forward(self, s, f):
            return self.b(torch.relu(self.a(torch.cat([s, f], 1))))

    torch.manual_seed(0)
    model = Local().eval()
    s, f = _pair(1, 41, 37)
    with torch.inference_mode():
        assert (tiled_forward(model, s, f, 8) - model.fusion_forward(s, f)).abs().max() <= TOL
    model.TILE_SPEC = TileSpec(halo=2, global_ops=("a global op",))
    with pytest.raises(TilingError, match="no tile_context"):
        tiled_forward(model, s, f, 8)


def test_resolve_tile_options(net) -> None:
    assert resolve_tile("off", net, 100, 100) is None
    assert resolve_tile(None, net, 100, 100) is None
    assert resolve_tile("0", net, 100, 100) is None
    assert resolve_tile("48", net, 100, 100) == 48
    assert resolve_tile("auto", net, 100, 100, budget_bytes=1 << 30) is None  # fits: untiled
    spec = tile_spec(net)
    budget = 64 << 20
    tile = resolve_tile("auto", net, 4096, 4096, budget_bytes=budget)
    assert tile is not None and (tile + 2 * spec.halo) ** 2 * spec.bytes_per_pixel <= budget
    assert choose_tile(spec, 4096, 4096, budget) == tile
    two = resolve_tile("auto", net, 4096, 4096, budget_bytes=budget, workers=2)  # two tiles in memory at once
    assert two < tile and 2 * (two + 2 * spec.halo) ** 2 * spec.bytes_per_pixel <= budget
    assert resolve_tile("auto", net, 480, 640, budget_bytes=1 << 30, workers=2) is None  # fits whole
    for bad in ("abc", "-3", "1.5x"):
        with pytest.raises(TilingError):
            resolve_tile(bad, net, 100, 100)
    with pytest.raises(TilingError):
        resolve_tile("auto", net, 100, 100, budget_bytes=0)


def test_pipeline_and_cli_tile_option(tmp_path, sample_pair, random_weights, capsys) -> None:
    vis, ir = sample_pair
    v, i = tmp_path / "v.png", tmp_path / "i.png"
    PILImage.fromarray(vis[:70, :90]).save(v)
    PILImage.fromarray(ir[:70, :90]).save(i)
    outs = {}
    for tile, extra in (("off", []), ("24", []), ("auto", []), ("20", ["--fast"])):
        out = tmp_path / f"f_{tile}.png"
        assert main(["fuse", "--vis", str(v), "--ir", str(i), "-o", str(out), "--weights", str(random_weights),
                     "--tile", tile, "--tile-budget", "1", "-q", *extra]) == 0
        outs[tile] = np.asarray(PILImage.open(out)).astype(int)
    for tile in ("24", "auto", "20"):  # auto with a 1 MB budget tiles this image too; 20: the fast copy tiled
        diff = np.abs(outs[tile] - outs["off"])
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-2
    assert main(["fuse", "--vis", str(v), "--ir", str(i), "-o", str(tmp_path / "x.png"),
                 "--weights", str(random_weights), "--tile", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfuse: error: --tile 'lots'") and len(err.splitlines()) == 1


# ------------------------------------------------------------ the CDDFuse family: streamed global sums
#: small networks of each method (seeded random weights), an odd-sized pair (the pipeline's padding is
#: exercised) and two tile sizes; the first makes partial windows (the image is longer than a tile plus two
#: halos along the first axis), the second few windows (the cost is one forward per window and level).
#: EMMA's halo of 256 makes every window the whole image at test sizes: the sums' partition over the cores
#: is what its test checks, its halo is checked by test_family_halo_covers_the_receptive_field.
FAMILY = {
    "cddfuse": (dict(dim=8, heads=2), (75, 15), (20, 48)),
    "sfdfuse": (dict(dim=8, heads=2), (107, 15), (16, 64)),
    "smfnet": (dict(dim=8, heads=2), (75, 15), (20, 48)),
    "emma": (dict(channels=(8, 8, 8, 8)), (61, 45), (24, 40)),
}


def _small(name: str) -> nn.Module:
    from mlfuse.registry import get_card

    card = get_card(name)
    torch.manual_seed(0)
    model = randomise_bn(card.builder(**FAMILY[name][0]), bias=False).eval()
    model.card = card
    return model


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_tiled_equals_untiled(name) -> None:
    """Tiled = untiled raw output (<= 1e-5) at two tile sizes on an odd-sized pair, through the pipeline."""
    model = _small(name)
    h, w = FAMILY[name][1]
    rng = np.random.default_rng(3)
    s, f = rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)
    ref = run_network(model, s, f, tile="off")
    assert ref.std() > 1e-3  # not saturated: a wrong global sum would show
    spec = tile_spec(model)
    for tile in FAMILY[name][2]:
        assert len(plan_windows(h, w, tile, spec.halo, spec.align)) > 1
        out = run_network(model, s, f, tile=tile)
        assert np.abs(out - ref).max() <= TOL, (name, tile)


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_halo_covers_the_receptive_field(name) -> None:
    """With the whole-image sums held fixed (as in the last pass), an output pixel depends only on inputs
    within the declared halo: the input gradient of the centre pixel is zero beyond it."""
    from mlfuse.inference import streaming

    model = _small(name)
    spec = tile_spec(model)
    g = torch.Generator().manual_seed(2)

    def pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(1, 1, size, size, generator=g), torch.rand(1, 1, size, size, generator=g)

    def whole(size: int) -> tuple:
        return (size, size), (slice(0, size), slice(0, size))

    # the sums' values do not change which inputs reach a pixel: collect them on a small image (cheap)
    known: dict = {}
    s, f = pair(64)
    with torch.inference_mode():
        for _ in range(20):
            state = streaming.StreamingPass(known)
            with streaming.streaming_pass(state), streaming.window(*whole(64)):
                model.fusion_forward(s, f)
            if not state.partial:
                break
            known.update({k: tuple(v) for k, v in state.partial.items()})
    size = 2 * spec.halo + 2 * spec.align + 1
    s, f = pair(size)
    s.requires_grad_(True)
    f.requires_grad_(True)
    with streaming.streaming_pass(streaming.StreamingPass(known)), streaming.window(*whole(size)):
        out = model.fusion_forward(s, f)
    c = size // 2
    out[0, 0, c, c].backward()
    grad = (s.grad.abs() + f.grad.abs())[0, 0]
    reach = (grad > 0).nonzero()
    assert len(reach) > 1 and torch.isfinite(grad).all()
    assert (reach - c).abs().max().item() <= spec.halo


# ------------------------------------------------------------ memory: --tile off refused, allocation failures
def test_tile_off_refused_when_the_estimate_does_not_fit(net, monkeypatch) -> None:
    """--tile off on a pair whose untiled forward would not fit the available memory: one line that
    suggests --tile auto, before any forward (issue 14 item 2)."""
    import mlfuse.inference.tiling as tiling

    monkeypatch.setattr(tiling, "available_memory", lambda device="cpu": 64 << 20)
    with pytest.raises(TilingError, match="use --tile auto") as err:
        resolve_tile("off", net, 4000, 6000, check_memory=True)
    assert "\n" not in str(err.value) and "6000x4000" in str(err.value)
    assert resolve_tile("off", net, 100, 100, check_memory=True) is None  # small: fits
    assert resolve_tile("off", net, 4000, 6000) is None  # no check asked (the Python API's default)
    tile = resolve_tile("auto", net, 4000, 6000, budget_bytes=64 << 20)
    assert tile is not None  # auto never runs untiled what does not fit its budget


def test_allocation_failure_fails_the_pair_and_the_folder_run_goes_on(net, tmp_path, monkeypatch) -> None:
    """An allocation failure inside a forward fails that pair with one line; the next pair is fused."""
    from mlfuse.inference.fuse import fuse_folder

    for d in ("vi", "ir"):
        (tmp_path / d).mkdir()
        for name in ("a", "b"):
            pixels = np.full((20, 24), 100 if name == "a" else 50, np.uint8)
            PILImage.fromarray(pixels).save(tmp_path / d / f"{name}.png")
    real = type(net).fusion_forward
    calls = []

    def flaky(self, s, f):
        calls.append(s.shape)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 999999999999 bytes.")
        return real(self, s, f)

    monkeypatch.setattr(type(net), "fusion_forward", flaky)
    lines: list[str] = []
    report = fuse_folder(net, tmp_path / "vi", tmp_path / "ir", tmp_path / "out", quiet=True, report=lines.append)
    assert [name for name, _ in report.failed] == ["a"] and "out of memory" in report.failed[0][1]
    assert "--tile auto" in report.failed[0][1] and len(report.written) == 1
    assert (tmp_path / "out" / "b.png").exists() and not (tmp_path / "out" / "a.png").exists()


def test_auto_tiles_only_when_the_budget_requires_it(net) -> None:
    """A 768x576 pair fits the default 1 GiB budget untiled (its measured untiled peak, not the tiled run's
    per-window figure, is compared with the budget), whatever the worker count (issue 13 item 11)."""
    for workers in (1, 2, 4):
        assert resolve_tile("auto", net, 576, 768, budget_bytes=1 << 30, workers=workers) is None
    spec = tile_spec(net)
    tile = resolve_tile("auto", net, 3000, 4000, budget_bytes=1 << 30, workers=2)
    assert tile is not None and 2 * (tile + 2 * spec.halo) ** 2 * spec.bytes_per_pixel <= 1 << 30


def test_streamed_sums_with_parallel_windows() -> None:
    """Windows computed two at a time (threads) add their sums under a lock and key their ops per thread:
    the same result as the untiled forward."""
    model = _small("cddfuse")
    g = torch.Generator().manual_seed(7)
    s, f = torch.rand(1, 1, 75, 15, generator=g), torch.rand(1, 1, 75, 15, generator=g)
    with torch.inference_mode():
        ref = model.fusion_forward(s, f)
        torch.set_num_threads(2)
        try:
            out = tiled_forward(model, s, f, 20, workers=2)
        finally:
            torch.set_num_threads(1)
    assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("name", list(FAMILY))
@pytest.mark.parametrize("ram", [None, 0], ids=["memory", "files"])
def test_kept_block_outputs_give_the_recomputed_result(name, ram, monkeypatch) -> None:
    """Passes that resume from kept block outputs (in memory, or all in files) give exactly the output of
    passes that recompute from the input, compute fewer blocks, drop what no later pass reads and delete
    their folder."""
    from mlfuse.inference import streaming

    model = _small(name)
    h, w = (n // 8 * 8 for n in FAMILY[name][1])  # on every network's grid (tiled_forward does not pad)
    tile = FAMILY[name][2][0]
    g = torch.Generator().manual_seed(5)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    caches: list = []
    real_cache = streaming.PassCache

    def spy(*args, **kwargs):
        cache = real_cache(ram_bytes=ram)
        caches.append(cache)
        return cache

    computed = {False: 0, True: 0}
    for keep in (False, True):
        def count(*_, keep=keep) -> None:
            computed[keep] += 1

        hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
        monkeypatch.setattr(streaming, "PassCache", spy)
        with torch.inference_mode():
            out = tiled_forward(model, s, f, tile, keep_blocks=keep)
        for hook in hooks:
            hook.remove()
        if not keep:
            reference = out
    assert torch.equal(out, reference)
    (cache,) = caches
    stats = cache.stats
    assert stats.hits > 0 and stats.stored > 0 and stats.dropped > 0
    if ram == 0:
        assert stats.written > 0 and stats.read > 0 and stats.peak_ram == 0
        assert stats.folder is not None and not os.path.exists(stats.folder)
    else:
        assert stats.written == 0 and stats.folder is None
    assert cache.entries == {}  # closed
    assert computed[True] < 0.8 * computed[False]  # convolutions run


#: convolution multiply-adds of a tiled run per multiply-add of the untiled forward on the same window area
TILED_WORK = {"cddfuse": 1.2, "sfdfuse": 1.2, "smfnet": 1.2, "emma": 1.4}


@pytest.mark.parametrize("name", list(FAMILY))
def test_tiled_passes_compute_each_layer_about_once(name) -> None:
    """Over all its passes a tiled run does about one untiled forward's convolutions per window: a
    block stops where a sum is unknown (nothing after it is computed on NaN), an attention keeps V for
    the next pass instead of computing its qkv map twice, and a convolution of a poisoned map is not
    computed. (Before, every block ran twice: 1.7-2.4x.) Counted at the dispatcher, per window area."""
    from mlfuse.inference.tiling import plan_windows, tile_spec

    conv_work = load_script(Path(__file__).parents[2] / "benchmarks" / "bench_pass_cache.py").conv_work
    model = _small(name)
    h, w = (n // 8 * 8 for n in FAMILY[name][1])
    tile = FAMILY[name][2][0]
    spec = tile_spec(model)
    area = sum((win.bottom - win.top) * (win.right - win.left)
               for win in plan_windows(h, w, tile, spec.halo, spec.align)) / (h * w)
    g = torch.Generator().manual_seed(5)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    with torch.inference_mode():
        with conv_work() as whole:
            ref = model.fusion_forward(s, f)
        with conv_work() as tiled:
            out = tiled_forward(model, s, f, tile)
    assert (out - ref).abs().max().item() <= TOL
    assert whole.macs > 0 and tiled.macs / whole.macs / area <= TILED_WORK[name]


@pytest.mark.parametrize("name", list(FAMILY))
def test_tiled_passes_run_under_bf16_autocast(name) -> None:
    """A convolution skipped on a poisoned map gets autocast's dtype, as the real one would (SMFNet runs
    one on poisoned maps inside a block that computes on them)."""
    from mlfuse.inference.fuse import run_network

    rng = np.random.default_rng(3)
    s, f = rng.random((72, 16), dtype=np.float32), rng.random((72, 16), dtype=np.float32)
    out = run_network(_small(name), s, f, tile=20, precision="bf16", workers=1)
    ref = run_network(_small(name), s, f, tile="off", precision="bf16")
    assert np.isfinite(out).all() and np.abs(out - ref).max() < 0.1  # bf16 rounding, not a different image


def test_a_non_finite_attention_sum_is_an_error_with_kept_blocks() -> None:
    """NaN in an attention's Q K^T sums (one q channel's weights) while V stays finite: kept blocks must
    not let the NaN image pass as the result."""
    from mlfuse.inference.tiling import TileSpec, TilingError
    from mlfuse.models.blocks.transformer import RestormerBlock

    class Net(nn.Module):
        TILE_SPEC = TileSpec(halo=8, streaming=True, global_ops=("attention",))

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.inp = nn.Conv2d(2, 8, 3, padding=1)
            self.a, self.b = RestormerBlock(8, 2), RestormerBlock(8, 2)
            with torch.no_grad():
                self.b.attn.qkv.weight[0] = float("nan")
            self.out = nn.Conv2d(8, 1, 3, padding=1)

        def fusion_forward(self, s: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            x = self.inp(torch.cat((s, f), 1))
            return self.out(self.a(x) + self.b(x))

    g = torch.Generator().manual_seed(1)
    s, f = torch.rand(1, 1, 40, 12, generator=g), torch.rand(1, 1, 40, 12, generator=g)
    for keep in (False, True):
        with torch.inference_mode(), pytest.raises(TilingError, match="not finite"):
            tiled_forward(Net().eval(), s, f, 10, keep_blocks=keep)


def test_a_dropped_map_that_is_read_is_an_error() -> None:
    """The placeholder of a dropped block output refuses to be read (it would be a wrong image)."""
    from mlfuse.inference import streaming

    class Net(nn.Module):
        @streaming.block
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    net, cache = Net(), streaming.PassCache()
    state = streaming.StreamingPass({}, cache)
    x = torch.zeros(1, 2, 4, 4)
    with streaming.streaming_pass(state):
        with streaming.window((4, 4), (slice(0, 4), slice(0, 4)), 0):
            assert torch.equal(net(x), x + 1)  # computed and kept
        with streaming.window((4, 4), (slice(0, 4), slice(0, 4)), 0):
            net(x)  # returned from the cache, read by nothing: dropped
        with streaming.window((4, 4), (slice(0, 4), slice(0, 4)), 0):
            y = net(x) * 2  # glue on the stand-in is allowed (it feeds kept blocks only)...
            with pytest.raises(RuntimeError, match="dropped intermediate map was read"):
                streaming.use_output(y)  # ...a use of it is not
    cache.close()


def test_kept_blocks_with_parallel_windows() -> None:
    """Windows in threads share the pass cache: same output as serial recomputed passes."""
    model = _small("sfdfuse")
    h, w = 104, 16
    g = torch.Generator().manual_seed(9)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    with torch.inference_mode():
        ref = tiled_forward(model, s, f, 16, keep_blocks=False)
        torch.set_num_threads(2)
        try:
            out = tiled_forward(model, s, f, 16, workers=2)
        finally:
            torch.set_num_threads(1)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name", list(FAMILY))
def test_auto_tiles_every_family_network_by_the_same_budget_rule(name) -> None:
    """``--tile auto``: untiled while the method's untiled estimate fits the budget, else the largest tiles
    whose windows fit it (per worker); never untiled beyond the budget."""
    from mlfuse.inference.tiling import untiled_bytes

    model = _small(name)
    spec = tile_spec(model)
    budget = 1 << 30
    assert resolve_tile("auto", model, 256, 320, budget_bytes=budget) is None
    assert untiled_bytes(spec, 4096, 4096) > budget
    for workers in (1, 2):
        tile = resolve_tile("auto", model, 4096, 4096, budget_bytes=budget, workers=workers)
        assert tile is not None and tile % spec.align == 0
        assert workers * (tile + 2 * spec.halo) ** 2 * spec.bytes_per_pixel <= budget


@pytest.mark.parametrize("mode", ["ycbcr", "paper"])
def test_colour_restored_in_row_strips_is_identical(mode, monkeypatch) -> None:
    """Large outputs get their chroma back strip by strip (bounded float64 temporaries, ~18 instead of
    ~112 B/px at 12 MP, issue 14 item 2): the same bytes as the whole-image conversion."""
    import mlfuse.data.color as color

    rng = np.random.default_rng(4)
    y = rng.integers(0, 256, (70, 33), dtype=np.uint8)
    a, b = (rng.integers(0, 256, (70, 33, 3), dtype=np.uint8) for _ in range(2))
    for sources in ([a], [a, b]):
        monkeypatch.setattr(color, "STRIP_ROWS", 10**9)
        whole = color.colorize(y, sources, mode)
        monkeypatch.setattr(color, "STRIP_ROWS", 16)
        assert np.array_equal(color.colorize(y, sources, mode), whole)


def test_output_rules_in_place_give_the_same_bytes() -> None:
    """to_uint8 computes the min-max rules in place (fewer whole-image temporaries, issue 14 item 2):
    the same bytes as the expressions it replaced."""
    rng = np.random.default_rng(5)
    for raw in (rng.random((37, 41), dtype=np.float32) * 3 - 1, rng.normal(size=(64, 9)).astype(np.float32)):
        lo, hi = raw.min(), raw.max()
        old_minmax = (((raw - lo) / (hi - lo)) * np.float32(255)).astype(np.uint8)
        v = (((raw - lo) / (hi - lo)) * np.float32(255)).astype(np.float64)
        old_round = np.floor((v - v.min()) / (v.max() - v.min()) * 255 + 0.499999999).astype(np.uint8)
        assert np.array_equal(to_uint8(raw, "minmax"), old_minmax)
        assert np.array_equal(to_uint8(raw, "minmax-round"), old_round)


def test_auto_workers_keep_wide_halos_affordable(net) -> None:
    """Under ``--tile auto`` tiles side by side share the budget; for EMMA's 256-px halo that would
    triple the computed area, so one tile at a time (all threads) is chosen; MLFuse keeps one per core."""
    from mlfuse.inference.tiling import tile_workers

    emma = _small("emma")
    cpu = torch.device("cpu")
    torch.set_num_threads(2)
    try:
        assert tile_workers(emma, cpu, size=(4096, 4096), budget_bytes=1 << 30) == 1
        assert tile_workers(emma, cpu, size=(1000, 1000), budget_bytes=1 << 30) == 2  # untiled: no say
        assert tile_workers(emma, cpu, 2, size=(4096, 4096), budget_bytes=1 << 30) == 2  # asked for
        assert tile_workers(net, cpu, size=(4096, 4096), budget_bytes=1 << 30) == 2
        assert tile_workers(emma, cpu) == 2
    finally:
        torch.set_num_threads(1)


def test_a_full_temp_folder_fails_the_pair_in_one_line(tmp_path, monkeypatch) -> None:
    """Kept maps that cannot be written (disk full) fail the pair with a message naming the folder and
    TMPDIR; the folder is removed."""
    import errno

    from mlfuse.errors import FusionError
    from mlfuse.inference import streaming

    monkeypatch.setattr(streaming, "CACHE_RAM_BYTES", 0)  # every kept map goes to a file
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(__import__("tempfile"), "tempdir", None)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streaming, "_write_raw", full)
    model = _small("cddfuse")
    s, f = torch.rand(1, 1, 48, 16), torch.rand(1, 1, 48, 16)
    with torch.inference_mode(), pytest.raises(FusionError) as info:
        tiled_forward(model, s, f, 20)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "TMPDIR" in message
    assert str(tmp_path) in message and list(tmp_path.iterdir()) == []


def test_the_pass_cache_holds_the_frontier_only(monkeypatch) -> None:
    """CDDFuse (two 4-block Restormer chains, then the fusion layers and a 4-block decoder chain):
    after every pass each window keeps at most 5 maps (the two chains' frontiers, each with the V of
    the attention whose sums are being gathered, and the detail fusion), not every level computed so far."""
    import contextlib

    from mlfuse.inference import streaming

    model = _small("cddfuse")
    most: list[int] = []
    real = streaming.streaming_pass

    @contextlib.contextmanager
    def counted(state):
        with real(state):
            yield state
        live = [key for key, entry in state.cache.entries.items() if not entry.dead and key[0] == 0]
        most.append(len(live))

    monkeypatch.setattr(streaming, "streaming_pass", counted)
    g = torch.Generator().manual_seed(4)
    s, f = torch.rand(1, 1, 48, 16, generator=g), torch.rand(1, 1, 48, 16, generator=g)
    with torch.inference_mode():
        tiled_forward(model, s, f, 20)
    assert len(most) == 11 and max(most) == 5, most


def test_kept_blocks_with_the_fast_path() -> None:
    """The fast path fuses convolution + ReLU, which turns NaN (a map that depends on a sum unknown in
    this pass) into 0: a block computed on such a map must not be kept (SMFNet's graph, which runs on
    poisoned inputs). Kept = recomputed passes = untiled."""
    from mlfuse.inference.fastpath import optimize_for_inference

    fast = optimize_for_inference(_small("smfnet"), block=None)
    g = torch.Generator().manual_seed(3)
    s, f = torch.rand(1, 1, 72, 16, generator=g), torch.rand(1, 1, 72, 16, generator=g)
    with torch.inference_mode():
        whole = fast.fusion_forward(s, f)
        ref = tiled_forward(fast, s, f, 20, keep_blocks=False)
        kept = tiled_forward(fast, s, f, 20)
    assert (ref - whole).abs().max().item() <= TOL
    assert (kept - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize("ram", [None, 0], ids=["memory", "files"])
def test_the_cache_hands_back_the_memory_layout(ram) -> None:
    from mlfuse.inference import streaming

    cache = streaming.PassCache(ram_bytes=ram)
    x = torch.rand(1, 8, 4, 5).contiguous(memory_format=torch.channels_last)
    y = torch.rand(1, 8, 4, 5)
    cache.put(("a",), x)
    cache.put(("b",), y)
    a, b = cache.get(("a",)), cache.get(("b",))
    assert torch.equal(a, x) and a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(b, y) and b.is_contiguous()
    cache.close()


def test_a_write_into_a_tensor_keeps_what_it_copies() -> None:
    """``out[:] = kept * 2`` uses the kept output: it stays kept across passes."""
    from mlfuse.inference import streaming

    class Net(nn.Module):
        @streaming.block
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    net, cache = Net(), streaming.PassCache()
    x = torch.zeros(1, 2, 4, 4)
    with streaming.streaming_pass(streaming.StreamingPass({}, cache)):
        for _ in range(3):
            with streaming.window((4, 4), (slice(0, 4), slice(0, 4)), 0):
                out = torch.empty_like(x)
                out[:] = net(x) * 2
                streaming.use_output(out)
                assert torch.equal(out, torch.full_like(x, 2.0))
    assert [e.dead for e in cache.entries.values()] == [False]
    cache.close()
